"""Acked events survive the embedded Kafka going down and up: a clean `stack down` / `stack up`
(controlled shutdown) and a SIGKILL of the broker JVM (log recovery on the next start)."""

import os
import signal
import time
import uuid

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from support.broker import consume_all
from support.processes import wait_group_gone

from tidemark.io.kafka_admin import ensure_topic
from tidemark.stack import services

PARTITIONS = 3


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
    received = [r.value for r in consume_all(bootstrap, topic, PARTITIONS, len(sent), timeout_s=60)]
    assert sorted(received) == sorted(sent)

    # An unclean stop: SIGKILL the JVM. Acked (acks=all) events are in the OS page cache, so they
    # survive a process crash; the next start recovers the log segments.
    broker = _broker(stack)
    pid = broker.proc.pid()
    assert pid is not None
    sent += _produce(bootstrap, topic, "crash", 5000)
    os.kill(pid, signal.SIGKILL)
    wait_group_gone(pid, timeout_s=10)
    assert not broker.healthy()
    started = time.monotonic()
    services.up(stack)
    print(f"broker healthy {time.monotonic() - started:.1f}s after a SIGKILL")

    received = [r.value for r in consume_all(bootstrap, topic, PARTITIONS, len(sent), timeout_s=60)]
    assert sorted(received) == sorted(sent)
