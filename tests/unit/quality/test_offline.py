"""tidemark.quality.offline: Data Docs pages pointed at the vendored assets."""

from tidemark.quality import offline


def test_docs_rewrite_points_cdn_assets_at_vendored_copies(tmp_path):
    site = tmp_path
    page_dir = site / "validations" / "s" / "run" / "time"
    (site / "static" / "images").mkdir(parents=True)
    (site / "static" / "images" / "favicon.ico").write_bytes(b"")
    page_dir.mkdir(parents=True)
    html = (
        '<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>'
        '<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js" '
        'integrity="sha384-abc" crossorigin="anonymous"></script>'
        '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1&x=2">'
        '<link rel="shortcut icon" href="../../../static/images/favicon.ico"/>'
        "<style>a { background: "
        "url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png') }</style>"
        '<a href="https://greatexpectations.io">GX</a>'
        '<script src="https://cdn.example.com/new.js"></script>'
    )
    new, unmapped = offline.rewrite(html, page_dir, site / "static")
    assert unmapped == ["https://cdn.example.com/new.js"]
    assert '<link rel="stylesheet" href="../../../../static/vendor/bootstrap/bootstrap.min.css"/>' in new
    assert '<script src="../../../../static/vendor/bootstrap/bootstrap.min.js"></script>' in new
    assert '<img src="../../../../static/images/logo-long.png">' in new
    assert 'href="../../../../static/images/favicon.ico"' in new  # GE's off-by-one depth, fixed
    assert "url('../../../../static/images/logo-long.png')" in new
    assert '<a href="https://greatexpectations.io">' in new
    assert offline.remote_asset_refs(new) == ["https://cdn.example.com/new.js"]
