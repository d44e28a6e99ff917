"""Great Expectations Data Docs that render offline.

GE's pages load CSS/JS/fonts from CDNs (and its logo from S3). After GE writes pages,
``localise`` copies the vendored assets (``tidemark/quality/assets/vendor``, see
``tidemark.quality.vendor``) into the site as ``static/vendor/`` and rewrites every remote
``<link>``/``<script>``/``<img>`` reference and CSS ``url()`` to a relative path, dropping the
``integrity``/``crossorigin`` attributes (a crossorigin load of a file:// URL is blocked).
Navigation links (``<a href="https://greatexpectations.io">``) are left alone.

Both writers of the site call ``localise``: the gate after every run (``gates.validate``, only
the pages that run wrote) and the full rebuild (``docs.build_docs``). ``check_site`` is the
offline check the tests run on a built site.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from tidemark.quality.vendor import URL_MAP, VENDOR_DIR

log = logging.getLogger(__name__)

_ASSET_TAG = re.compile(r"<(?:link|script|img)\b[^>]*>", re.IGNORECASE)
_TAG_URL = re.compile(r"""\b(src|href)(\s*=\s*)(["'])([^"']*)\3""", re.IGNORECASE)
_SRI = re.compile(r"""\s+(?:integrity|crossorigin)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?""", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*(["']?)([^"')]*)\1\s*\)""", re.IGNORECASE)
_REMOTE = re.compile(r"^(?:https?:)?//", re.IGNORECASE)
_STATIC_REF = re.compile(r"^(?:\.\./|\./)*static/([^?#]+)")


def _mapped(url: str) -> str | None:
    """The static/-relative file serving a remote URL (query string and fragment ignored)."""
    base = re.split(r"[?#]", url, maxsplit=1)[0]
    if base.startswith("//"):
        base = "https:" + base
    return URL_MAP.get(base) or URL_MAP.get(re.sub(r"^http:", "https:", base))


def rewrite(html: str, page_dir: Path, static_dir: Path) -> tuple[str, list[str]]:
    """Point remote asset references at the vendored copies: (new html, unmapped remote URLs)."""
    unmapped: list[str] = []

    def local(url: str) -> str | None:
        target = _mapped(url)
        if target is None:
            unmapped.append(url)
            return None
        return Path(os.path.relpath(static_dir / target, page_dir)).as_posix()

    def fix_tag(match: re.Match) -> str:
        tag = match.group(0)
        changed = False

        def fix_attr(attr: re.Match) -> str:
            nonlocal changed
            url = attr.group(4)
            if not _REMOTE.match(url):
                # GE 1.24 gets the depth of its favicon link wrong on validation pages.
                static_ref = _STATIC_REF.match(url)
                if static_ref and not (page_dir / url).exists() and (static_dir / static_ref.group(1)).exists():
                    fixed = Path(os.path.relpath(static_dir / static_ref.group(1), page_dir)).as_posix()
                    return f"{attr.group(1)}{attr.group(2)}{attr.group(3)}{fixed}{attr.group(3)}"
                return attr.group(0)
            path = local(url)
            if path is None:
                return attr.group(0)
            changed = True
            return f"{attr.group(1)}{attr.group(2)}{attr.group(3)}{path}{attr.group(3)}"

        tag = _TAG_URL.sub(fix_attr, tag)
        return _SRI.sub("", tag) if changed else tag

    def fix_css(match: re.Match) -> str:
        url = match.group(2)
        if not _REMOTE.match(url):
            return match.group(0)
        path = local(url)
        return match.group(0) if path is None else f"url('{path}')"

    html = _ASSET_TAG.sub(fix_tag, html)
    html = _CSS_URL.sub(fix_css, html)
    return html, unmapped


def remote_asset_refs(html: str) -> list[str]:
    """Remote URLs a page loads as assets (<link>/<script>/<img> src/href, CSS url())."""
    refs = []
    for tag in _ASSET_TAG.finditer(html):
        refs += [m.group(4) for m in _TAG_URL.finditer(tag.group(0)) if _REMOTE.match(m.group(4))]
    refs += [m.group(2) for m in _CSS_URL.finditer(html) if _REMOTE.match(m.group(2))]
    return refs


def pages(site: Path) -> list[Path]:
    """The site's HTML pages.

    Parameters
    ----------
    site : Path
        The Data Docs site.

    Returns
    -------
    list of Path
        Every ``*.html`` under ``site`` except GE's ``static/`` folder, sorted.
    """
    static = site / "static"
    return sorted(p for p in site.rglob("*.html") if static not in p.parents)


def _sync_vendor(site: Path) -> None:
    """Mirror assets/vendor into <site>/static/vendor (copies only what changed)."""
    dest_root = site / "static" / "vendor"
    for source in VENDOR_DIR.rglob("*"):
        if not source.is_file():
            continue
        dest = dest_root / source.relative_to(VENDOR_DIR)
        stat = source.stat()
        if dest.exists():
            current = dest.stat()
            if current.st_size == stat.st_size and int(current.st_mtime) == int(stat.st_mtime):
                continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def localise(site: Path, since: float | None = None) -> list[str]:
    """Make the site self-contained; returns the remote asset URLs left unmapped (should be none).

    ``since``: only pages modified at or after this epoch time (the pages a run just wrote).
    """
    if not VENDOR_DIR.is_dir():
        raise FileNotFoundError(f"{VENDOR_DIR} is missing: run `python -m tidemark.quality.vendor`")
    _sync_vendor(site)
    static = site / "static"
    unmapped: set[str] = set()
    # GE's own stylesheets (re-copied into static/ on every build) carry a remote url() too.
    stylesheets = [p for p in static.rglob("*.css") if static / "vendor" not in p.parents]
    for page in pages(site) + stylesheets:
        if since is not None and page.suffix == ".html" and page.stat().st_mtime < since:
            continue
        text = page.read_text(encoding="utf-8")
        new, missing = rewrite(text, page.parent, static)
        unmapped.update(missing)
        if new != text:
            _write(page, new)
    if unmapped:
        log.warning("Data Docs still load remote assets (add them to tidemark/quality/vendor.py): %s", sorted(unmapped))
    return sorted(unmapped)


def check_site(site: Path) -> dict[str, Any]:
    """Offline check: remote asset references and local asset references that resolve to nothing."""
    remote: dict[str, list[str]] = {}
    broken: dict[str, list[str]] = {}
    files = [(p, p.read_text(encoding="utf-8")) for p in pages(site)]
    files += [(p, p.read_text(encoding="utf-8")) for p in (site / "static").rglob("*.css")]
    for path, text in files:
        rel = path.relative_to(site).as_posix()
        if refs := remote_asset_refs(text):
            remote[rel] = refs
        local = []
        for tag in _ASSET_TAG.finditer(text):
            local += [m.group(4) for m in _TAG_URL.finditer(tag.group(0))]
        local += [m.group(2) for m in _CSS_URL.finditer(text)]
        missing = [
            ref
            for ref in local
            if ref
            and not _REMOTE.match(ref)
            and not ref.startswith(("data:", "#", "javascript:", "mailto:"))
            and not (path.parent / re.split(r"[?#]", ref)[0]).exists()
        ]
        if missing:
            broken[rel] = missing
    return {"pages": len(pages(site)), "remote": remote, "broken": broken}
