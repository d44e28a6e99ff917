"""Edge-case options of the traffic model: on-time lateness up to the allowed lateness, event times
exactly on hour boundaries, poison (deeply nested) payloads; and that the defaults change nothing."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import datetime, timezone

import pytest
from support.traffic import validate

from tidemark import contract
from tidemark.generator import generate
from tidemark.generator.cli import build_parser, main, options_from_args
from tidemark.generator.manifest import POISON_REASON, read_manifest
from tidemark.generator.options import (
    HOUR_MS,
    MAX_ON_TIME_JITTER_MS,
    PIPELINE_ALLOWED_LATENESS_MS,
    POISON_KIND,
    TrafficOptions,
)

UTC = timezone.utc
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NEAR_HOUR_MS = int(datetime(2026, 3, 1, 11, 55, tzinfo=UTC).timestamp() * 1000)  # 5 min before 12:00


def _event_ms(event) -> int:
    return int(round(event.event_time.timestamp() * 1000))


def test_defaults_are_byte_identical_to_earlier_versions():
    """Pinned digest of the default traffic (the same as before the edge-case options existed; changed
    once since, deliberately, when the contract gained the out_of_range_time kind: issue 23)."""
    records, manifest = generate(
        TrafficOptions(
            start_ms=START_MS, count=5000, late_fraction=0.05, duplicate_fraction=0.05, malformed_fraction=0.05
        )
    )
    digest = hashlib.sha256()
    for rec in records:
        digest.update(b"%s|%s|%d|%d|%s\n" % (rec.key, rec.value, rec.timestamp_ms, rec.partition, rec.kind.encode()))
    assert digest.hexdigest() == "2661c7aee5d653d51b750d8f1057e0960905425bc6400fed6fa66b62411ea345"
    doc = manifest.to_dict(messages_sent=len(records))
    assert doc["poison"] == {"count": 0, "expected_reason": POISON_REASON}
    assert doc["rejected_by_reason"] == doc["malformed"]


@pytest.fixture(scope="module")
def edgy():
    """Crosses 12:00 with on-time lateness up to 10 min for half of the on-time events, boundary
    event times and poison."""
    opts = TrafficOptions(
        start_ms=NEAR_HOUR_MS,
        count=12_000,
        rate=12.0,
        late_fraction=0.05,
        duplicate_fraction=0.05,
        malformed_fraction=0.02,
        ontime_max_lateness_ms=PIPELINE_ALLOWED_LATENESS_MS,
        ontime_lag_fraction=0.5,
        hour_boundary_fraction=0.1,
        poison_fraction=0.01,
        poison_depth=3000,
    )
    records, manifest = generate(opts)
    return opts, records, manifest


def test_ontime_lateness_reaches_the_allowed_lateness(edgy):
    opts, records, manifest = edgy
    lateness = []
    across_the_hour = 0
    hour = NEAR_HOUR_MS + 5 * 60_000  # 12:00
    for rec in records:
        if rec.kind != "on_time":
            continue
        ev_ms = _event_ms(validate(rec, opts))
        lateness.append(rec.timestamp_ms - ev_ms)
        across_the_hour += rec.timestamp_ms >= hour and ev_ms < hour
    assert 0 <= min(lateness) and max(lateness) <= PIPELINE_ALLOWED_LATENESS_MS
    assert max(lateness) > PIPELINE_ALLOWED_LATENESS_MS - 30_000
    lagged = sum(x > MAX_ON_TIME_JITTER_MS for x in lateness) / len(lateness)
    assert 0.4 < lagged < 0.55  # half draw up to 10 min, of which ~99 % beyond 5 s
    assert across_the_hour > 100  # on-time events sent after 12:00 that belong to 11:xx


def test_pipeline_rule_agrees_with_the_manifest_and_duplicates_stay_within_allowed_lateness(edgy):
    opts, records, manifest = edgy
    first: dict[str, int] = {}
    late = dup_late = 0
    for rec in records:
        try:
            ev = validate(rec, opts)
        except (contract.InvalidEvent, RecursionError):
            continue
        is_late = rec.timestamp_ms - _event_ms(ev) > PIPELINE_ALLOWED_LATENESS_MS
        if ev.event_id in first:
            dup_late += is_late
            continue
        first[ev.event_id] = rec.timestamp_ms
        late += is_late
    assert late == manifest.late_events > 0
    assert dup_late == 0
    assert manifest.duplicates_sent > 100


def test_event_times_on_hour_boundaries(edgy):
    opts, records, manifest = edgy
    seen: dict[str, tuple[int, bool]] = {}
    for rec in records:
        if rec.kind in ("on_time", "late"):
            ev = validate(rec, opts)
            seen[ev.event_id] = (_event_ms(ev), rec.kind == "late", json.loads(rec.value)["event_time"])
    ends = [v for v in seen.values() if v[0] % HOUR_MS == HOUR_MS - 1]
    starts = [v for v in seen.values() if v[0] % HOUR_MS == 0]
    doc = manifest.to_dict(messages_sent=len(records))
    assert doc["hour_boundary_events"] == {
        "end_of_hour": len(ends),
        "start_of_hour": len(starts),
        "late": sum(v[1] for v in ends + starts),
    }
    assert len(ends) > 50 and len(starts) > 50
    assert 0 < doc["hour_boundary_events"]["late"] < len(ends) + len(starts)
    # both encodings occur on the boundary: "...T11:59:59.999Z" and epoch milliseconds
    assert any(isinstance(v[2], str) and v[2].endswith(":59:59.999Z") for v in ends)
    assert any(isinstance(v[2], int) for v in ends) and any(isinstance(v[2], int) for v in starts)
    assert any(isinstance(v[2], str) and v[2].endswith(":00:00.000Z") for v in starts)
    # a boundary time keeps its event on the same side of the late/on-time line
    for rec in records:
        if rec.kind in ("on_time", "late"):
            ev_ms = seen[validate(rec, opts).event_id][0]
            if ev_ms % HOUR_MS in (0, HOUR_MS - 1):
                lat = rec.timestamp_ms - ev_ms
                if rec.kind == "late":
                    assert opts.min_lateness_ms <= lat <= opts.max_lateness_ms
                else:
                    assert 0 <= lat <= opts.ontime_max_lateness_ms


def test_poison_records_nest_deeply_and_are_counted(edgy):
    opts, records, manifest = edgy
    poison = [r for r in records if r.kind == POISON_KIND]
    assert len(poison) == manifest.poison > 50
    shapes = Counter()
    for rec in poison:
        assert len(rec.value) <= opts.max_payload_bytes  # not rejected as oversize first
        with pytest.raises(RecursionError):
            json.loads(rec.value)
        shapes["event" if rec.value.startswith(b'{"schema_version":1,') else rec.value[:6].decode()] += 1
        # Today's contract lets RecursionError escape; once the validator maps deep nesting to a
        # reason, it must be the one the manifest expects.
        try:
            validate(rec, opts)
        except contract.InvalidEvent as exc:
            assert exc.reason == POISON_REASON
        except RecursionError:
            pass
        else:
            pytest.fail("a poison record validated")
    assert set(shapes) == {"[[[[[[", '{"e":{', "event"}  # nested arrays, nested objects, an event
    doc = manifest.to_dict(messages_sent=len(records))
    assert doc["poison"] == {"count": len(poison), "expected_reason": POISON_REASON}
    expected = dict(doc["malformed"])
    expected[POISON_REASON] = expected.get(POISON_REASON, 0) + len(poison)
    assert doc["rejected_by_reason"] == dict(sorted(expected.items()))
    assert doc["messages_sent"] == (
        doc["valid_events"] + doc["duplicates_sent"] + sum(doc["malformed"].values()) + doc["poison"]["count"]
    )
    assert manifest.records == len(records) == opts.count


def test_edge_options_are_checked():
    with pytest.raises(ValueError, match="on-time max lateness"):
        TrafficOptions(start_ms=START_MS, count=1, ontime_max_lateness_ms=PIPELINE_ALLOWED_LATENESS_MS + 1).check()
    with pytest.raises(ValueError, match="min lateness must exceed"):
        TrafficOptions(
            start_ms=START_MS, count=1, ontime_max_lateness_ms=8 * 60_000, min_lateness_ms=7 * 60_000
        ).check()
    with pytest.raises(ValueError, match="min lateness must exceed"):
        TrafficOptions(
            start_ms=START_MS, count=1, ontime_max_lateness_ms=10 * 60_000, min_lateness_ms=10 * 60_000
        ).check()
    with pytest.raises(ValueError, match="poison depth"):
        TrafficOptions(start_ms=START_MS, count=1, poison_fraction=0.1, poison_depth=20_000).check()
    for name in ("ontime_lag_fraction", "hour_boundary_fraction", "poison_fraction"):
        with pytest.raises(ValueError, match=name):
            TrafficOptions(start_ms=START_MS, count=1, **{name: 1.5}).check()


def test_cli_edge_options(tmp_path, capsys):
    out, mf = tmp_path / "records.jsonl", tmp_path / "manifest.json"
    argv = [
        "--count",
        "4000",
        "--rate",
        "10",
        "--start-time",
        "2026-03-01T11:55:00Z",
        "--no-realtime",
        "--ontime-max-lateness",
        "10m",
        "--ontime-lag-fraction",
        "0.5",
        "--hour-boundary-fraction",
        "0.1",
        "--poison-fraction",
        "0.01",
        "--poison-depth",
        "2000",
        "--output",
        str(out),
        "--manifest",
        str(mf),
        "--no-progress",
    ]
    args = build_parser().parse_args(argv)
    opts = options_from_args(args)
    assert (
        opts.ontime_max_lateness_ms,
        opts.ontime_lag_fraction,
        opts.hour_boundary_fraction,
        opts.poison_fraction,
        opts.poison_depth,
    ) == (600_000, 0.5, 0.1, 0.01, 2000)
    assert (
        options_from_args(
            build_parser().parse_args(["--count", "1", "--ontime-max-lateness-ms", "90000"])
        ).ontime_max_lateness_ms
        == 90_000
    )
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip())
    doc = read_manifest(mf)
    assert summary["poison"] == doc["poison"]["count"] > 0
    assert doc["options"]["ontime_max_lateness_ms"] == 600_000 and doc["options"]["poison_depth"] == 2000
    assert sum(doc["hour_boundary_events"][k] for k in ("end_of_hour", "start_of_hour")) > 0
    assert len(out.read_text().splitlines()) == 4000


def test_cli_defaults_keep_the_edge_cases_off():
    opts = options_from_args(build_parser().parse_args(["--count", "1"]))
    assert (
        opts.ontime_max_lateness_ms,
        opts.ontime_lag_fraction,
        opts.hour_boundary_fraction,
        opts.poison_fraction,
    ) == (MAX_ON_TIME_JITTER_MS, 1.0, 0.0, 0.0)


def test_cli_rejects_ontime_lateness_beyond_the_allowed(tmp_path):
    args = build_parser().parse_args(
        ["--count", "10", "--ontime-max-lateness", "11m", "--output", str(tmp_path / "x.jsonl"), "--no-progress"]
    )
    assert main(args) == 2
