import json
from datetime import datetime, timedelta, timezone

import pytest

from tidemark.contract import REASONS, InvalidEvent, parse_event_time, validate

REF = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)
GOOD = {
    "schema_version": 1, "event_id": "0b6f6f2e-8f3a-4c1e-9a57-3f1d2c4b5a69", "tenant_id": "acme",
    "event_time": "2026-11-25T02:59:30.250Z", "user_id": "u1", "session_id": "s1",
    "country": "US", "device": "mobile", "page": "/pricing", "referrer": None,
}


def _check(payload: bytes) -> str:
    with pytest.raises(InvalidEvent) as info:
        validate(payload, REF)
    assert info.value.reason in REASONS
    return info.value.reason


def test_valid_event_is_parsed_to_utc():
    event = validate(json.dumps(GOOD).encode(), REF)
    assert event.event_time == datetime(2026, 11, 25, 2, 59, 30, 250000, tzinfo=timezone.utc)
    assert (event.tenant_id, event.country, event.device, event.page) == ("acme", "US", "mobile", "/pricing")


def test_epoch_millis_and_offsets_are_accepted():
    ms = int(datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc).timestamp() * 1000)
    assert validate(json.dumps({**GOOD, "event_time": ms}).encode(), REF).event_time.hour == 2
    shifted = validate(json.dumps({**GOOD, "event_time": "2026-11-25T03:59:00+01:00"}).encode(), REF)
    assert shifted.event_time == datetime(2026, 11, 25, 2, 59, tzinfo=timezone.utc)


def test_unknown_extra_fields_are_tolerated():
    assert validate(json.dumps({**GOOD, "utm_source": "x"}).encode(), REF).event_id == GOOD["event_id"]


@pytest.mark.parametrize("change, reason", [
    ({"device": "phone"}, "unknown_device"),
    ({"country": "ZZ"}, "bad_country"),
    ({"country": "us"}, "bad_country"),
    ({"tenant_id": ""}, "empty_tenant"),
    ({"tenant_id": "a b"}, "invalid_tenant"),
    ({"event_time": "yesterday"}, "unparsable_time"),
    ({"event_time": "2026-11-25T02:00:00"}, "unparsable_time"),
    ({"event_time": "2026-11-25T04:00:00Z"}, "future_time"),
    ({"event_time": "2026-10-01T00:00:00Z"}, "expired_time"),
    ({"user_id": 5}, "wrong_type"),
    ({"event_time": True}, "wrong_type"),
    ({"page": "pricing"}, "bad_page"),
    ({"page": "/" + "x" * 3000}, "bad_page"),
    ({"event_id": "not-a-uuid"}, "invalid_event_id"),
    ({"schema_version": 2}, "unsupported_version"),
])
def test_field_rules(change, reason):
    assert _check(json.dumps({**GOOD, **change}).encode()) == reason


def test_missing_field():
    doc = dict(GOOD)
    del doc["session_id"]
    assert _check(json.dumps(doc).encode()) == "missing_field"


@pytest.mark.parametrize("payload, reason", [
    (b"hello", "not_json"),
    (b"", "not_json"),
    (json.dumps(GOOD).encode()[:50], "truncated_json"),
    (b"\xff\xfe{\"a\": 1}", "invalid_utf8"),
    (b"[1, 2]", "not_an_object"),
    (json.dumps({**GOOD, "page": "/" + "x" * 70_000}).encode(), "oversize_payload"),
])
def test_payload_rules(payload, reason):
    assert _check(payload) == reason


def test_skew_and_retention_are_relative_to_the_record_not_the_clock():
    payload = json.dumps({**GOOD, "event_time": "2020-01-01T00:00:00Z"}).encode()
    old_ref = datetime(2020, 1, 1, 0, 1, tzinfo=timezone.utc)
    assert validate(payload, old_ref).event_time.year == 2020
    with pytest.raises(InvalidEvent, match="expired_time"):
        validate(payload, old_ref + timedelta(days=31))


def test_parse_event_time_rejects_out_of_range_epoch():
    with pytest.raises(InvalidEvent, match="unparsable_time"):
        parse_event_time(10**20)
