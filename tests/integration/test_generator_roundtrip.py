"""`tidemark generate` into the broker, consumed back: the records reproduce the manifest exactly."""
from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from kafka import KafkaConsumer, TopicPartition

from tidemark import contract
from tidemark.generator.produce import GenerateOptions, run
from tidemark.io.kafka_admin import ensure_topic

pytestmark = pytest.mark.integration

PARTITIONS = 4
COUNT = 20_000


def _consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 90.0) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             max_partition_fetch_bytes=8 << 20, fetch_max_bytes=32 << 20)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=1000, max_records=10_000).values():
            records.extend(batch)
    # Anything beyond the manifest's count would be a stray extra copy: read a little more.
    for batch in consumer.poll(timeout_ms=1500).values():
        records.extend(batch)
    consumer.close()
    return records


def test_generated_stream_reproduces_its_manifest(stack, tmp_path):
    bootstrap = stack.kafka.bootstrap_servers
    topic = f"gen_roundtrip_{uuid.uuid4().hex[:8]}"
    assert ensure_topic(bootstrap, topic, PARTITIONS) == PARTITIONS
    assert ensure_topic(bootstrap, topic, PARTITIONS) == PARTITIONS  # idempotent

    manifest_path = tmp_path / "manifest.json"
    manifest = run(GenerateOptions(
        count=COUNT, rate=200.0, seed=1234, start_time=datetime(2026, 3, 1, 11, 58, tzinfo=timezone.utc),
        late_fraction=0.04, duplicate_fraction=0.03, malformed_fraction=0.04,
        topic=topic, bootstrap=bootstrap, realtime=False, manifest=manifest_path, progress=False,
    ))
    assert manifest_path.exists()
    assert manifest["messages_sent"] == COUNT
    assert len(manifest["malformed"]) == len(contract.REASONS)

    records = _consume_all(bootstrap, topic, manifest["messages_sent"])
    assert len(records) == manifest["messages_sent"]

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
    for rec in records:
        ref = datetime.fromtimestamp(rec.timestamp / 1000, timezone.utc)  # the Kafka timestamp
        try:
            ev = contract.validate(rec.value, ref, max_payload_bytes=stack.max_payload_bytes,
                                   max_future_skew=timedelta(seconds=stack.max_future_skew_s),
                                   retention=timedelta(days=stack.retention_days))
        except contract.InvalidEvent as exc:
            reasons[exc.reason] += 1
            continue
        if ev.event_id in seen:
            duplicates += 1
            dup_partitions["same" if rec.partition == first_partition[ev.event_id] else "other"] += 1
            continue
        seen.add(ev.event_id)
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

    assert dict(reasons) == manifest["malformed"]
    assert len(seen) == manifest["valid_events"]
    assert duplicates == manifest["duplicates_sent"] > 0
    assert dup_partitions["same"] > 0 and dup_partitions["other"] > 0
    assert late == manifest["late_events"] > 0
    assert dict(late_hour) == manifest["late_events_per_hour"]
    assert sorted([*k, *v] for k, v in minutes.items()) == manifest["minute_counts"]
    assert sorted(
        [t, h, len(u), len(users_hour_on.get((t, h), ()))] for (t, h), u in users_hour.items()
    ) == manifest["distinct_users_hour"]
    assert sorted([t, d, len(u)] for (t, d), u in users_day.items()) == manifest["distinct_users_day"]
    # every partition gets traffic, none runs hot
    spread = Counter(rec.partition for rec in records)
    assert len(spread) == PARTITIONS and max(spread.values()) <= 1.5 * COUNT / PARTITIONS
