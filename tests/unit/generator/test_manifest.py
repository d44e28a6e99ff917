"""The manifest: exact truth about what was sent, by event-time minute/hour/day."""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from tidemark import contract
from tidemark.generator import TrafficOptions, generate
from tidemark.generator.cli import build_parser, main, parse_duration, parse_time
from tidemark.generator.manifest import Manifest, read_manifest, write_manifest

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
T0 = START_MS + 12 * 60_000 + 30_000  # 00:12:30


def test_add_valid_aggregates_distinct_events_by_event_time():
    m = Manifest()
    m.add_valid("acme", T0, "US", "mobile", "/", "u1", late=False)
    m.add_valid("acme", T0 + 1000, "US", "mobile", "/", "u2", late=False)
    m.add_valid("acme", T0 + 2000, "US", "mobile", "/", "u1", late=True)
    m.add_valid("acme", T0 + 3_600_000, "DE", "desktop", "/x", "u1", late=True)
    m.add_valid("hooli", T0 - 86_400_000, "GB", "tablet", "/", "u9", late=False)
    m.add_duplicate()
    m.add_malformed("not_json")
    m.add_malformed("not_json")
    doc = m.to_dict(messages_sent=8, seed=1, topic="t")
    assert doc["seed"] == 1 and doc["topic"] == "t"
    assert (doc["messages_sent"], doc["valid_events"], doc["on_time_events"], doc["late_events"]) == (8, 5, 3, 2)
    assert doc["duplicates_sent"] == 1 and doc["malformed"] == {"not_json": 2}
    assert doc["minute_counts"] == [
        ["acme", "2026-01-01T00:12", "US", "mobile", "/", 3, 2],
        ["acme", "2026-01-01T01:12", "DE", "desktop", "/x", 1, 0],
        ["hooli", "2025-12-31T00:12", "GB", "tablet", "/", 1, 1],
    ]
    assert doc["late_events_per_hour"] == {"2026-01-01T00": 1, "2026-01-01T01": 1}
    assert doc["late_events_per_tenant_hour"] == [["acme", "2026-01-01T00", 1], ["acme", "2026-01-01T01", 1]]
    assert doc["distinct_users_hour"] == [
        ["acme", "2026-01-01T00", 2, 2],
        ["acme", "2026-01-01T01", 1, 0],
        ["hooli", "2025-12-31T00", 1, 1],
    ]
    assert doc["distinct_users_day"] == [["acme", "2026-01-01", 2], ["hooli", "2025-12-31", 1]]
    assert m.records == 8


def test_write_is_sorted_json_and_reads_back(tmp_path):
    doc = {"b": 1, "a": [["x", 1]], "malformed": {"z": 1, "a": 2}}
    path = write_manifest(doc, tmp_path / "sub" / "manifest.json")
    text = path.read_text()
    assert text.index('"a"') < text.index('"b"')
    assert read_manifest(path) == doc
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]  # no temp file left


def _recompute(records, opts: TrafficOptions) -> dict:
    """The manifest's sections, rebuilt independently from the payloads as a consumer sees them."""
    reasons = Counter()
    seen: set[str] = set()
    duplicates = 0
    minutes = defaultdict(lambda: [0, 0])
    users_hour = defaultdict(set)
    users_hour_on = defaultdict(set)
    users_day = defaultdict(set)
    late_hour = Counter()
    for rec in records:
        ref = datetime.fromtimestamp(rec.timestamp_ms / 1000, timezone.utc)
        try:
            ev = contract.validate(
                rec.value,
                ref,
                max_payload_bytes=opts.max_payload_bytes,
                max_future_skew=timedelta(seconds=opts.max_future_skew_s),
                retention=timedelta(days=opts.retention_days),
            )
        except contract.InvalidEvent as exc:
            reasons[exc.reason] += 1
            continue
        if ev.event_id in seen:
            duplicates += 1
            continue
        seen.add(ev.event_id)
        late = ref - ev.event_time > timedelta(minutes=10)  # the pipeline's rule
        hour = ev.event_time.strftime("%Y-%m-%dT%H")
        row = minutes[(ev.tenant_id, ev.event_time.strftime("%Y-%m-%dT%H:%M"), ev.country, ev.device, ev.page)]
        row[0] += 1
        row[1] += not late
        users_hour[(ev.tenant_id, hour)].add(ev.user_id)
        users_day[(ev.tenant_id, ev.event_time.strftime("%Y-%m-%d"))].add(ev.user_id)
        if late:
            late_hour[hour] += 1
        else:
            users_hour_on[(ev.tenant_id, hour)].add(ev.user_id)
    return {
        "malformed": dict(reasons),
        "valid_events": len(seen),
        "duplicates_sent": duplicates,
        "late_events": sum(late_hour.values()),
        "late_events_per_hour": dict(late_hour),
        "minute_counts": sorted([*k, *v] for k, v in minutes.items()),
        "distinct_users_hour": sorted(
            [t, h, len(u), len(users_hour_on.get((t, h), ()))] for (t, h), u in users_hour.items()
        ),
        "distinct_users_day": sorted([t, d, len(u)] for (t, d), u in users_day.items()),
    }


def test_manifest_equals_an_independent_recount_of_the_records():
    opts = TrafficOptions(
        start_ms=START_MS, count=6000, rate=100.0, late_fraction=0.05, duplicate_fraction=0.03, malformed_fraction=0.04
    )
    records, manifest = generate(opts)
    doc = manifest.to_dict(messages_sent=len(records))
    expected = _recompute(records, opts)
    for key, value in expected.items():
        assert doc[key] == value, key
    assert (
        doc["duplicates_sent"] > 50
        and doc["late_events"] > 100
        and len(doc["malformed"]) == len(contract.PAYLOAD_REASONS)
    )


def test_manifest_sums_are_consistent():
    opts = TrafficOptions(
        start_ms=START_MS, count=5000, rate=50.0, late_fraction=0.05, duplicate_fraction=0.02, malformed_fraction=0.02
    )
    records, manifest = generate(opts)
    doc = manifest.to_dict(messages_sent=len(records))
    assert doc["messages_sent"] == doc["valid_events"] + doc["duplicates_sent"] + sum(doc["malformed"].values())
    assert doc["valid_events"] == doc["on_time_events"] + doc["late_events"]
    assert sum(r[5] for r in doc["minute_counts"]) == doc["valid_events"]
    assert sum(r[6] for r in doc["minute_counts"]) == doc["on_time_events"]
    assert sum(doc["late_events_per_hour"].values()) == doc["late_events"]
    assert sum(r[2] for r in doc["late_events_per_tenant_hour"]) == doc["late_events"]
    assert all(0 <= on <= n for _, _, n, on in doc["distinct_users_hour"])
    busiest_hour = defaultdict(int)
    for tenant, hour, n, _ in doc["distinct_users_hour"]:
        busiest_hour[(tenant, hour[:10])] = max(busiest_hour[(tenant, hour[:10])], n)
    for tenant, day, n in doc["distinct_users_day"]:
        assert n >= busiest_hour[(tenant, day)]
    assert doc["minute_counts"] == sorted(doc["minute_counts"])


def test_cli_output_mode_writes_records_and_manifest(tmp_path, capsys):
    out, mf = tmp_path / "records.jsonl", tmp_path / "manifest.json"
    args = build_parser().parse_args(
        [
            "--count",
            "3000",
            "--start-time",
            "2026-01-01T00:00:00Z",
            "--seed",
            "7",
            "--duplicate-fraction",
            "0.05",
            "--malformed-fraction",
            "0.05",
            "--late-fraction",
            "0.05",
            "--max-lateness",
            "1h",
            "--output",
            str(out),
            "--manifest",
            str(mf),
            "--no-progress",
        ]
    )
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip())
    doc = read_manifest(mf)
    assert summary["messages_sent"] == doc["messages_sent"] == 3000
    assert doc["seed"] == 7 and doc["start_time"] == "2026-01-01T00:00:00.000Z"
    assert doc["end_time"] == "2026-01-01T00:00:02.999Z"
    assert doc["options"]["max_lateness_ms"] == 3_600_000
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3000
    assert lines[1]["timestamp_ms"] == START_MS + 1
    records, manifest = generate(
        TrafficOptions(
            start_ms=START_MS,
            count=3000,
            seed=7,
            late_fraction=0.05,
            max_lateness_ms=3_600_000,
            duplicate_fraction=0.05,
            malformed_fraction=0.05,
        )
    )
    assert [base64.b64decode(x["value_b64"]) for x in lines] == [r.value for r in records]
    assert [x["partition"] for x in lines] == [r.partition for r in records]
    assert manifest.to_dict(messages_sent=3000)["minute_counts"] == doc["minute_counts"]


def test_cli_rejects_inconsistent_lateness(tmp_path):
    args = build_parser().parse_args(
        [
            "--count",
            "10",
            "--start-time",
            "2026-01-01T00:00:00Z",
            "--min-lateness",
            "3h",
            "--max-lateness",
            "1h",
            "--output",
            str(tmp_path / "x.jsonl"),
            "--no-progress",
        ]
    )
    assert main(args) == 2


@pytest.mark.parametrize(
    "text,seconds", [("90m", 5400), ("3h", 10800), ("1h30m", 5400), ("45", 45), ("1500ms", 1.5), ("2d", 172800)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_garbage():
    import argparse

    for bad in ("", "h", "10x", "1h 30m", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)


def test_parse_time_is_utc():
    assert parse_time("2026-01-01T01:00:00+01:00") == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_time("2026-01-01T00:00:00") == datetime(2026, 1, 1, tzinfo=timezone.utc)
