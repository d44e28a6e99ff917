import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from tidemark import contract
from tidemark.generator import MALFORMED_KINDS, TrafficOptions, generate
from tidemark.transforms.validation import VALIDATED_SCHEMA, rejected_events, valid_events, validate_records

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _us(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(microseconds=1)


def _event(i: int, **over) -> bytes:
    doc = {
        "schema_version": 1,
        "event_id": f"00000000-0000-4000-8000-{i:012d}",
        "tenant_id": "acme",
        "event_time": (T0 - timedelta(seconds=2)).isoformat().replace("+00:00", "Z"),
        "user_id": f"u{i % 3}",
        "session_id": "s",
        "country": "US",
        "device": "desktop",
        "page": "/p",
    }
    doc.update(over)
    return json.dumps(doc).encode()


def _records(spark, payloads, ts=T0, ingest=None):
    """Kafka-source-shaped rows plus the stream's ``ingest_time``; ``ts`` and ``ingest`` are one datetime
    or one per payload (aware UTC). Ingest defaults to each record's own timestamp (read as it was
    stamped), so only the tests about the Kafka timestamp's own window depend on it."""
    stamps = ts if isinstance(ts, list) else [ts] * len(payloads)
    ingests = stamps if ingest is None else ingest if isinstance(ingest, list) else [ingest] * len(payloads)
    rows = [
        (None, p, "page_views", i % 2, i, _us(t), 0, _us(g))
        for i, (p, t, g) in enumerate(zip(payloads, stamps, ingests, strict=True))
    ]
    return spark.createDataFrame(
        rows,
        "key BINARY, value BINARY, topic STRING, partition INT, offset BIGINT, ts_us BIGINT, timestampType INT, "
        "ingest_us BIGINT",
    ).selectExpr(
        "key",
        "value",
        "topic",
        "partition",
        "offset",
        "timestamp_micros(ts_us) AS timestamp",
        "timestampType",
        "timestamp_micros(ingest_us) AS ingest_time",
    )


def _by_offset(validated):
    return {r["kafka_offset"]: r for r in validated.selectExpr("*", "unix_micros(event_time) AS et_us").collect()}


def test_bad_records_become_dead_letters_without_failing_the_batch(spark):
    payloads = [_event(1), b"not json", _event(2, device="phone"), _event(3, event_time="2026-11-25T02:00:00Z")]
    validated = validate_records(_records(spark, payloads))
    rows = _by_offset(validated)
    assert len(rows) == 4
    assert rows[0]["reason"] is None and rows[0]["event_id"].endswith("000000000001")
    assert rows[0]["et_us"] == _us(T0 - timedelta(seconds=2))
    assert (rows[1]["reason"], rows[1]["raw_payload"]) == ("not_json", b"not json")
    assert rows[2]["reason"] == "unknown_device" and rows[2]["event_id"] is None
    assert rows[1]["dedup_key"] == "page_views/1/1"  # dead letters never collapse into each other
    # the stream's dedup key is the (tenant, event id) pair: one tenant's ids never erase another's
    assert rows[0]["raw_payload"] is None and rows[0]["dedup_key"] == "acme/" + rows[0]["event_id"]

    dead = rejected_events(validated).collect()
    assert sorted(r["reason"] for r in dead) == ["not_json", "unknown_device"]


def test_output_schema_is_unchanged(spark):
    validated = validate_records(_records(spark, [_event(1)]))
    assert [(f.name, f.dataType) for f in validated.schema.fields] == [
        (f.name, f.dataType) for f in VALIDATED_SCHEMA.fields
    ]


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


def test_no_python_runs_per_record(spark):
    plan = validate_records(_records(spark, [_event(1)]))._jdf.queryExecution().executedPlan().toString()
    for python_node in ("PythonUDF", "ArrowEvalPython", "BatchEvalPython", "MapInArrow", "MapInPandas"):
        assert python_node not in plan


def test_every_malformed_kind_gets_its_reason(spark):
    opts = TrafficOptions(start_ms=START_MS, count=len(MALFORMED_KINDS) * 12, malformed_fraction=1.0)
    records, manifest = generate(opts)
    ts = [EPOCH + timedelta(milliseconds=r.timestamp_ms) for r in records]
    rows = _by_offset(validate_records(_records(spark, [r.value for r in records], ts=ts)))
    got = Counter()
    for i, rec in enumerate(records):
        assert rows[i]["reason"] == rec.kind, (rec.kind, rows[i]["detail"], rec.value[:200])
        got[rec.kind] += 1
    assert got == Counter({kind: 12 for kind in MALFORMED_KINDS}) and manifest.malformed == dict(got)


# -- parity with the Python reference implementation -------------------------------------------
GOOD = json.loads(_event(7))


def _doc(**over) -> bytes:
    doc = {**GOOD, **over}
    return json.dumps({k: v for k, v in doc.items() if v is not _DROP}, ensure_ascii=False).encode()


_DROP = object()


def _raw(extra: str = "", **over) -> bytes:
    """GOOD with raw JSON text for some fields (numbers written exactly as given) and extra members."""
    parts = [f'"{k}":{over[k] if k in over else json.dumps(v)}' for k, v in GOOD.items()]
    return ("{" + ",".join(parts) + extra + "}").encode()


def _iso(ts: datetime, frac: str = "") -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def _edge_cases() -> list[tuple]:
    ms = lambda t: (t - EPOCH) // timedelta(milliseconds=1)  # noqa: E731
    good = _doc()
    cases: list = [
        # payload framing, size, UTF-8
        None,
        b"",
        b"   ",
        b"\n",
        b"{}",
        b"[]",
        b"null",
        b"42",
        b'"x"',
        b"true",
        b" [1",
        b"{",
        b"[",
        b"\xff",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
        good.replace(b'"/p"', b'"/\xff"'),
        b"\xef\xbb\xbf" + good,
        b"\x00",
        good + b"\x00",
        good.replace(b'"s"', b'"s\x00"'),
        good.replace(b'"s"', b'"s\t"'),
        good.replace(b'"s"', b'"s\\u0000"'),
        good + b" x",
        good + b"]",
        good + b"}",
        good + b",",
        good + b"{",
        good + b" " + good,
        good + b"\n\t\r ",
        b" \n" + good,
        b"1]",
        b"[1] [2]",
        b"[1],[2]",
        b"1,2",
        b"]",
        b"[1,]",
        b'{"a":1,}',
        b"{'a':1}",
        good[:40],
        good[:-1],
        good[: good.index(b'"page"') + 9],
        b'{"a":"x\\',
        b'{"a": tru',
        b'{"a":1}}',
        b'["a" "b"]',
        b'{"a":"[[[{{{\\"","b":[1,{"c":"}}}"}]',
        b"[1, NaN]",
        b"[Infinity]",
        b"[-Infinity]",
        b"// c\n{}",
        b"[01]",
        b"[.5]",
        b"[1.]",
        b"[+1]",
        b"[-0, 0e5, 1E+2, -1e-2]",
        b"[0x10]",
        # duplicate keys, escapes, surrogates, keys
        _raw(',"x":1,"x":2'),
        _raw(',"x":{"y":1,"y":1}'),
        _raw(',"event_id":"dup"'),
        good.replace(b'"user_id"', b'"user\\u005fid"'),
        good.replace(b'"/p"', b'"\\/p"'),
        _raw(',"x":"\\ud800"'),
        _raw(',"x":"\\udc00\\ud800"'),
        _raw(',"\\ud800":1'),
        json.dumps({**GOOD, "user_id": "\U0001f600" * 128}).encode(),  # escaped pairs, ensure_ascii
        json.dumps({**GOOD, "user_id": "\U0001f600" * 129}).encode(),
        # numbers
        _raw(',"x":' + "1" * 1000),
        _raw(',"x":' + "1" * 1001),
        _raw(',"x":-' + "1" * 1000),
        _raw(',"x":' + "1" * 500 + "." + "1" * 500),
        _raw(',"x":' + "1" * 500 + "." + "1" * 501),
        _raw(',"x":1e' + "1" * 999),
        _raw(',"x":1e' + "1" * 1000),
        _raw(',"x":1e400'),
        _raw(schema_version="1.0"),
        _raw(schema_version="1e0"),
        _raw(schema_version="10E-1"),
        _raw(schema_version="1.5"),
        _raw(schema_version='"1"'),
        _raw(schema_version="true"),
        _raw(schema_version="null"),
        _raw(schema_version="2"),
        _raw(schema_version="-0"),
        _raw(schema_version="1.00000000000000000001"),
        _raw(schema_version="1.000000000000000000000000000000000000001"),
        _raw(schema_version="1" + "0" * 40),
        _raw(schema_version="9223372036854775808"),
        _raw(schema_version="[1]"),
        _raw(schema_version="{}"),
        # depth
        _raw(',"x":' + "[" * 63 + "]" * 63),
        _raw(',"x":' + "[" * 64 + "]" * 64),
        _raw(',"x":' + '{"a":' * 63 + "1" + "}" * 63),
        _raw(',"x":"' + "[" * 500 + '"'),
        _raw(',"x":' + "[" * 30 + "]" * 30 + ',"y":' + "[" * 40 + "]" * 40),
        # keys
        _raw(',"' + "k" * 50_000 + '":1'),
        _raw(',"' + "k" * 50_001 + '":1'),
        _raw(',"' + "k" * 49_999 + '\U0001f600":1'),
        # string bounds, unicode, patterns
        _doc(tenant_id="t" * 64),
        _doc(tenant_id="t" * 65),
        _doc(tenant_id=""),
        _doc(tenant_id="acme\n"),
        _doc(tenant_id="\u00e1cme"),
        _doc(tenant_id="a.b_c-d"),
        _doc(tenant_id="-a"),
        _doc(tenant_id="a b"),
        _doc(tenant_id="\uff41cme"),
        _doc(tenant_id=5),
        _doc(tenant_id=None),
        _doc(user_id="u" * 128),
        _doc(user_id="u" * 129),
        _doc(user_id=""),
        _doc(user_id="\u00e9" * 128),
        _doc(user_id="\u00e9" * 129),
        _doc(user_id="\U0001f600" * 128),
        _doc(user_id="\U0001f600" * 129),
        _doc(session_id=""),
        _doc(session_id=True),
        _doc(session_id=["s"]),
        _doc(page="/" + "p" * 2047),
        _doc(page="/" + "p" * 2048),
        _doc(page="/" + "\u00e9" * 2047),
        _doc(page="/" + "\u00e9" * 2048),
        _doc(page=""),
        _doc(page="p/"),
        _doc(page="\n/"),
        _doc(page="/\n"),
        _doc(referrer="r" * 2048),
        _doc(referrer="r" * 2049),
        _doc(referrer=None),
        _doc(referrer=_DROP),
        _doc(referrer=7),
        _doc(referrer=""),
        _doc(referrer={"a": 1}),
        _doc(event_id="0B6F6F2E-8F3A-4C1E-9A57-3F1D2C4B5A69"),
        _doc(event_id="0b6f6f2e-8f3a-4c1e-9a57-3f1d2c4b5a69\n"),
        _doc(event_id="0b6f6f2e8f3a4c1e9a573f1d2c4b5a69"),
        _doc(event_id="g" * 8 + "-8f3a-4c1e-9a57-3f1d2c4b5a69"),
        _doc(event_id="\uff10b6f6f2e-8f3a-4c1e-9a57-3f1d2c4b5a69"),
        _doc(country="us"),
        _doc(country="UK"),
        _doc(country="US\n"),
        _doc(country=""),
        _doc(country=1),
        _doc(device="Desktop"),
        _doc(device="mobile"),
        _doc(device=""),
        _doc(device=None),
        # precedence between fields and reasons
        _doc(event_id="x", user_id=5),
        _doc(schema_version="1", country="XX"),
        _doc(device="tv", country="XX"),
        _doc(tenant_id="", event_id="x"),
        _doc(page="x", referrer=7),
        _doc(user_id=_DROP, event_id="x"),
        _doc(event_time="yesterday", device="tv"),
        _doc(event_time=_DROP, session_id=_DROP),
        _doc(event_time=[1]),
        _doc(event_time=None),
        _doc(event_time=True),
        _doc(event_time={"t": 1}),
        _raw(',"extra":[1,"a",{"b":null},true,1.5,-0.0,{}]'),
        # event_time: odd ISO forms
        *[
            _doc(event_time=t)
            for t in (
                "2026-11-25T02:59:58Z",
                "2026-11-25t02:59:58z",
                "2026-11-25 02:59:58Z",
                "2026-11-25T02:59:58+00:00",
                "2026-11-25T02:59:58-00:00",
                "2026-11-25T03:59:58+01:00",
                "2026-11-24T21:59:58-05:00",
                "2026-11-25T08:29:58+05:30",
                "2026-11-25T02:59:58+0000",
                "2026-11-25T02:59Z",
                "2026-11-25T02Z",
                "20261125T025958Z",
                "2026-11-25T02:59:58",
                "2026-11-25",
                "2026-11-25T02:59:58.Z",
                "2026-11-25T02:59:58,5Z",
                "2026-11-25T02:59:58.123456789Z",
                "2026-11-25T02:59:58.1Z",
                "2026-11-25T24:00:00Z",
                "2026-11-25T02:60:00Z",
                "2026-11-25T02:59:60Z",
                "2026-02-29T00:00:00Z",
                "2026-13-01T00:00:00Z",
                "2026-00-10T00:00:00Z",
                "2026-11-31T00:00:00Z",
                "2026-11-25T02:59:58+24:00",
                "2026-11-25T02:59:58+23:60",
                "2026-11-25T02:59:58+01",
                "2026-11-25T02:59:58+01:00:00",
                "0000-01-01T00:00:00Z",
                "0001-01-01T00:00:00Z",
                "0001-01-01T00:00:00+00:01",
                "0001-01-01T00:00:00-00:01",
                "9999-12-31T23:59:59.999999Z",
                "9999-12-31T23:59:59.999999-00:01",
                "2026-11-25T02:59:58Z\n",
                " 2026-11-25T02:59:58Z",
                "\u0662026-11-25T02:59:58Z",
                "2026-11-25T02:59:58.123456+00:00",
                "",
                "+2026-11-25T02:59:58Z",
                "12026-11-25T02:59:58Z",
            )
        ],
        # event_time: epoch ms edges
        *[
            _raw(event_time=v)
            for v in (
                str(ms(T0)),
                str(contract.MIN_EPOCH_MS),
                str(contract.MAX_EPOCH_MS),
                str(contract.MIN_EPOCH_MS - 1),
                str(contract.MAX_EPOCH_MS + 1),
                "0",
                "-0",
                "-1",
                str(10**20),
                str(10**40),
                "1" * 1000,
                f"{ms(T0)}.0",
                f"{ms(T0)}.5",
                f"{ms(T0) / 1000}e3",
                "1e400",
                "-1e400",
                f"{ms(T0)}.000000000000000000000001",
            )
        ],
    ]
    out = [(p, T0) for p in cases]
    # exactly at the skew and retention bounds (defaults: 300 s, 30 days), to the microsecond
    skew, retention = timedelta(seconds=300), timedelta(days=30)
    for t in (
        T0 + skew,
        T0 + skew + timedelta(microseconds=1),
        T0 + skew + timedelta(milliseconds=1),
        T0 - retention,
        T0 - retention - timedelta(microseconds=1),
        T0 - retention - timedelta(milliseconds=1),
    ):
        out.append((_doc(event_time=t.isoformat(timespec="microseconds").replace("+00:00", "Z")), T0))
        out.append((_raw(event_time=str(ms(t))), T0))
    out.append((_doc(event_time=_iso(T0 - retention, ".000000999")), T0))  # truncated to the bound
    out.append((_doc(event_time=_iso(T0 + skew, ".000000999")), T0))
    # the instants the rollups can store (ClickHouse DateTime): 1970-01-01 .. 2106-02-07T06:28:15Z
    first, last = EPOCH, EPOCH + timedelta(seconds=2**32 - 1)
    for t, ts in (
        (first, first + timedelta(seconds=5)),
        (first - timedelta(microseconds=1), first + timedelta(seconds=5)),
        (last + timedelta(microseconds=999_999), last),
        (last + timedelta(seconds=1), last),
    ):
        out.append((_doc(event_time=t.isoformat(timespec="microseconds").replace("+00:00", "Z")), ts))
        out.append((_raw(event_time=str(ms(t))), ts))
    # the Kafka timestamp's own window around the stream's ingest time (365 days back, 1 h ahead)
    age, ahead = timedelta(days=365), contract.MAX_RECORD_SKEW
    for ts in (T0 - age, T0 - age - timedelta(microseconds=1), T0 + ahead, T0 + ahead + timedelta(microseconds=1)):
        out.append((_doc(event_time=_iso(ts)), ts, T0))
    # issue 23: a producer clock at the epoch; valid where the record is read at once, not today
    epoch_event = _doc(event_time="1970-01-01T00:00:00Z")
    out.append((epoch_event, EPOCH + timedelta(seconds=5), T0))
    out.append((epoch_event, EPOCH + timedelta(seconds=5)))
    out.append((_doc(event_time="1969-12-25T00:00:00Z"), EPOCH + timedelta(days=1), T0))  # range first
    out.append((b"not json", EPOCH, T0))  # a broken payload names its own reason first
    # a reference time far from the event: skew and retention follow the record, not the clock
    out.append((_doc(event_time="2020-01-01T00:00:00Z"), datetime(2020, 1, 1, 0, 1, tzinfo=timezone.utc)))
    out.append((_doc(event_time="2020-01-01T00:00:00Z"), datetime(2020, 2, 1, 0, 1, tzinfo=timezone.utc)))
    # size: exactly the limit, one byte over
    base = _doc(x="")
    at_limit = _doc(x="y" * (65536 - len(base)))
    out += [(at_limit, T0), (_doc(x="y" * (65537 - len(base))), T0)]
    assert len(at_limit) == 65536
    return out


def _python_verdict(payload, ts, ingest=None):
    try:
        ev = contract.validate(payload, ts, ingest_time=ingest)
    except contract.InvalidEvent as exc:
        return exc.reason, None
    return None, ev


def _assert_parity(spark, corpus):
    """``corpus``: (payload, Kafka timestamp[, ingest time]); without one, ingest is the timestamp."""
    payloads, stamps = [c[0] for c in corpus], [c[1] for c in corpus]
    ingests = [c[2] if len(c) > 2 else c[1] for c in corpus]
    rows = _by_offset(validate_records(_records(spark, payloads, ts=stamps, ingest=ingests)))
    assert len(rows) == len(corpus)
    mismatches = []
    for i, (payload, ts, ingest) in enumerate(zip(payloads, stamps, ingests, strict=True)):
        row = rows[i]
        reason, ev = _python_verdict(payload, ts, ingest)
        assert row["ingest_time"] is not None
        if row["reason"] != reason:
            mismatches.append((i, (payload or b"")[:160], reason, row["reason"], row["detail"]))
            continue
        if ev is not None:
            got = {
                name: row[name]
                for name in (
                    "event_id",
                    "tenant_id",
                    "user_id",
                    "session_id",
                    "country",
                    "device",
                    "page",
                    "referrer",
                    "schema_version",
                )
            }
            want = {name: getattr(ev, name) for name in got}
            assert got == want, (payload[:160], got, want)
            assert row["et_us"] == _us(ev.event_time), payload[:160]
            assert row["dedup_key"] == f"{ev.tenant_id}/{ev.event_id}" and row["raw_payload"] is None
        else:
            assert row["raw_payload"] == payload and row["event_id"] is None and row["event_time"] is None
            assert row["dedup_key"] == f"page_views/{i % 2}/{i}"
    assert not mismatches, "\n".join(map(repr, mismatches))


def test_sql_and_python_agree_on_edge_cases(spark):
    corpus = _edge_cases()
    reasons = Counter(_python_verdict(*case)[0] for case in corpus)
    assert set(reasons) >= set(contract.REASONS) | {None}  # the corpus exercises every code
    _assert_parity(spark, corpus)


def test_sql_and_python_agree_on_generated_traffic(spark):
    records, _ = generate(
        TrafficOptions(
            start_ms=START_MS, count=3000, malformed_fraction=0.3, late_fraction=0.05, duplicate_fraction=0.02
        )
    )
    bad, _ = generate(
        TrafficOptions(start_ms=START_MS + 3_600_000, count=len(MALFORMED_KINDS) * 10, malformed_fraction=1.0, seed=7)
    )
    corpus = [(r.value, EPOCH + timedelta(milliseconds=r.timestamp_ms)) for r in records + bad]
    _assert_parity(spark, corpus)


# -- poison messages ------------------------------------------------------------------------------
POISON = [
    b"[" * 5000,
    b'{"a":' * 5000,
    b"[" * 60_000,
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"a":' + b"[" * 30_000 + b"]" * 30_000 + b"}",
    b"[" * 65_536,
]


def test_spark_parser_returns_null_on_deep_nesting(spark):
    """What try_parse_json itself does (it is never handed these: depth is bounded first)."""
    row = spark.sql(
        "SELECT try_parse_json(repeat('[', 5000)) IS NULL, try_parse_json(repeat('[', 100000)) IS NULL, "
        "try_parse_json(repeat('[', 60000)) IS NULL, "
        "try_parse_json(repeat('[', 5000) || repeat(']', 5000)) IS NULL"
    ).collect()[0]
    assert all(row)


def test_a_poison_record_among_good_ones_is_one_dead_letter(spark):
    good = [_event(i) for i in range(20)]
    payloads = good[:10] + POISON + good[10:]
    rows = validate_records(_records(spark, payloads)).collect()
    assert len(rows) == len(payloads)
    assert sum(r["reason"] is None for r in rows) == 20
    dead = sorted((r["kafka_offset"], r["reason"]) for r in rows if r["reason"] is not None)
    assert dead == [
        (10 + i, r)
        for i, r in enumerate(
            ["truncated_json", "truncated_json", "truncated_json", "not_json", "not_json", "not_json", "truncated_json"]
        )
    ]


def test_deep_nesting_beyond_the_default_size_limit(spark):
    payloads = [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, _event(1)]
    rows = _by_offset(validate_records(_records(spark, payloads), max_payload_bytes=1 << 20))
    assert [rows[i]["reason"] for i in range(3)] == ["truncated_json", "not_json", None]


def test_the_same_event_id_under_two_tenants_is_two_stream_dedup_keys(spark):
    """Issue 23: the stream drops duplicates by dedup_key; one tenant's ids must not erase another's."""
    same_id = "00000000-0000-4000-8000-000000000001"
    payloads = [_event(1, tenant_id="a"), _event(1, tenant_id="b"), _event(1, tenant_id="b")]
    rows = _by_offset(validate_records(_records(spark, payloads)))
    assert [rows[i]["dedup_key"] for i in range(3)] == [f"a/{same_id}", f"b/{same_id}", f"b/{same_id}"]
    deduped = validate_records(_records(spark, payloads)).dropDuplicates(["dedup_key"])
    assert sorted(r["tenant_id"] for r in deduped.collect()) == ["a", "b"]


def test_ingest_time_defaults_to_the_batch_time_and_passes_through(spark):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    records = _records(spark, [_event(1, event_time=now.isoformat())], ts=now).drop("ingest_time")
    (row,) = validate_records(records).collect()
    assert row["reason"] is None and row["ingest_time"] is not None
