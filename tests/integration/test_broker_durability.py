"""Acked events survive `stack down` then `stack up` (tansu's log lives in the disk-backed S3 store)."""
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tidemark.io.kafka_admin import ensure_topic
from tidemark.stack import services

pytestmark = pytest.mark.integration


def _consume_all(bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 60) -> list[bytes]:
    import time

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000, max_records=10_000).values():
            values.extend(r.value for r in records)
    consumer.close()
    return values


def test_acked_events_survive_stack_restart(stack):
    bootstrap = stack.kafka.bootstrap_servers
    topic = f"durability_{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, 3)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    sent = [f"event-{i}".encode() for i in range(5000)]
    futures = [producer.send(topic, value=v, key=str(i % 97).encode()) for i, v in enumerate(sent)]
    producer.flush()
    assert all(f.get(timeout=30) for f in futures)  # every send acked
    producer.close()

    stopped = services.down(stack)
    assert "broker" in stopped and "s3" in stopped
    services.up(stack)

    received = _consume_all(bootstrap, topic, 3, len(sent))
    assert sorted(received) == sorted(sent)
