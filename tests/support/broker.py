"""Kafka for tests: hand-made records with exact payloads and exact producer (CreateTime)
timestamps, which the generator's simulated traffic does not make (a broken producer clock); and
reading a topic back from its beginning."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from kafka import KafkaConsumer, TopicPartition

from tidemark.config import Settings
from tidemark.io.kafka_admin import ensure_topic, producer


@dataclass(frozen=True)
class Sent:
    value: bytes
    timestamp: datetime  # the Kafka timestamp the producer set


def event(tenant: str, event_time: datetime | str, *, event_id: str | None = None, user: str = "u1") -> bytes:
    """A valid page_view v1 payload (event_time: an aware datetime or the exact text to send)."""
    when = event_time if isinstance(event_time, str) else event_time.isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": event_id or str(uuid.uuid4()),
            "tenant_id": tenant,
            "event_time": when,
            "user_id": user,
            "session_id": f"s-{user}",
            "country": "US",
            "device": "desktop",
            "page": "/pricing",
        }
    ).encode()


def send(cfg: Settings, topic: str, records: list[Sent]) -> None:
    """Produce ``records`` in order, on partition 0, each with its own Kafka timestamp; waits for every ack."""
    ensure_topic(cfg.kafka.bootstrap_servers, topic, cfg.kafka.partitions)
    p = producer(cfg.kafka.bootstrap_servers)
    try:
        futures = [p.send(topic, value=r.value, key=b"k", partition=0, timestamp_ms=_ms(r.timestamp)) for r in records]
        p.flush(timeout=60)
        for f in futures:
            f.get(timeout=60)
    finally:
        p.close(timeout=10)


def _ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 90.0) -> list:
    """Every record of ``topic`` (its ``partitions``) from the beginning: polls until ``expected``
    records came or ``timeout_s`` passed (the caller's comparison then shows what is missing), then
    polls once more, so a stray extra copy beyond ``expected`` shows up too."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000, max_records=10_000).values():
                records.extend(batch)
        for batch in consumer.poll(timeout_ms=1500).values():
            records.extend(batch)
    finally:
        consumer.close()
    return records
