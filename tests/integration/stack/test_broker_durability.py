"""Acked events survive the embedded Kafka going down and up: a clean `stack down` / `stack up`
(controlled shutdown) and a SIGKILL of the broker JVM (log recovery on the next start)."""

import os
import signal
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from tidemark.io.kafka_admin import ensure_topic
from tidemark.stack import services
from tidemark.stack.process import group_members

pytestmark = pytest.mark.integration

PARTITIONS = 3


def _consume_all(bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 60) -> list[bytes]:
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


def _produce(bootstrap: str, topic: str, prefix: str, n: int) -> list[bytes]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    sent = [f"{prefix}-{i}".encode() for i in range(n)]
    futures = [producer.send(topic, value=v, key=str(i % 97).encode()) for i, v in enumerate(sent)]
    producer.flush()
    assert all(f.get(timeout=30) for f in futures)  # every send acked
    producer.close()
    return sent


def _topic_id(bootstrap: str, topic: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        (desc,) = admin.describe_topics([topic])
        return str(desc["topic_id"])
    finally:
        admin.close()


def _broker(cfg) -> services.Broker:
    return next(s for s in services.services(cfg) if isinstance(s, services.Broker))


def test_acked_events_survive_stack_restart(stack):
    if stack.kafka.external:
        pytest.skip("the broker is external: nothing of ours to restart")
    bootstrap = stack.kafka.bootstrap_servers
    topic = f"durability_{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, PARTITIONS)
    topic_id = _topic_id(bootstrap, topic)
    sent = _produce(bootstrap, topic, "clean", 5000)

    stopped = services.down(stack)
    assert "broker" in stopped
    services.up(stack)

    assert _topic_id(bootstrap, topic) == topic_id  # the same log, not a re-created topic
    received = _consume_all(bootstrap, topic, PARTITIONS, len(sent))
    assert sorted(received) == sorted(sent)

    # An unclean stop: SIGKILL the JVM. Acked (acks=all) events are in the OS page cache, so they
    # survive a process crash; the next start recovers the log segments.
    broker = _broker(stack)
    pid = broker.proc.pid()
    assert pid is not None
    sent += _produce(bootstrap, topic, "crash", 5000)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not broker.healthy()
    started = time.monotonic()
    services.up(stack)
    print(f"broker healthy {time.monotonic() - started:.1f}s after a SIGKILL")

    received = _consume_all(bootstrap, topic, PARTITIONS, len(sent))
    assert sorted(received) == sorted(sent)
