import json
from datetime import datetime, timedelta, timezone

import pytest

from tidemark.contract import REASONS, InvalidEvent, parse_event_time, validate

REF = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)
GOOD = {
    "schema_version": 1,
    "event_id": "0b6f6f2e-8f3a-4c1e-9a57-3f1d2c4b5a69",
    "tenant_id": "acme",
    "event_time": "2026-11-25T02:59:30.250Z",
    "user_id": "u1",
    "session_id": "s1",
    "country": "US",
    "device": "mobile",
    "page": "/pricing",
    "referrer": None,
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


@pytest.mark.parametrize(
    "change, reason",
    [
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
    ],
)
def test_field_rules(change, reason):
    assert _check(json.dumps({**GOOD, **change}).encode()) == reason


def test_missing_field():
    doc = dict(GOOD)
    del doc["session_id"]
    assert _check(json.dumps(doc).encode()) == "missing_field"


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"hello", "not_json"),
        (b"", "not_json"),
        (json.dumps(GOOD).encode()[:50], "truncated_json"),
        (b'\xff\xfe{"a": 1}', "invalid_utf8"),
        (b"[1, 2]", "not_an_object"),
        (json.dumps({**GOOD, "page": "/" + "x" * 70_000}).encode(), "oversize_payload"),
    ],
)
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


# -- definitions shared with the Spark SQL validation (schemas/README.md, "How a payload is read") ----
@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 5000,
        b'{"a":' * 5000,
        b"[" * 60_000,
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b'{"a":' + b"[" * 30_000 + b"]" * 30_000 + b"}",
    ],
)
def test_poison_nesting_is_a_reason_never_an_exception(payload):
    with pytest.raises(InvalidEvent) as info:
        validate(payload, REF)
    assert info.value.reason in ("truncated_json", "not_json")


def test_nesting_far_beyond_the_size_limit_is_bounded_too():
    for payload, reason in ((b"[" * 100_000, "truncated_json"), (b"[" * 100_000 + b"]" * 100_000, "not_json")):
        with pytest.raises(InvalidEvent) as info:
            validate(payload, REF, max_payload_bytes=1 << 20)
        assert info.value.reason == reason


def test_depth_limit_is_exact():
    ok = json.dumps({**GOOD, "x": json.loads("[" * 63 + "]" * 63)}).encode()
    assert validate(ok, REF).event_id == GOOD["event_id"]
    assert _check(json.dumps({**GOOD, "x": json.loads("[" * 64 + "]" * 64)}).encode()) == "not_json"
    # brackets inside strings do not count
    assert validate(json.dumps({**GOOD, "x": "[" * 500}).encode(), REF)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b'{"a":' + b"1" * 5000 + b"}", "not_json"),  # was a ValueError (int digit limit)
        (b'{"a":' + b"1" * 1001 + b"}", "not_json"),
        (b'{"a":1,"a":2}', "not_json"),  # duplicate key
        (b'{"a":"\\ud800"}', "not_json"),  # lone surrogate escape
        (b"[NaN]", "not_json"),
        (b'{"a": Infinity}', "not_json"),
        (b"{} x", "not_json"),
        (b'{"a":1}]', "not_json"),
        (b"1]", "not_json"),
        (b'{"a": tru', "truncated_json"),
        (b'{"a":"x\\', "truncated_json"),
        (b"{} {", "truncated_json"),
        (b" [1", "truncated_json"),
        (b"[1]]", "not_json"),
        (b"   ", "not_json"),
        (b"\xef\xbb\xbf{}", "not_json"),
        (b"\x00", "not_json"),
        (b'{"a":"b\x00"}', "not_json"),
    ],
)
def test_reading_rules(payload, reason):
    assert _check(payload) == reason


def test_none_bytearray_and_memoryview_payloads():
    assert _check(None) == "not_json"
    good = json.dumps(GOOD).encode()
    assert validate(bytearray(good), REF).event_id == validate(memoryview(good), REF).event_id


def test_numbers_follow_the_variant_representation():
    assert validate(json.dumps(GOOD).replace('"schema_version": 1', '"schema_version": 1.0').encode(), REF)
    assert validate(json.dumps(GOOD).replace('"schema_version": 1', '"schema_version": 1e0').encode(), REF)
    for literal, reason in (
        ("1.5", "wrong_type"),
        ("1.00000000000000000001", "wrong_type"),
        ("2", "unsupported_version"),
        ("1" + "0" * 40, "unsupported_version"),
        ('"1"', "wrong_type"),
    ):
        assert (
            _check(json.dumps(GOOD).replace('"schema_version": 1', f'"schema_version": {literal}').encode()) == reason
        )
    # 41 significant digits: not an exact decimal in Spark's VARIANT, so the nearest double (1.0)
    assert validate(
        json.dumps(GOOD).replace('"schema_version": 1', '"schema_version": 1.' + "0" * 39 + "1").encode(), REF
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-11-25T02:59:58Z", datetime(2026, 11, 25, 2, 59, 58, tzinfo=timezone.utc)),
        ("2026-11-25t02:59:58z", datetime(2026, 11, 25, 2, 59, 58, tzinfo=timezone.utc)),
        ("2026-11-25 02:59:58+00:00", datetime(2026, 11, 25, 2, 59, 58, tzinfo=timezone.utc)),
        ("2026-11-25T08:29:58.1234569+05:30", datetime(2026, 11, 25, 2, 59, 58, 123456, tzinfo=timezone.utc)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=timezone.utc)),
        (253_402_300_799_999, datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)),
        (-62_135_596_800_000, datetime(1, 1, 1, tzinfo=timezone.utc)),
    ],
)
def test_event_time_forms(value, expected):
    assert parse_event_time(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-25T02:59:58+0000",
        "2026-11-25T02:59Z",
        "20261125T025958Z",
        "2026-11-25T02:59:58",
        "2026-11-25T24:00:00Z",
        "2026-11-25T02:59:60Z",
        "2026-02-29T00:00:00Z",
        "2026-11-25T02:59:58+24:00",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+00:01",
        "9999-12-31T23:59:59.999999-00:01",
        "2026-11-25T02:59:58Z\n",
        "2026-11-25T02:59:58,5Z",
        "\u0662026-11-25T02:59:58Z",
        253_402_300_800_000,
        -62_135_596_800_001,
        10**40,
    ],
)
def test_event_time_rejections(value):
    with pytest.raises(InvalidEvent, match="unparsable_time"):
        parse_event_time(value)


def test_reference_time_may_be_naive_utc():
    assert validate(json.dumps(GOOD).encode(), REF.replace(tzinfo=None)).event_id == GOOD["event_id"]


def test_field_rules_match_the_json_schema_library():
    """For plain JSON values, the schema subset interpreted here agrees with fastjsonschema."""
    import fastjsonschema

    from tidemark.contract.schema import _schema, check_field, field_rules, required_fields

    compiled = fastjsonschema.compile(_schema())
    variants = [
        {},
        {"device": "tv"},
        {"country": "us"},
        {"tenant_id": ""},
        {"tenant_id": "a b"},
        {"tenant_id": "t" * 65},
        {"user_id": 5},
        {"user_id": ""},
        {"page": "x"},
        {"page": "/" * 2049},
        {"referrer": 7},
        {"referrer": "r" * 2049},
        {"schema_version": 2},
        {"schema_version": True},
        {"schema_version": 1.0},
        {"schema_version": 1.5},
        {"event_id": "x"},
        {"event_id": GOOD["event_id"].upper()},
        {"event_id": GOOD["event_id"] + "\n"},
        {"event_time": 1.5},
        {"event_time": None},
        {"country": None},
        {"session_id": ["s"]},
        {"device": "tv", "user_id": 5},
    ]
    for change in variants:
        doc = {**GOOD, **change}
        ours = [name for name in required_fields() if name not in doc] or [
            r.name for r in field_rules() if r.name in doc and check_field(r, doc[r.name]) is not None
        ]
        try:
            compiled(doc)
            theirs = []
        except fastjsonschema.JsonSchemaValueException as exc:
            theirs = [exc.path[1] if len(exc.path) > 1 else "required"]
        assert bool(ours) == bool(theirs), (change, ours, theirs)
        if theirs and theirs != ["required"]:
            assert ours[0] == theirs[0], (change, ours, theirs)


# -- issue 23: every accepted value fits ClickHouse, and the producer's Kafka timestamp is checked --
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LAST_STORABLE = EPOCH + timedelta(seconds=2**32 - 1)  # 2106-02-07T06:28:15Z, ClickHouse DateTime's last


@pytest.mark.parametrize(
    "event_time, reference",
    [
        ("1969-12-31T23:59:59.999999Z", EPOCH + timedelta(seconds=5)),
        ("1969-12-25T00:00:00Z", EPOCH + timedelta(days=1)),  # the first example
        (-1, EPOCH),
        ("2106-02-07T06:28:16Z", LAST_STORABLE),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 58, tzinfo=timezone.utc)),
    ],
)
def test_an_event_time_the_rollups_cannot_store_is_out_of_range_time(event_time, reference):
    """Judged against its own (equally odd) Kafka timestamp it would pass skew and retention; its
    minute would then be a value outside ClickHouse's DateTime column and stop the sink."""
    with pytest.raises(InvalidEvent) as info:
        validate(json.dumps({**GOOD, "event_time": event_time}).encode(), reference)
    assert info.value.reason == "out_of_range_time"


@pytest.mark.parametrize(
    "event_time, reference",
    [
        ("1970-01-01T00:00:00Z", EPOCH + timedelta(seconds=5)),
        ("2106-02-07T06:28:15.999999Z", LAST_STORABLE),
        (0, EPOCH),
    ],
)
def test_the_storable_range_is_inclusive(event_time, reference):
    assert validate(json.dumps({**GOOD, "event_time": event_time}).encode(), reference).event_time >= EPOCH


def test_a_kafka_timestamp_far_behind_the_stream_clock_is_implausible_kafka_time():
    """The issue's poison record: Kafka timestamp 1970-01-01T00:00:05Z, event_time the epoch. Judged
    only against its own timestamp it is an on-time event; against the stream's clock it is a
    producer with a broken clock."""
    payload = json.dumps({**GOOD, "event_time": "1970-01-01T00:00:00Z"}).encode()
    stamped = EPOCH + timedelta(seconds=5)
    assert validate(payload, stamped).event_time == EPOCH  # read as it was stamped: plausible
    with pytest.raises(InvalidEvent) as info:
        validate(payload, stamped, ingest_time=REF)
    assert info.value.reason == "implausible_kafka_time"
    assert "1970-01-01T00:00:05" in info.value.detail


def test_the_kafka_timestamp_window_is_exact():
    age, ahead = timedelta(days=365), timedelta(hours=1)
    payload = lambda ts: json.dumps({**GOOD, "event_time": ts.isoformat()}).encode()  # noqa: E731
    for ts in (REF - age, REF + ahead, REF):
        assert validate(payload(ts), ts, ingest_time=REF).event_time == ts
    for ts in (REF - age - timedelta(microseconds=1), REF + ahead + timedelta(milliseconds=1)):
        with pytest.raises(InvalidEvent) as info:
            validate(payload(ts), ts, ingest_time=REF)
        assert info.value.reason == "implausible_kafka_time"
    # the age is a setting (TIDEMARK_MAX_RECORD_AGE_DAYS)
    old = REF - timedelta(days=40)
    assert validate(payload(old), old, ingest_time=REF, max_record_age=timedelta(days=41))
    with pytest.raises(InvalidEvent):
        validate(payload(old), old, ingest_time=REF, max_record_age=timedelta(days=39))


def test_a_late_event_with_a_plausible_kafka_timestamp_stays_valid():
    """Late-data semantics are unchanged: a phone's event hours old, sent today, is valid (and late)."""
    late = REF - timedelta(hours=5)
    event = validate(json.dumps({**GOOD, "event_time": late.isoformat()}).encode(), REF, ingest_time=REF)
    assert event.event_time == late
