"""Offline assets for Great Expectations Data Docs: what GE 1.24 loads from CDNs, and our copies.

GE's page templates pull Bootstrap, jQuery, Popper, bootstrap-table, bootstrap-datepicker,
bootstrap-dark, Font Awesome and Vega from public CDNs (and its logo from S3), so Data Docs
render unstyled without network. ``ASSETS`` maps every such URL to a file vendored under
``tidemark/quality/assets/vendor/`` (committed: the batch host needs neither npm nor network).
``tidemark.quality.docs`` copies that folder into the site as ``static/vendor/`` and rewrites
the pages to point at it.

The vendored files are produced from the npm packages pinned in ``assets/package.json``::

    cd tidemark/quality/assets && npm ci --ignore-scripts
    python -m tidemark.quality.vendor      # copies the few files below into assets/vendor/

Only the files the pages reference are kept (minified builds; Font Awesome as woff2 only, with
the ttf fallbacks stripped from its CSS), plus each package's licence.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
VENDOR_DIR = ASSETS_DIR / "vendor"
NODE_MODULES = ASSETS_DIR / "node_modules"

# GE's own images (copied into every site's static/images/ by GE itself).
GE_IMAGES = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"


@dataclass(frozen=True)
class Asset:
    package: str  # npm package name
    source: str  # path inside node_modules/<package>/
    target: str  # path inside vendor/
    urls: tuple[str, ...] = ()  # CDN URLs in GE's templates served by this file (query strings ignored)


ASSETS: tuple[Asset, ...] = (
    Asset(
        "bootstrap",
        "dist/css/bootstrap.min.css",
        "bootstrap/bootstrap.min.css",
        ("https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css",),
    ),
    Asset(
        "bootstrap",
        "dist/js/bootstrap.min.js",
        "bootstrap/bootstrap.min.js",
        ("https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js",),
    ),
    Asset("jquery", "dist/jquery.min.js", "jquery/jquery.min.js", ("https://code.jquery.com/jquery-3.7.1.min.js",)),
    Asset(
        "popper.js",
        "dist/umd/popper.min.js",
        "popper.js/popper.min.js",
        ("https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js",),
    ),
    Asset(
        "bootstrap-table",
        "dist/bootstrap-table.min.css",
        "bootstrap-table/bootstrap-table.min.css",
        ("https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css",),
    ),
    Asset(
        "bootstrap-table",
        "dist/bootstrap-table.min.js",
        "bootstrap-table/bootstrap-table.min.js",
        ("https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js",),
    ),
    Asset(
        "bootstrap-table",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
        "bootstrap-table/bootstrap-table-filter-control.min.js",
        (
            "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js",
        ),
    ),
    # GE asks for the 1.19.0 filter-control CSS (minified on the index, plain elsewhere); 1.19.1's is the same rules.
    Asset(
        "bootstrap-table",
        "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
        "bootstrap-table/bootstrap-table-filter-control.min.css",
        (
            "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css",
            "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
        ),
    ),
    Asset(
        "bootstrap-datepicker",
        "dist/css/bootstrap-datepicker.min.css",
        "bootstrap-datepicker/bootstrap-datepicker.min.css",
        ("https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css",),
    ),
    Asset(
        "bootstrap-datepicker",
        "dist/js/bootstrap-datepicker.min.js",
        "bootstrap-datepicker/bootstrap-datepicker.min.js",
        ("https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js",),
    ),
    # GE links the unminified build (880 KB); the package's minified one has the same rules.
    Asset(
        "@forevolve/bootstrap-dark",
        "dist/css/bootstrap-prefers-dark.min.css",
        "bootstrap-dark/bootstrap-prefers-dark.min.css",
        ("https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css",),
    ),
    Asset(
        "@fortawesome/fontawesome-free",
        "css/all.min.css",
        "fontawesome/css/all.min.css",
        ("https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css",),
    ),
    *(
        Asset("@fortawesome/fontawesome-free", f"webfonts/{font}.woff2", f"fontawesome/webfonts/{font}.woff2")
        for font in ("fa-brands-400", "fa-regular-400", "fa-solid-900", "fa-v4compatibility")
    ),
    Asset("vega", "build/vega.min.js", "vega/vega.min.js", ("https://cdn.jsdelivr.net/npm/vega@5",)),
    Asset(
        "vega-lite",
        "build/vega-lite.min.js",
        "vega-lite/vega-lite.min.js",
        ("https://cdn.jsdelivr.net/npm/vega-lite@5",),
    ),
    Asset(
        "vega-embed",
        "build/vega-embed.min.js",
        "vega-embed/vega-embed.min.js",
        ("https://cdn.jsdelivr.net/npm/vega-embed@6",),
    ),
)

# Remote URL (without query string) -> path relative to the site's static/ folder.
URL_MAP: dict[str, str] = {url: f"vendor/{a.target}" for a in ASSETS for url in a.urls}
URL_MAP.update(
    {
        GE_IMAGES + "logo-long.png": "images/logo-long.png",
        # Dark-mode logo in GE's inline CSS; GE ships no dark variant, the light one stays legible enough.
        GE_IMAGES + "full_logo_dark.png": "images/logo-long.png",
    }
)

_TTF_SRC = re.compile(r',url\(\.\./webfonts/[\w.-]+\.ttf\) format\("truetype"\)')


def _package_dir(package: str, node_modules: Path) -> Path:
    return node_modules.joinpath(*package.split("/"))


def vendor(node_modules: Path = NODE_MODULES, dest: Path = VENDOR_DIR) -> list[Path]:
    """Copy the referenced files (and licences) from node_modules into ``dest``; write its README."""
    if not node_modules.is_dir():
        raise SystemExit(f"{node_modules} is missing: run `npm ci --ignore-scripts` in {node_modules.parent}")
    if dest.exists():
        shutil.rmtree(dest)
    written: list[Path] = []
    packages: dict[str, dict] = {}
    for asset in ASSETS:
        pkg_dir = _package_dir(asset.package, node_modules)
        meta = packages.setdefault(asset.package, json.loads((pkg_dir / "package.json").read_text()))
        target = dest / asset.target
        target.parent.mkdir(parents=True, exist_ok=True)
        if asset.target.endswith("fontawesome/css/all.min.css"):
            css = (pkg_dir / asset.source).read_text(encoding="utf-8")
            target.write_text(_TTF_SRC.sub("", css), encoding="utf-8")
        else:
            shutil.copyfile(pkg_dir / asset.source, target)
        written.append(target)
        for licence in sorted(pkg_dir.glob("LICEN[CS]E*")):
            copy = dest / asset.target.split("/")[0] / licence.name
            if not copy.exists():
                shutil.copyfile(licence, copy)
                written.append(copy)

    lines = [
        "# Vendored Data Docs assets (generated: do not edit)",
        "",
        "Produced by `python -m tidemark.quality.vendor` from the npm packages pinned in",
        "`../package.json` / `../package-lock.json`. Served offline as `static/vendor/` in the Data Docs site.",
        "Font Awesome's CSS is modified: its ttf fallbacks are stripped (woff2 only).",
        "",
        "| package | version | licence | files |",
        "|---|---|---|---|",
    ]
    for name, meta in packages.items():
        files = ", ".join(f"`{a.target}`" for a in ASSETS if a.package == name)
        lic = meta.get("license", "see package")
        lines.append(f"| {name} | {meta['version']} | {lic} | {files} |")
    lines += [
        "",
        "Two npm tarballs ship no licence file: popper.js (MIT, stated in the header comment of",
        "`popper.min.js`) and vega (BSD-3-Clause per its package.json; same holder and text as",
        "`vega-lite/LICENSE`, the University of Washington Interactive Data Lab).",
    ]
    readme = dest / "README.md"
    readme.write_text("\n".join(lines) + "\n")
    written.append(readme)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m tidemark.quality.vendor``: vendor the assets and list what was written.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (none are taken).

    Returns
    -------
    int
        The exit status, 0.
    """
    written = vendor()
    total = sum(p.stat().st_size for p in written)
    for path in written:
        print(f"{path.stat().st_size:>9}  {path.relative_to(ASSETS_DIR)}")
    print(f"{total:>9}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
