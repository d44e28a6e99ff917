"""tidemark.quality.gx: where GE's state and the site live, and the page of a run (no GE import)."""

from tidemark.config import load
from tidemark.quality import gx


class _Identifier:
    def __init__(self, *parts):
        self.parts = parts

    def to_tuple(self):
        return self.parts


def test_paths_follow_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDEMARK_HOME", str(tmp_path))
    home = gx.quality_home(load())
    assert home == tmp_path / "quality"
    assert gx.gx_root(home) == home / "gx"
    assert gx.docs_dir(home) == home / "data_docs"
    config = gx.site_config(gx.docs_dir(home))
    assert config["store_backend"]["base_directory"] == str(gx.docs_dir(home))
    assert config["show_how_to_buttons"] is False


def test_validation_page_is_found_only_when_ge_wrote_it(tmp_path):
    identifier = _Identifier("raw_hour", "run-1", "20261125T030000.000000Z", "abc123")
    assert gx.validation_page(tmp_path, identifier) is None
    page = tmp_path / "validations" / "raw_hour" / "run-1" / "20261125T030000.000000Z" / "abc123.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html></html>")
    assert gx.validation_page(tmp_path, identifier) == page
    assert gx.validation_page(tmp_path, object()) is None  # not an identifier: best effort, no page


def test_gx_lock_creates_the_context_folder_and_its_lock_file(tmp_path):
    with gx.gx_lock(tmp_path):  # not reentrant (a second flock on a new handle waits): never nest it
        assert (tmp_path / "gx").is_dir() and (tmp_path / ".gx.lock").exists()
