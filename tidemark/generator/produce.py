"""Send generated traffic to Kafka (or a JSONL file) and write the manifest once all of it is acked.

(Over 400 lines on purpose: pacing, delivery accounting and the manifest are one flow, and the
manifest may only be written from the acks of the records actually sent.)

The Kafka producer here is confluent-kafka (librdkafka), not kafka-python like the rest of the
project: kafka-python spends ~60-70 us of Python CPU per record (record building, CRC32C, batching
and the sender thread all run in the interpreter), which capped the generator at ~15-30 k ev/s on
one core. librdkafka does all of that in C threads, leaving ~1 us of Python per ``produce()``, so the
generator is bound by generating the traffic itself (see bench/generator_throughput.py). Only the
generator uses confluent-kafka; topic creation (tidemark.io.kafka_admin) and every consumer keep
kafka-python.

Placement is unchanged: each record is produced to the explicit partition the traffic model
computed (murmur2 of the user key, exactly what kafka-python's DefaultPartitioner and the Java
client pick; cross-partition duplicates go to the next partition). The producer's own partitioner
is set to ``murmur2_random`` (the Java/kafka-python-compatible one, not librdkafka's default
``consistent_random``/CRC32) so that any record produced without an explicit partition would land
on the same partition as well.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tidemark.config import Settings
from tidemark.errors import TidemarkError
from tidemark.generator.injections import Injection
from tidemark.generator.manifest import Manifest, iso_ms, write_manifest
from tidemark.generator.options import (
    DEFAULT_POISON_DEPTH,
    DEFAULT_RATE,
    HOUR_MS,
    MAX_ON_TIME_JITTER_MS,
    MINUTE_MS,
    TrafficOptions,
)
from tidemark.generator.traffic import TrafficGenerator

log = logging.getLogger(__name__)

# A start time this close to now counts as "now" for the realtime default.
REALTIME_START_TOLERANCE_S = 60.0
PROGRESS_EVERY = 2048
RATE_LOG_EVERY_S = 10.0  # periodic progress log line (besides the tqdm bar)

# librdkafka settings for the generator's producer; GenerateOptions.producer_overrides overrides them
# (librdkafka names, e.g. {"compression.type": "none"}).
PRODUCER_CONFIG: dict[str, Any] = {
    # Idempotence implies acks=all, retries and max.in.flight <= 5: a retried batch is never
    # written twice, which exact reconciliation against the manifest needs.
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    # Big batches and a little linger: fewer, larger requests (batch.size is per partition).
    "linger.ms": 50,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "message.max.bytes": 4 << 20,
    # The local queue the Python thread fills; produce() raises BufferError when it is full and the
    # send loop then serves delivery reports until there is room.
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
    "message.timeout.ms": 120_000,  # delivery timeout: after it a record is reported failed
    "request.timeout.ms": 30_000,
    # Same placement as kafka-python / Java for keyed records (librdkafka's default is CRC32-based).
    "partitioner": "murmur2_random",
    # Successful deliveries need no Python callback: a failure is reported through on_delivery,
    # and every record not reported failed and not left in the queue after flush() was acked.
    "delivery.report.only.error": True,
    "client.id": "tidemark-generator",
}


class DeliveryError(TidemarkError, RuntimeError):
    """Some records were not acknowledged by the broker; no manifest is written."""


@dataclass
class GenerateOptions:
    count: int | None = None
    rate: float | None = None
    duration: float | None = None  # seconds of simulated time
    seed: int = 42
    tenants: int = 5
    start_time: datetime | None = None  # aware; None = now floored to the second
    late_fraction: float = 0.02
    min_lateness_ms: int = 15 * MINUTE_MS
    max_lateness_ms: int = 2 * HOUR_MS
    duplicate_fraction: float = 0.01
    malformed_fraction: float = 0.01
    # Edge cases (see TrafficOptions); the defaults reproduce the traffic of earlier versions.
    ontime_max_lateness_ms: int = MAX_ON_TIME_JITTER_MS
    ontime_lag_fraction: float = 1.0
    hour_boundary_fraction: float = 0.0
    poison_fraction: float = 0.0
    poison_depth: int = DEFAULT_POISON_DEPTH
    injections: tuple[Injection, ...] = ()  # anomalies to inject (recorded in the manifest)
    seasonality: float = 0.0  # daily/weekly traffic shape (tidemark/generator/injections.py)
    manifest: Path | None = None
    topic: str | None = None
    bootstrap: str | None = None
    realtime: bool | None = None  # None = decide (see resolve)
    output: Path | None = None  # JSONL instead of Kafka
    partitions: int | None = None  # topic partitions to create / assume in --output mode
    progress: bool = True
    # librdkafka settings over PRODUCER_CONFIG, e.g. {"compression.type": "none"}
    producer_overrides: dict[str, Any] = field(default_factory=dict)
    # Filled by run() when given: send_seconds (last record handed to the producer), ack_seconds
    # (all acked), records. Not part of the manifest.
    timings: dict[str, float] | None = None


@dataclass(frozen=True)
class Plan:
    traffic: TrafficOptions
    realtime: bool
    topic: str


def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def resolve(options: GenerateOptions, partitions: int, cfg: Settings) -> Plan:
    """Turn user options into a deterministic traffic plan. The only place that reads the clock."""
    if options.start_time is None:
        start_ms = int(time.time()) * 1000  # now, floored to the second
        start_is_now = True
    else:
        start_ms = _to_ms(options.start_time)
        start_is_now = abs(start_ms / 1000 - time.time()) <= REALTIME_START_TOLERANCE_S
    rate = options.rate if options.rate is not None else DEFAULT_RATE
    if options.count is not None:
        count = options.count
    elif options.duration is not None:
        count = int(round(rate * options.duration))
    else:
        raise ValueError("give --count N, or --duration S (with --rate)")
    realtime = options.realtime
    if realtime is None:
        realtime = options.rate is not None and start_is_now
    traffic = TrafficOptions(
        start_ms=start_ms,
        count=count,
        rate=rate,
        seed=options.seed,
        tenants=options.tenants,
        late_fraction=options.late_fraction,
        min_lateness_ms=options.min_lateness_ms,
        max_lateness_ms=options.max_lateness_ms,
        duplicate_fraction=options.duplicate_fraction,
        malformed_fraction=options.malformed_fraction,
        ontime_max_lateness_ms=options.ontime_max_lateness_ms,
        ontime_lag_fraction=options.ontime_lag_fraction,
        hour_boundary_fraction=options.hour_boundary_fraction,
        poison_fraction=options.poison_fraction,
        poison_depth=options.poison_depth,
        injections=options.injections,
        seasonality=options.seasonality,
        partitions=partitions,
        retention_days=cfg.retention_days,
        max_future_skew_s=cfg.max_future_skew_s,
        max_payload_bytes=cfg.max_payload_bytes,
    )
    traffic.check()
    return Plan(traffic=traffic, realtime=realtime, topic=options.topic or cfg.kafka.topic)


class _Acks:
    """Delivery accounting, fed by librdkafka delivery reports (served from poll()/flush()).

    With ``delivery.report.only.error`` (the default) only failures call back, and a record counts
    as acked when it left the producer queue without a failure report (checked after flush()).
    Without it every success calls back too and is counted in ``ok``.
    """

    __slots__ = ("ok", "failed", "first_error", "fatal")

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.first_error: Any = None
        self.fatal: Any = None

    def on_delivery(self, err, _msg) -> None:
        if err is None:
            self.ok += 1
            return
        self.failed += 1
        if self.first_error is None:
            self.first_error = err

    def on_error(self, err) -> None:
        """Client-level errors (broker down, fatal idempotence errors); delivery failures come per record."""
        if err.fatal():
            if self.fatal is None:
                self.fatal = err
            log.error("fatal producer error: %s", err)
        else:
            log.warning("producer: %s", err)


class _Pacer:
    """Sleeps so record timestamps track the wall clock (realtime mode)."""

    def __init__(self, start_ms: int, rate: float, sleep=time.sleep):
        self.start_ms = start_ms
        self.wall0 = time.monotonic()
        self.every = max(1, int(rate / 200))  # check about every 5 ms of traffic
        # The Kafka path sleeps in producer.poll(), which serves delivery reports and client errors
        # while it waits and may return early: hence the loop.
        self.sleep = sleep

    def wait(self, index: int, timestamp_ms: int) -> None:
        if index % self.every:
            return
        ahead = (timestamp_ms - self.start_ms) / 1000 - (time.monotonic() - self.wall0)
        while ahead > 0:
            self.sleep(ahead)
            ahead = (timestamp_ms - self.start_ms) / 1000 - (time.monotonic() - self.wall0)

    def lag_s(self, timestamp_ms: int) -> float:
        return (time.monotonic() - self.wall0) - (timestamp_ms - self.start_ms) / 1000


def _progress(total: int, enabled: bool, desc: str) -> tqdm:
    return tqdm(
        total=total,
        unit="ev",
        unit_scale=True,
        file=sys.stderr,
        desc=desc,
        disable=not enabled,
        mininterval=0.5,
        smoothing=0.2,
        dynamic_ncols=True,
    )


def _manifest_doc(
    plan: Plan, manifest: Manifest, messages_sent: int, last_ts: int | None, partitions: int
) -> dict[str, Any]:
    t = plan.traffic
    return manifest.to_dict(
        messages_sent=messages_sent,
        seed=t.seed,
        start_time=iso_ms(t.start_ms),
        end_time=iso_ms(last_ts if last_ts is not None else t.start_ms),
        topic=plan.topic,
        partitions=partitions,
        options={
            "count": t.count,
            "rate": t.rate,
            "tenants": t.tenants,
            "late_fraction": t.late_fraction,
            "min_lateness_ms": t.min_lateness_ms,
            "max_lateness_ms": t.max_lateness_ms,
            "duplicate_fraction": t.duplicate_fraction,
            "malformed_fraction": t.malformed_fraction,
            "retention_days": t.retention_days,
            "max_future_skew_s": t.max_future_skew_s,
            "max_payload_bytes": t.max_payload_bytes,
            "ontime_max_lateness_ms": t.ontime_max_lateness_ms,
            "ontime_lag_fraction": t.ontime_lag_fraction,
            "hour_boundary_fraction": t.hour_boundary_fraction,
            "poison_fraction": t.poison_fraction,
            "poison_depth": t.poison_depth,
            "seasonality": t.seasonality,
        },
        # the ground truth of the anomaly detector (bench/anomalies.py)
        injections=[i.to_dict() for i in t.injections],
    )


def _send_to_file(plan: Plan, generator: TrafficGenerator, path: Path, progress: bool) -> tuple[int, int | None]:
    sent, last_ts = 0, None
    pacer = _Pacer(plan.traffic.start_ms, plan.traffic.rate) if plan.realtime else None
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii") as fh, _progress(plan.traffic.count, progress, "generate") as bar:
        for rec in generator.records():
            if pacer is not None:
                pacer.wait(sent, rec.timestamp_ms)
            fh.write(
                json.dumps(
                    {
                        "key": rec.key.decode(),
                        "partition": rec.partition,
                        "timestamp_ms": rec.timestamp_ms,
                        "value_b64": base64.b64encode(rec.value).decode(),
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )
            sent += 1
            last_ts = rec.timestamp_ms
            if not sent % PROGRESS_EVERY:
                bar.update(PROGRESS_EVERY)
        bar.update(sent % PROGRESS_EVERY)
    return sent, last_ts


def _send_to_kafka(
    plan: Plan,
    generator: TrafficGenerator,
    kafka_producer,
    acks: _Acks,
    progress: bool,
    *,
    only_errors: bool = True,
    flush_timeout_s: float = 180.0,
    timings: dict[str, float] | None = None,
) -> tuple[int, int | None]:
    """Produce every record and wait for all delivery reports; DeliveryError unless all were acked."""
    produce = kafka_producer.produce
    poll = kafka_producer.poll
    topic = plan.topic
    count = plan.traffic.count
    sent, last_ts = 0, None
    pacer = _Pacer(plan.traffic.start_ms, plan.traffic.rate, sleep=poll) if plan.realtime else None
    t0 = time.monotonic()
    next_log = t0 + RATE_LOG_EVERY_S
    with _progress(count, progress, f"generate -> {topic}") as bar:
        try:
            for rec in generator.records():
                if pacer is not None:
                    pacer.wait(sent, rec.timestamp_ms)
                # Explicit partition (murmur2 placement of the user key, precomputed per user, or the
                # other partition of a cross-partition duplicate); the simulated send time is the
                # record's CreateTime.
                try:
                    produce(topic, rec.value, rec.key, rec.partition, timestamp=rec.timestamp_ms)
                except BufferError:  # local queue full: let librdkafka drain it, then retry
                    while True:
                        poll(0.05)
                        try:
                            produce(topic, rec.value, rec.key, rec.partition, timestamp=rec.timestamp_ms)
                            break
                        except BufferError:
                            continue
                sent += 1
                if not sent % PROGRESS_EVERY:
                    poll(0)  # serve delivery reports, client errors and librdkafka logs
                    if acks.fatal is not None:
                        raise DeliveryError(
                            f"fatal producer error after {sent} records: {acks.fatal}; manifest not written"
                        )
                    bar.update(PROGRESS_EVERY)
                    now = time.monotonic()
                    if now >= next_log:
                        next_log = now + RATE_LOG_EVERY_S
                        log.info(
                            "sent %d/%d records (%.0f/s), %d awaiting ack, %d failed",
                            sent,
                            count,
                            sent / (now - t0),
                            len(kafka_producer),
                            acks.failed,
                        )
            if sent:
                last_ts = rec.timestamp_ms
        except BaseException:
            # Interrupted or failed: drop what is still queued locally and wait briefly for what is
            # in flight, so the process can exit; no manifest is written either way.
            kafka_producer.purge(in_queue=True, in_flight=False)
            kafka_producer.flush(5)
            raise
        send_s = time.monotonic() - t0
        unresolved = kafka_producer.flush(flush_timeout_s)
        bar.update(sent % PROGRESS_EVERY)
    if pacer is not None and last_ts is not None:
        lag = pacer.lag_s(last_ts)
        if lag > 1.0:
            log.warning("realtime pacing fell %.1f s behind the simulated clock", lag)
    acked = sent - acks.failed - unresolved if only_errors else acks.ok
    if acks.fatal is not None or acks.failed or unresolved or acked != sent:
        raise DeliveryError(
            f"{acks.failed} of {sent} records failed, {unresolved} unresolved, {acked} acked; "
            f"first error: {acks.first_error or acks.fatal}; manifest not written"
        )
    elapsed = time.monotonic() - t0
    if timings is not None:
        timings.update(send_seconds=send_s, ack_seconds=elapsed, records=sent)
    log.info("all %d records acked in %.1f s (%.0f/s)", sent, elapsed, sent / elapsed if elapsed else 0.0)
    return sent, last_ts


def _make_producer(bootstrap: str, acks: _Acks, overrides: dict[str, Any]):
    """(confluent_kafka.Producer, whether only failures are reported)."""
    from confluent_kafka import Producer

    config = {
        **PRODUCER_CONFIG,
        **overrides,
        "bootstrap.servers": bootstrap,
        "on_delivery": acks.on_delivery,
        "error_cb": acks.on_error,
        "logger": logging.getLogger("tidemark.generator.librdkafka"),
    }
    return Producer(config), bool(config.get("delivery.report.only.error"))


def _partition_count(kafka_producer, topic: str, timeout_s: float = 30.0) -> int:
    """Partitions of ``topic`` in the producer's metadata (waits for a just-created topic)."""
    deadline = time.monotonic() + timeout_s
    while True:
        meta = kafka_producer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            return len(meta.partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"no partition metadata for topic {topic!r}: {meta.error if meta is not None else 'absent'}"
            )
        time.sleep(0.2)


def run(options: GenerateOptions, cfg: Settings) -> dict[str, Any]:
    """Generate, send, wait for every ack, then write and return the manifest."""
    started = time.monotonic()
    kafka_producer = None
    acks, only_errors = _Acks(), True  # used when sending to Kafka
    if options.output is not None:
        partitions = options.partitions or cfg.kafka.partitions
    else:
        from kafka.errors import KafkaConnectionError

        from tidemark.io.kafka_admin import broker_reachable, ensure_topic

        bootstrap = options.bootstrap or cfg.kafka.bootstrap_servers
        if not broker_reachable(bootstrap):
            raise KafkaConnectionError(f"no broker answers at {bootstrap}")
        topic = options.topic or cfg.kafka.topic
        k = cfg.kafka  # replicated as the stack's own topics (3 copies, 2 in sync under TIDEMARK_STACK=cluster)
        ensure_topic(
            bootstrap,
            topic,
            options.partitions or k.partitions,
            replication_factor=k.replication_factor,
            min_insync=k.min_insync_replicas,
        )
        kafka_producer, only_errors = _make_producer(bootstrap, acks, options.producer_overrides)
        partitions = _partition_count(kafka_producer, topic)

    plan = resolve(options, partitions, cfg)
    generator = TrafficGenerator(plan.traffic)
    log.info(
        "generating %d records from %s at %.0f ev/s simulated (seed %d, realtime=%s) to %s",
        plan.traffic.count,
        iso_ms(plan.traffic.start_ms),
        plan.traffic.rate,
        plan.traffic.seed,
        plan.realtime,
        options.output or plan.topic,
    )
    try:
        if options.output is not None:
            sent, last_ts = _send_to_file(plan, generator, options.output, options.progress)
        else:
            sent, last_ts = _send_to_kafka(
                plan,
                generator,
                kafka_producer,
                acks,
                options.progress,
                only_errors=only_errors,
                timings=options.timings,
            )
    finally:
        # Everything was flushed (or purged on failure): dropping the last reference destroys the
        # librdkafka handle without close()'s unbounded flush.
        kafka_producer = None

    doc = _manifest_doc(plan, generator.manifest, sent, last_ts, partitions)
    if options.manifest is not None:
        write_manifest(doc, options.manifest)
        log.info("manifest written to %s", options.manifest)
    elapsed = time.monotonic() - started
    log.info("sent %d records in %.1f s (%.0f/s)", sent, elapsed, sent / elapsed if elapsed else 0.0)
    return doc
