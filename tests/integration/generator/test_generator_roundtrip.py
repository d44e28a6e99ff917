"""`tidemark generate` into the broker, consumed back: the records reproduce the manifest exactly.

The broker is the session stack's (`tidemark stack up`), or, with TIDEMARK_TEST_KAFKA_BOOTSTRAP=HOST:PORT,
any running broker without starting the stack (the generator needs nothing else).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from support.broker import consume_all

from tidemark import contract
from tidemark.config import settings
from tidemark.generator.produce import GenerateOptions, run
from tidemark.io.kafka_admin import ensure_topic

PARTITIONS = 4
COUNT = 20_000
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def broker(request):
    """(bootstrap servers, settings with the contract limits)."""
    external = os.environ.get("TIDEMARK_TEST_KAFKA_BOOTSTRAP")
    if external:
        return external, settings()
    stack = request.getfixturevalue("stack")
    return stack.kafka.bootstrap_servers, stack


def _recount(records: list, cfg, poison_reason: str | None = None) -> dict:
    """The manifest's sections rebuilt from the consumed records, as the pipeline would see them.

    A record that makes the validator raise RecursionError (deep nesting, until the contract maps it
    to a reason) is counted under ``poison_reason``.
    """
    reasons = Counter()
    seen: set[str] = set()
    duplicates = late = 0
    dup_partitions = Counter()
    first_partition: dict[str, int] = {}
    minutes = defaultdict(lambda: [0, 0])
    users_hour = defaultdict(set)
    users_hour_on = defaultdict(set)
    users_day = defaultdict(set)
    late_hour = Counter()
    valid = []  # (record, event) of first occurrences
    for rec in records:
        ref = datetime.fromtimestamp(rec.timestamp / 1000, timezone.utc)  # the Kafka timestamp
        try:
            ev = contract.validate(
                rec.value,
                ref,
                max_payload_bytes=cfg.max_payload_bytes,
                max_future_skew=timedelta(seconds=cfg.max_future_skew_s),
                retention=timedelta(days=cfg.retention_days),
            )
        except contract.InvalidEvent as exc:
            reasons[exc.reason] += 1
            continue
        except RecursionError:
            assert poison_reason is not None, "unexpected deeply nested record"
            reasons[poison_reason] += 1
            continue
        if ev.event_id in seen:
            duplicates += 1
            dup_partitions["same" if rec.partition == first_partition[ev.event_id] else "other"] += 1
            continue
        seen.add(ev.event_id)
        valid.append((rec, ev))
        first_partition[ev.event_id] = rec.partition
        assert rec.key == ev.user_id.encode()
        is_late = ref - ev.event_time > timedelta(minutes=10)
        late += is_late
        hour = ev.event_time.strftime("%Y-%m-%dT%H")
        row = minutes[(ev.tenant_id, ev.event_time.strftime("%Y-%m-%dT%H:%M"), ev.country, ev.device, ev.page)]
        row[0] += 1
        row[1] += not is_late
        users_hour[(ev.tenant_id, hour)].add(ev.user_id)
        users_day[(ev.tenant_id, ev.event_time.strftime("%Y-%m-%d"))].add(ev.user_id)
        if is_late:
            late_hour[hour] += 1
        else:
            users_hour_on[(ev.tenant_id, hour)].add(ev.user_id)
    return {
        "reasons": dict(reasons),
        "seen": seen,
        "duplicates": duplicates,
        "dup_partitions": dup_partitions,
        "late": late,
        "late_hour": dict(late_hour),
        "valid": valid,
        "minute_counts": sorted([*k, *v] for k, v in minutes.items()),
        "distinct_users_hour": sorted(
            [t, h, len(u), len(users_hour_on.get((t, h), ()))] for (t, h), u in users_hour.items()
        ),
        "distinct_users_day": sorted([t, d, len(u)] for (t, d), u in users_day.items()),
    }


def test_generated_stream_reproduces_its_manifest(broker, tmp_path):
    bootstrap, cfg = broker
    topic = f"gen_roundtrip_{uuid.uuid4().hex[:8]}"
    assert ensure_topic(bootstrap, topic, PARTITIONS) == PARTITIONS
    assert ensure_topic(bootstrap, topic, PARTITIONS) == PARTITIONS  # idempotent

    manifest_path = tmp_path / "manifest.json"
    manifest = run(
        GenerateOptions(
            count=COUNT,
            rate=200.0,
            seed=1234,
            start_time=datetime(2026, 3, 1, 11, 58, tzinfo=timezone.utc),
            late_fraction=0.04,
            duplicate_fraction=0.03,
            malformed_fraction=0.04,
            topic=topic,
            bootstrap=bootstrap,
            realtime=False,
            manifest=manifest_path,
            progress=False,
        ),
        cfg,
    )
    assert manifest_path.exists()
    assert manifest["messages_sent"] == COUNT
    assert len(manifest["malformed"]) == len(contract.PAYLOAD_REASONS)

    records = consume_all(bootstrap, topic, PARTITIONS, manifest["messages_sent"])
    assert len(records) == manifest["messages_sent"]
    got = _recount(records, cfg)

    assert got["reasons"] == manifest["malformed"]
    assert len(got["seen"]) == manifest["valid_events"]
    assert got["duplicates"] == manifest["duplicates_sent"] > 0
    assert got["dup_partitions"]["same"] > 0 and got["dup_partitions"]["other"] > 0
    assert got["late"] == manifest["late_events"] > 0
    assert got["late_hour"] == manifest["late_events_per_hour"]
    assert got["minute_counts"] == manifest["minute_counts"]
    assert got["distinct_users_hour"] == manifest["distinct_users_hour"]
    assert got["distinct_users_day"] == manifest["distinct_users_day"]
    # every partition gets traffic, none runs hot
    spread = Counter(rec.partition for rec in records)
    assert len(spread) == PARTITIONS and max(spread.values()) <= 1.5 * COUNT / PARTITIONS


def test_edge_case_traffic_reproduces_its_manifest(broker, tmp_path):
    """On-time lateness up to 10 min across 12:00, event times on hour boundaries, poison payloads."""
    bootstrap, cfg = broker
    topic = f"gen_edges_{uuid.uuid4().hex[:8]}"
    assert ensure_topic(bootstrap, topic, PARTITIONS) == PARTITIONS
    noon = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    manifest = run(
        GenerateOptions(
            count=COUNT,
            rate=20.0,
            seed=99,
            start_time=noon - timedelta(minutes=5),  # 11:55 -> 12:11:40
            late_fraction=0.04,
            duplicate_fraction=0.03,
            malformed_fraction=0.02,
            ontime_max_lateness_ms=600_000,
            ontime_lag_fraction=0.5,
            hour_boundary_fraction=0.05,
            poison_fraction=0.01,
            topic=topic,
            bootstrap=bootstrap,
            realtime=False,
            manifest=tmp_path / "manifest.json",
            progress=False,
        ),
        cfg,
    )
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    records = consume_all(bootstrap, topic, PARTITIONS, manifest["messages_sent"])
    assert len(records) == manifest["messages_sent"] == COUNT
    got = _recount(records, cfg, poison_reason=manifest["poison"]["expected_reason"])

    assert manifest["poison"]["count"] > 100
    assert got["reasons"] == manifest["rejected_by_reason"]
    assert len(got["seen"]) == manifest["valid_events"]
    assert got["duplicates"] == manifest["duplicates_sent"] > 0
    assert got["late"] == manifest["late_events"] > 0
    assert got["late_hour"] == manifest["late_events_per_hour"]
    assert got["minute_counts"] == manifest["minute_counts"]
    assert got["distinct_users_hour"] == manifest["distinct_users_hour"]
    assert got["distinct_users_day"] == manifest["distinct_users_day"]

    on_time = [
        (rec, ev)
        for rec, ev in got["valid"]
        if datetime.fromtimestamp(rec.timestamp / 1000, timezone.utc) - ev.event_time <= timedelta(minutes=10)
    ]
    lateness = [datetime.fromtimestamp(rec.timestamp / 1000, timezone.utc) - ev.event_time for rec, ev in on_time]
    assert max(lateness) > timedelta(minutes=9)  # on time, minutes after the event
    after_noon_from_before = sum(
        1 for rec, ev in on_time if rec.timestamp >= noon.timestamp() * 1000 and ev.event_time < noon
    )
    assert after_noon_from_before > 100  # on-time events right after the hour that belong to 11:xx
    ms = lambda ev: round(ev.event_time.timestamp() * 1000)  # noqa: E731
    ends = [ev for _, ev in got["valid"] if ms(ev) % 3_600_000 == 3_599_999]
    starts = [ev for _, ev in got["valid"] if ms(ev) % 3_600_000 == 0]
    boundary = manifest["hour_boundary_events"]
    assert (len(ends), len(starts)) == (boundary["end_of_hour"], boundary["start_of_hour"])
    assert len(ends) > 20 and len(starts) > 20
