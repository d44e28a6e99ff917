import json
from datetime import datetime, timedelta, timezone

import pytest

from tidemark.transforms.validation import rejected_events, valid_events, validate_records

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)


def _event(i: int, **over) -> bytes:
    doc = {"schema_version": 1, "event_id": f"00000000-0000-4000-8000-{i:012d}", "tenant_id": "acme",
           "event_time": (T0 - timedelta(seconds=2)).isoformat().replace("+00:00", "Z"), "user_id": f"u{i % 3}",
           "session_id": "s", "country": "US", "device": "desktop", "page": "/p"}
    doc.update(over)
    return json.dumps(doc).encode()


def _records(spark, payloads, ts=T0):
    rows = [(None, p, "page_views", i % 2, i, ts.replace(tzinfo=None), 0) for i, p in enumerate(payloads)]
    return spark.createDataFrame(
        rows, "key BINARY, value BINARY, topic STRING, partition INT, offset BIGINT, timestamp TIMESTAMP, timestampType INT")


def test_bad_records_become_dead_letters_without_failing_the_batch(spark):
    payloads = [_event(1), b"not json", _event(2, device="phone"), _event(3, event_time="2026-11-25T02:00:00Z")]
    validated = validate_records(_records(spark, payloads))
    rows = {r["kafka_offset"]: r for r in validated.collect()}
    assert len(rows) == 4
    assert rows[0]["reason"] is None and rows[0]["event_id"].endswith("000000000001")
    assert rows[0]["event_time"] == (T0 - timedelta(seconds=2)).replace(tzinfo=None)
    assert (rows[1]["reason"], rows[1]["raw_payload"]) == ("not_json", b"not json")
    assert rows[2]["reason"] == "unknown_device" and rows[2]["event_id"] is None
    assert rows[1]["dedup_key"] == "page_views/1/1"  # dead letters never collapse into each other

    dead = rejected_events(validated).collect()
    assert sorted(r["reason"] for r in dead) == ["not_json", "unknown_device"]


def test_late_flag_uses_arrival_minus_event_time(spark):
    payloads = [_event(1), _event(2, event_time="2026-11-25T02:00:00Z")]
    events = valid_events(validate_records(_records(spark, payloads)), allowed_lateness_s=600).collect()
    by_id = {r["event_id"][-1]: r for r in events}
    assert by_id["1"]["is_late"] is False
    assert by_id["2"]["is_late"] is True
    assert (by_id["2"]["event_date"].isoformat(), by_id["2"]["event_hour"]) == ("2026-11-25", 2)


@pytest.mark.parametrize("ts_offset_days, reason", [(0, None), (40, "expired_time")])
def test_retention_is_judged_against_the_kafka_timestamp(spark, ts_offset_days, reason):
    ts = T0 + timedelta(days=ts_offset_days)
    (row,) = validate_records(_records(spark, [_event(1)], ts=ts)).collect()
    assert row["reason"] == reason
