"""Tiering boundaries and settings: pure functions."""

import dataclasses
from datetime import date, datetime, timezone

import pytest

from tidemark.config import check_tiering, load
from tidemark.tiering.delta_maintenance import _closed
from tidemark.tiering.inventory import PartitionStats, totals
from tidemark.tiering.options import RunOptions, boundaries, default_interval_end
from tidemark.tiering.report import TieringReport
from tidemark.tiering.warm import _users_match

END = datetime(2026, 11, 20, tzinfo=timezone.utc)


@pytest.fixture
def cfg(monkeypatch, tmp_path):
    monkeypatch.setenv("TIDEMARK_HOME", str(tmp_path))
    for var in (
        "TIDEMARK_HOT_DAYS",
        "TIDEMARK_LAKE_HOT_DAYS",
        "TIDEMARK_RETENTION_DAYS",
        "TIDEMARK_VACUUM_RETENTION_HOURS",
        "TIDEMARK_ALLOWED_LATENESS_S",
    ):
        monkeypatch.delenv(var, raising=False)
    return load()


def test_defaults_keep_the_hot_lake_longer_than_the_contract_accepts_events(cfg):
    t = cfg.tiering
    assert (t.hot_days, t.vacuum_retention_hours, t.parts_alert) == (7, 168, 100)
    assert t.lake_hot_days > cfg.retention_days
    assert t.cold_path == f"{cfg.lake.root}/events_cold"


@pytest.mark.parametrize(
    "change, variable",
    [
        ({"lake_hot_days": 30}, "TIDEMARK_LAKE_HOT_DAYS"),
        ({"vacuum_retention_hours": 24}, "TIDEMARK_VACUUM_RETENTION_HOURS"),
        ({"parts_alert": 300}, "TIDEMARK_PARTS_ALERT"),
        ({"stream_rows_grace_s": 60}, "TIDEMARK_STREAM_ROWS_GRACE_S"),
    ],
)
def test_unsafe_settings_are_refused_naming_the_variable(cfg, change, variable):
    with pytest.raises(ValueError, match=variable):
        check_tiering(dataclasses.replace(cfg.tiering, **change), cfg.retention_days)


def test_env_lake_hot_days_not_above_retention_fails_at_load(monkeypatch, tmp_path):
    monkeypatch.setenv("TIDEMARK_HOME", str(tmp_path))
    monkeypatch.setenv("TIDEMARK_RETENTION_DAYS", "30")
    monkeypatch.setenv("TIDEMARK_LAKE_HOT_DAYS", "14")
    with pytest.raises(ValueError, match="TIDEMARK_LAKE_HOT_DAYS"):
        load()


def test_boundaries_derive_from_the_interval_end(cfg):
    b = boundaries(cfg, END, wall_now=datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert b.hot_from == date(2026, 11, 13)  # keeps 11-13 .. 11-19: HOT_DAYS whole days
    assert b.lake_from == date(2026, 10, 16)  # 35 days
    # lateness 600 s: the 23:00 hour ends at 00:00 and closes at 00:10, after the interval end
    assert b.closed_before == datetime(2026, 11, 19, 23, tzinfo=timezone.utc)
    assert b.closed_day == date(2026, 11, 19)
    assert b.reader_now == END


def test_grace_and_cold_boundaries_never_run_ahead_of_the_clock(cfg):
    early = datetime(2026, 11, 10, 12, tzinfo=timezone.utc)
    b = boundaries(cfg, END, wall_now=early)
    assert b.reader_now == early
    assert b.lake_from == date(2026, 10, 6)  # from the clock, not the (future) interval end
    assert b.hot_from == date(2026, 11, 13)


def test_run_options_reject_naive_times_and_unknown_steps():
    with pytest.raises(ValueError, match="timezone"):
        RunOptions(datetime(2026, 11, 20))
    with pytest.raises(ValueError, match="unknown tiering steps"):
        RunOptions(END, steps=("hot", "ttl"))
    assert default_interval_end(datetime(2026, 11, 20, 13, 5, tzinfo=timezone.utc)) == END


def test_closed_partitions_for_the_dry_run_plan(cfg):
    b = boundaries(cfg, datetime(2026, 11, 20, 6, tzinfo=timezone.utc), wall_now=END.replace(day=30))
    assert b.closed_before == datetime(2026, 11, 20, 5, tzinfo=timezone.utc)
    assert _closed("events_raw", ("2026-11-20", 4), b) and not _closed("events_raw", ("2026-11-20", 5), b)
    assert _closed("events_raw", ("2026-11-19", 23), b)
    assert _closed("events_rejected", ("2026-11-19",), b) and not _closed("events_rejected", ("2026-11-20",), b)


def test_users_compare_exactly_at_hour_precision_and_within_tolerance_at_day_precision():
    assert _users_match("hour_rollups", 1000, 1000, 0.02) and not _users_match("hour_rollups", 1000, 1001, 0.02)
    assert _users_match("day_rollups", 1000, 1015, 0.02) and not _users_match("day_rollups", 1000, 1030, 0.02)


def test_report_totals_and_lines():
    before = [
        PartitionStats("lake_hot", "events_raw", "event_date=2026-11-01/event_hour=1", 30, 3000, 3, 3),
        PartitionStats("hot", "minute_rollups", "20261101", 10, 500, 2, 2),
    ]
    after = [PartitionStats("lake_hot", "events_raw", "event_date=2026-11-01/event_hour=1", 30, 2000, 1, 1)]
    assert totals(before)["lake_hot"] == {"rows": 30, "bytes": 3000, "files": 3, "small_files": 3, "partitions": 1}
    rep = TieringReport("r1", END, False, before=before, after=after, steps={"hot": {"days_dropped": 1}})
    tiers = rep.tier_totals()
    assert tiers["hot"]["after"]["rows"] == 0 and tiers["lake_hot"]["after"]["files"] == 1
    text = "\n".join(rep.lines())
    assert "3 -> 1" in text and "days_dropped" in text
