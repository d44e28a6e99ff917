"""The Delta commit parser behind the dirty-hour rule, and the retry back-off."""

import json
from datetime import datetime, timedelta, timezone

from tidemark.batch.lake_log import parse_commit
from tidemark.batch.planning import FAILING_AFTER, RETRY_BASE, RETRY_MAX, retry_delay


def _add(day, hour, records, data_change=True):
    return {
        "add": {
            "path": f"event_date={day}/event_hour={hour}/part-{records}.parquet",
            "partitionValues": {"event_date": day, "event_hour": str(hour)},
            "size": 100,
            "modificationTime": 0,
            "dataChange": data_change,
            "stats": json.dumps({"numRecords": records}),
        }
    }


def _commit(*actions, ts_ms=1_764_000_000_000):
    lines = [{"commitInfo": {"timestamp": ts_ms, "operation": "WRITE"}}, *actions]
    return "\n".join(json.dumps(a) for a in lines) + "\n"


def test_adds_are_counted_per_event_hour():
    text = _commit(_add("2026-11-10", 9, 5), _add("2026-11-10", 9, 7), _add("2026-11-10", 23, 1))
    adds = parse_commit(12, text)
    assert [(a.version, a.event_hour, a.files, a.records) for a in adds] == [
        (12, datetime(2026, 11, 10, 9, tzinfo=timezone.utc), 2, 12),
        (12, datetime(2026, 11, 10, 23, tzinfo=timezone.utc), 1, 1),
    ]
    assert adds[0].commit_time == datetime.fromtimestamp(1_764_000_000, timezone.utc)


def test_compaction_is_not_a_data_change():
    """OPTIMIZE rewrites files with dataChange=false: it must never make an hour dirty."""
    remove = {"remove": {"path": "x.parquet", "dataChange": False}}
    assert parse_commit(3, _commit(_add("2026-11-10", 9, 500, data_change=False), remove)) == []


def test_actions_without_event_hours_are_ignored():
    other = {"add": {"path": "p.parquet", "partitionValues": {"ingest_date": "2026-11-10"}, "dataChange": True}}
    no_stats = {
        "add": {
            "path": "q.parquet",
            "partitionValues": {"event_date": "2026-11-10", "event_hour": "4"},
            "dataChange": True,
        }
    }
    meta = {"metaData": {"id": "x"}}
    adds = parse_commit(1, _commit(other, no_stats, meta))
    assert [(a.event_hour.hour, a.files, a.records) for a in adds] == [(4, 1, 0)]


def test_retry_back_off_doubles_up_to_a_day():
    assert retry_delay(1) == RETRY_BASE
    assert retry_delay(2) == 2 * RETRY_BASE
    assert retry_delay(FAILING_AFTER) == RETRY_BASE * 2 ** (FAILING_AFTER - 1)
    assert retry_delay(40) == RETRY_MAX == timedelta(hours=24)
