"""Send generated traffic to Kafka (or a JSONL file) and write the manifest once all of it is acked."""
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

from tidemark.config import settings
from tidemark.generator.manifest import Manifest, iso_ms, write_manifest
from tidemark.generator.traffic import (
    DEFAULT_RATE, HOUR_MS, MINUTE_MS, TrafficGenerator, TrafficOptions,
)

log = logging.getLogger(__name__)

# A start time this close to now counts as "now" for the realtime default.
REALTIME_START_TOLERANCE_S = 60.0
PROGRESS_EVERY = 2048


class DeliveryError(RuntimeError):
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
    manifest: Path | None = None
    topic: str | None = None
    bootstrap: str | None = None
    realtime: bool | None = None  # None = decide (see resolve)
    output: Path | None = None  # JSONL instead of Kafka
    partitions: int | None = None  # topic partitions to create / assume in --output mode
    progress: bool = True
    producer_overrides: dict[str, Any] = field(default_factory=dict)


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


def resolve(options: GenerateOptions, partitions: int) -> Plan:
    """Turn user options into a deterministic traffic plan. The only place that reads the clock."""
    cfg = settings()
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
        partitions=partitions,
        retention_days=cfg.retention_days,
        max_future_skew_s=cfg.max_future_skew_s,
        max_payload_bytes=cfg.max_payload_bytes,
    )
    traffic.check()
    return Plan(traffic=traffic, realtime=realtime, topic=options.topic or cfg.kafka.topic)


class _Acks:
    """Cheap delivery accounting: one bound-method call per record from the sender thread."""

    __slots__ = ("ok", "failed", "first_error")

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.first_error: BaseException | None = None

    def success(self, _metadata) -> None:
        self.ok += 1

    def failure(self, exc: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = exc


class _Pacer:
    """Sleeps so record timestamps track the wall clock (realtime mode)."""

    def __init__(self, start_ms: int, rate: float):
        self.start_ms = start_ms
        self.wall0 = time.monotonic()
        self.every = max(1, int(rate / 200))  # check about every 5 ms of traffic

    def wait(self, index: int, timestamp_ms: int) -> None:
        if index % self.every:
            return
        ahead = (timestamp_ms - self.start_ms) / 1000 - (time.monotonic() - self.wall0)
        if ahead > 0:
            time.sleep(ahead)

    def lag_s(self, timestamp_ms: int) -> float:
        return (time.monotonic() - self.wall0) - (timestamp_ms - self.start_ms) / 1000


def _progress(total: int, enabled: bool, desc: str) -> tqdm:
    return tqdm(total=total, unit="ev", unit_scale=True, file=sys.stderr, desc=desc,
                disable=not enabled, mininterval=0.5, smoothing=0.2, dynamic_ncols=True)


def _manifest_doc(plan: Plan, manifest: Manifest, messages_sent: int, last_ts: int | None,
                  partitions: int) -> dict[str, Any]:
    t = plan.traffic
    return manifest.to_dict(
        messages_sent=messages_sent,
        seed=t.seed,
        start_time=iso_ms(t.start_ms),
        end_time=iso_ms(last_ts if last_ts is not None else t.start_ms),
        topic=plan.topic,
        partitions=partitions,
        options={
            "count": t.count, "rate": t.rate, "tenants": t.tenants,
            "late_fraction": t.late_fraction, "min_lateness_ms": t.min_lateness_ms,
            "max_lateness_ms": t.max_lateness_ms, "duplicate_fraction": t.duplicate_fraction,
            "malformed_fraction": t.malformed_fraction, "retention_days": t.retention_days,
            "max_future_skew_s": t.max_future_skew_s, "max_payload_bytes": t.max_payload_bytes,
        },
    )


def _send_to_file(plan: Plan, generator: TrafficGenerator, path: Path, progress: bool) -> tuple[int, int | None]:
    sent, last_ts = 0, None
    pacer = _Pacer(plan.traffic.start_ms, plan.traffic.rate) if plan.realtime else None
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii") as fh, _progress(plan.traffic.count, progress, "generate") as bar:
        for rec in generator.records():
            if pacer is not None:
                pacer.wait(sent, rec.timestamp_ms)
            fh.write(json.dumps({
                "key": rec.key.decode(), "partition": rec.partition, "timestamp_ms": rec.timestamp_ms,
                "value_b64": base64.b64encode(rec.value).decode(),
            }, separators=(",", ":")) + "\n")
            sent += 1
            last_ts = rec.timestamp_ms
            if not sent % PROGRESS_EVERY:
                bar.update(PROGRESS_EVERY)
        bar.update(sent % PROGRESS_EVERY)
    return sent, last_ts


def _send_to_kafka(plan: Plan, generator: TrafficGenerator, kafka_producer, progress: bool) -> tuple[int, int | None]:
    acks = _Acks()
    on_ok, on_fail = acks.success, acks.failure
    send = kafka_producer.send
    topic = plan.topic
    sent, last_ts = 0, None
    pacer = _Pacer(plan.traffic.start_ms, plan.traffic.rate) if plan.realtime else None
    with _progress(plan.traffic.count, progress, f"generate -> {topic}") as bar:
        try:
            for rec in generator.records():
                if pacer is not None:
                    pacer.wait(sent, rec.timestamp_ms)
                # The partition is what kafka-python's DefaultPartitioner would pick for the
                # key (precomputed per user), or the explicit one for cross-partition duplicates.
                send(topic, rec.value, rec.key, None, rec.partition, rec.timestamp_ms) \
                    .add_callback(on_ok).add_errback(on_fail)
                sent += 1
                last_ts = rec.timestamp_ms
                if not sent % PROGRESS_EVERY:
                    bar.update(PROGRESS_EVERY)
        finally:
            kafka_producer.flush()
        bar.update(sent % PROGRESS_EVERY)
    if pacer is not None and last_ts is not None:
        lag = pacer.lag_s(last_ts)
        if lag > 1.0:
            log.warning("realtime pacing fell %.1f s behind the simulated clock", lag)
    if acks.failed or acks.ok != sent:
        raise DeliveryError(
            f"{acks.failed} of {sent} records failed, {sent - acks.ok - acks.failed} unresolved; "
            f"first error: {acks.first_error!r}; manifest not written"
        )
    return sent, last_ts


def _crc32c_accelerated() -> bool:
    try:
        from kafka.record import util
    except ImportError:  # pragma: no cover
        return False
    return getattr(util, "crc32c_c", None) is not None


def run(options: GenerateOptions) -> dict[str, Any]:
    """Generate, send, wait for every ack, then write and return the manifest."""
    cfg = settings()
    started = time.monotonic()
    kafka_producer = None
    if options.output is not None:
        partitions = options.partitions or cfg.kafka.partitions
    else:
        from kafka.errors import KafkaConnectionError

        from tidemark.io.kafka_admin import broker_reachable, ensure_topic, producer

        bootstrap = options.bootstrap or cfg.kafka.bootstrap_servers
        if not broker_reachable(bootstrap):
            raise KafkaConnectionError(f"no broker answers at {bootstrap}")
        topic = options.topic or cfg.kafka.topic
        ensure_topic(bootstrap, topic, options.partitions or cfg.kafka.partitions)
        kafka_producer = producer(bootstrap, **options.producer_overrides)
        if not _crc32c_accelerated():
            log.info("kafka-python is using its pure-Python CRC32C: install the 'crc32c' package "
                     "for about 1.5x producer throughput")
        partitions = len(kafka_producer.partitions_for(topic) or ())
        if not partitions:
            raise RuntimeError(f"no partition metadata for topic {topic!r}")

    plan = resolve(options, partitions)
    generator = TrafficGenerator(plan.traffic)
    log.info("generating %d records from %s at %.0f ev/s simulated (seed %d, realtime=%s) to %s",
             plan.traffic.count, iso_ms(plan.traffic.start_ms), plan.traffic.rate, plan.traffic.seed,
             plan.realtime, options.output or plan.topic)
    try:
        if kafka_producer is None:
            sent, last_ts = _send_to_file(plan, generator, options.output, options.progress)
        else:
            sent, last_ts = _send_to_kafka(plan, generator, kafka_producer, options.progress)
    finally:
        if kafka_producer is not None:
            kafka_producer.close(timeout=10)

    doc = _manifest_doc(plan, generator.manifest, sent, last_ts, partitions)
    if options.manifest is not None:
        write_manifest(doc, options.manifest)
        log.info("manifest written to %s", options.manifest)
    elapsed = time.monotonic() - started
    log.info("sent %d records in %.1f s (%.0f/s)", sent, elapsed, sent / elapsed if elapsed else 0.0)
    return doc
