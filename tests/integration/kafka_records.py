"""Hand-made Kafka records for speed-layer tests: exact payloads and exact producer (CreateTime)
timestamps, which the generator's simulated traffic does not make (a broken producer clock)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

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
