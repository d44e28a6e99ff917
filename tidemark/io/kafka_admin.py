"""Kafka plumbing shared by the stack, the generator and the jobs: a health probe, topic
creation and a producer factory.

Works against the embedded Apache Kafka (one KRaft node, or three under TIDEMARK_STACK=cluster) and an
external cluster alike.
A topic that exists with too few partitions is an error the operator must resolve, never
something we "fix" in place: adding partitions would move keys to other partitions (and
so break per-key order) behind the running stream's back.
"""

from __future__ import annotations

import logging
import socket
import time
from contextlib import contextmanager
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from tidemark.contract.event_time import MAX_RECORD_SKEW
from tidemark.errors import TidemarkError

log = logging.getLogger(__name__)

UNKNOWN_TOPIC_OR_PARTITION = 3

# Set on every topic Tidemark creates, so an external cluster whose broker defaults differ still
# gives the contract what it expects: the record timestamp is the producer's CreateTime (the event's
# arrival, which late-data semantics are judged by; LogAppendTime would re-stamp backfills, relays
# and mirrors with the broker's append time), refused by the broker beyond MAX_RECORD_SKEW ahead of
# its clock. Stale timestamps are not refused by the broker (it would fail a producer's whole batch
# for one record); the stream dead-letters them (implausible_kafka_time). tidemark/stack/kafka.py
# sets the same on the embedded broker; schemas/README.md, "Kafka timestamps", says why.
TOPIC_CONFIGS = {
    "message.timestamp.type": "CreateTime",
    "message.timestamp.after.max.ms": str(int(MAX_RECORD_SKEW.total_seconds() * 1000)),
}

# Throughput-oriented producer defaults. kafka-python spends most of its CPU
# per record; lz4 + big batches amortise the per-request and per-batch work
# (no compression is ~3x slower here because of bigger requests and per-byte
# CRC work in Python). Idempotence (kafka-python's default with acks=all)
# keeps retries from writing extra copies, which exact reconciliation needs.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "compression_type": "lz4",
    "batch_size": 1 << 20,
    "linger_ms": 50,
    "max_in_flight_requests_per_connection": 5,
    "max_request_size": 4 << 20,
    "request_timeout_ms": 30_000,
    "delivery_timeout_ms": 120_000,
    # Topics are created deliberately (ensure_topic) with the right partition
    # count; an auto-created topic would silently get the broker's default.
    "allow_auto_create_topics": False,
    "client_id": "tidemark-producer",
}


class TopicPartitionsError(TidemarkError, RuntimeError):
    """An existing topic has fewer partitions than required."""


def broker_reachable(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True if a TCP connection to any bootstrap address succeeds (a cheap pre-flight check)."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def cluster_brokers(bootstrap: str, timeout_s: float = 3.0) -> list[dict]:
    """The brokers a metadata request returns (``[]`` if none answers within about ``timeout_s``).

    The stack's health check for Kafka: an open port is not enough, the broker must answer.
    """
    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="tidemark-health",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            reconnect_backoff_max_ms=500,
        )
    except (KafkaError, OSError, ValueError):
        return []
    try:
        return list(admin.describe_cluster().get("brokers") or [])
    except (KafkaError, OSError):
        return []
    finally:
        admin.close()


def _partitions(admin: KafkaAdminClient, topic: str) -> list[dict] | None:
    """Partition metadata of ``topic``, or None if it does not exist."""
    (desc,) = admin.describe_topics([topic])
    code = desc.get("error_code", 0)
    if code == UNKNOWN_TOPIC_OR_PARTITION:
        return None
    if code:
        raise KafkaError(f"describe_topics({topic!r}) failed with error code {code}")
    return desc["partitions"]


def _partition_count(admin: KafkaAdminClient, topic: str) -> int | None:
    """Partitions of ``topic``, or None if it does not exist."""
    parts = _partitions(admin, topic)
    return None if parts is None else len(parts)


def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    *,
    timeout_s: float = 30.0,
    replication_factor: int = -1,
    min_insync: int | None = None,
) -> int:
    """Create ``topic`` with ``partitions`` partitions unless it exists; return its partition count.

    Idempotent and safe against a concurrent creator. A new topic is returned only once
    every partition has a leader, so producing to it right away works. The replication
    factor is ``replication_factor`` (-1: the cluster's default, 1 on the embedded broker), with
    ``min.insync.replicas`` = ``min_insync`` if given (what an ``acks=all`` write waits for); the
    timestamp settings are ``TOPIC_CONFIGS``. An existing topic with more partitions is accepted;
    one with fewer, or fewer replicas than asked, raises TopicPartitionsError.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="tidemark-admin", bootstrap_timeout_ms=int(timeout_s * 1000)
    )
    try:
        existing = _partition_count(admin, topic)
        if existing is None:
            try:
                configs = {**TOPIC_CONFIGS, **({"min.insync.replicas": str(min_insync)} if min_insync else {})}
                spec = {"num_partitions": partitions, "replication_factor": replication_factor, "configs": configs}
                admin.create_topics(
                    {topic: spec},
                    timeout_ms=int(timeout_s * 1000),
                )
                log.info("created topic %s with %d partitions", topic, partitions)
            except TopicAlreadyExistsError:
                log.info("topic %s was created concurrently", topic)
            deadline = time.monotonic() + timeout_s
            while True:
                parts = _partitions(admin, topic)
                if parts is not None and all(p.get("leader_id", -1) >= 0 for p in parts):
                    existing = len(parts)
                    break
                if time.monotonic() > deadline:
                    raise KafkaError(
                        f"topic {topic!r} has no leader for every partition {timeout_s:.0f}s after creation"
                    )
                time.sleep(0.1)
        if existing < partitions:
            raise TopicPartitionsError(
                f"topic {topic!r} exists with {existing} partitions but {partitions} are required; "
                "Tidemark does not add partitions in place (that would move keys between partitions "
                "under the running stream): delete and recreate the topic, add them deliberately "
                f"(kafka-topics --alter), or run with TIDEMARK_TOPIC_PARTITIONS={existing}"
            )
        replicas = min(len(p.get("replica_nodes") or ()) for p in _partitions(admin, topic) or [{}])
        if replication_factor > 0 and replicas < replication_factor:
            raise TopicPartitionsError(
                f"topic {topic!r} exists with {replicas} replicas per partition but {replication_factor} are "
                "required (TIDEMARK_TOPIC_REPLICATION): reassign its partitions (kafka-reassign-partitions) "
                "or delete and recreate it"
            )
        if existing > partitions:
            log.info("topic %s has %d partitions (>= %d required)", topic, existing, partitions)
        return existing
    finally:
        admin.close()


def producer(bootstrap: str, **overrides: Any) -> KafkaProducer:
    """A KafkaProducer with throughput-oriented defaults; keyword arguments override them."""
    config = {**PRODUCER_DEFAULTS, **overrides}
    return KafkaProducer(bootstrap_servers=bootstrap, **config)


@contextmanager
def _topic_partitions(bootstrap: str, topic: str, timeout_s: float):
    """A short-lived consumer and the TopicPartitions of ``topic`` (an error if it has none)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), enable_auto_commit=False
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            raise RuntimeError(f"topic {topic!r} has no partitions at {bootstrap} (does it exist?)")
        yield consumer, [TopicPartition(topic, p) for p in parts]
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> dict[int, int]:
    """{partition: log end offset} of every partition of ``topic`` (what a consumer must reach
    to have read everything produced so far)."""
    with _topic_partitions(bootstrap, topic, timeout_s) as (consumer, tps):
        return {tp.partition: int(off) for tp, off in consumer.end_offsets(tps).items()}


def offsets_at(bootstrap: str, topic: str, moment_ms: int, *, timeout_s: float = 30.0) -> dict[int, int]:
    """{partition: offset} of ``topic`` as it stood at ``moment_ms``: the first offset whose record
    timestamp is at or after the moment (Kafka's ListOffsets by timestamp), or the log end offset
    where every record is older. A consumer at these offsets has read everything that had arrived
    by then."""
    with _topic_partitions(bootstrap, topic, timeout_s) as (consumer, tps):
        found = consumer.offsets_for_times({tp: int(moment_ms) for tp in tps})
        ends = consumer.end_offsets(tps)
        return {tp.partition: int(found[tp].offset) if found.get(tp) is not None else int(ends[tp]) for tp in tps}
