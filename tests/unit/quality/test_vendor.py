"""tidemark.quality.vendor: every CDN asset GE's pages load has a committed copy."""

from tidemark.quality.vendor import ASSETS, URL_MAP, VENDOR_DIR


def test_every_cdn_url_has_a_vendored_file():
    for asset in ASSETS:
        assert (VENDOR_DIR / asset.target).is_file(), asset.target
    assert all(t.startswith(("vendor/", "images/")) for t in URL_MAP.values())
    css = (VENDOR_DIR / "fontawesome" / "css" / "all.min.css").read_text()
    assert ".ttf" not in css and "fa-solid-900.woff2" in css
