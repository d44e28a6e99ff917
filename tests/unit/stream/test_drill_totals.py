"""The failure drills' totals: produced vs counted in ClickHouse and in the lake, exact only when
nothing was lost and nothing doubled; and the drift records added to a manifest are counted like
the generator's own."""

import sys
from datetime import datetime, timezone
from random import Random

import pytest

from tidemark.config import PROJECT_ROOT
from tidemark.stream.reconcile import LakeReport, StreamReport, drill_totals, expected_rejections

pytestmark = pytest.mark.unit

sys.path.insert(0, str(PROJECT_ROOT / "bench"))
import drills  # noqa: E402


def stream(on_time: int = 10, published: int = 10) -> StreamReport:
    return StreamReport(
        on_time_expected=on_time,
        on_time_published=published,
        minute_keys_expected=3,
        rejected_expected={"wrong_type": 2},
        rejected_published={"wrong_type": 2},
    )


def lake(valid: int = 12, in_lake: int = 12, rows: int = 12, records: int = 12, dead: int = 2) -> LakeReport:
    return LakeReport(valid, in_lake, rows, records, 2, dead)


def test_exact_when_everything_matches():
    totals = drill_totals(stream(), lake())
    assert totals["exact"] and totals["clickhouse"]["exact"] and totals["lake"]["exact"]
    assert totals["lake"]["lost"] == totals["lake"]["doubled"] == totals["clickhouse"]["lost"] == 0


@pytest.mark.parametrize(
    ("report", "side", "lost", "doubled"),
    [
        (lake(in_lake=11, rows=11, records=11), "lake", 1, 0),  # an event never landed
        (lake(rows=13, records=13), "lake", 0, 1),  # a duplicate the dedup let through
        (lake(rows=13, records=12), "lake", 0, 1),  # a Kafka record landed twice
        (lake(dead=1), "lake", 1, 0),  # a dead letter missing
    ],
)
def test_lake_lost_or_doubled(report, side, lost, doubled):
    totals = drill_totals(stream(), report)
    assert not totals["exact"] and not totals[side]["exact"]
    assert (totals[side]["lost"], totals[side]["doubled"]) == (lost, doubled)


def test_clickhouse_lost_and_doubled():
    assert drill_totals(stream(published=9), lake())["clickhouse"]["lost"] == 1
    doubled = drill_totals(stream(published=12), lake())
    assert doubled["clickhouse"]["doubled"] == 2 and not doubled["exact"]


def test_drift_records_join_the_manifest():
    manifest = {
        "minute_counts": [["acme", "2026-12-01T10:00", "US", "desktop", "/", 5, 4]],
        "on_time_events": 4,
        "valid_events": 5,
        "malformed": {"not_json": 1, "wrong_type": 1},
    }
    accepted = drills.drift_events(3, datetime(2026, 12, 1, 10, 0, 30, tzinfo=timezone.utc), Random(1))
    out = drills.drift_manifest(manifest, accepted, {"unsupported_version": 2, "wrong_type": 2})
    assert out["minute_counts"][-1] == ["drift", "2026-12-01T10:00", "DE", "mobile", "/drift", 3, 3]
    assert (out["on_time_events"], out["valid_events"]) == (7, 8)
    assert expected_rejections(out) == {"not_json": 1, "wrong_type": 3, "unsupported_version": 2}
    assert manifest["on_time_events"] == 4  # the generator's manifest is left as it was
