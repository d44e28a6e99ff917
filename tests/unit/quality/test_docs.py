"""tidemark.quality.docs: retention of stored results and site pages (filesystem only, no GE)."""

from datetime import datetime, timezone

from tidemark.quality import docs, gx


def test_prune_removes_old_runs_from_the_store_and_the_site(tmp_path):
    old, new = "20261101T030000.000000Z", "20261125T030000.000000Z"
    store = gx.gx_root(tmp_path) / "uncommitted" / "validations" / "raw_hour" / "run"
    site = docs.site_dir(tmp_path) / "validations" / "raw_hour" / "run"
    for root in (store, site):
        for run in (old, new):
            (root / run).mkdir(parents=True)
            (root / run / "result.json").write_text("{}")

    removed = docs.prune(tmp_path, keep_days=7, now=datetime(2026, 11, 26, tzinfo=timezone.utc))
    assert removed == 1  # runs counted once, from the GE store
    for root in (store, site):
        assert sorted(p.name for p in root.iterdir()) == [new]

    docs.prune(tmp_path, keep_days=0, now=datetime(2026, 11, 26, tzinfo=timezone.utc))
    assert not (gx.gx_root(tmp_path) / "uncommitted" / "validations" / "raw_hour").exists()  # empty folders go too
