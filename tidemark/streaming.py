"""The speed layer: Kafka -> validate -> dedup -> (Delta raw, ClickHouse rollups).

``build`` wires the query as read -> transform -> write. The transforms are
pure DataFrame functions in ``tidemark.transforms`` (shared with the batch
layer); the per-micro-batch writer is ``MicroBatchWriter``.

Exactly-once, end to end:
* Spark's ``kafka`` source keeps offsets in the checkpoint; a replayed
  micro-batch reads the same offset ranges with the same dedup state.
* delta-spark writes carry ``txnAppId`` = stream id and ``txnVersion`` = batch
  id; Delta itself skips a replayed batch's write (idempotent writes).
* ClickHouse writes follow the registry protocol in ``tidemark.io.clickhouse_sink``.
"""
from __future__ import annotations

import json
import logging
import secrets
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tidemark.config import Settings, settings

log = logging.getLogger(__name__)

STREAM_NAME = "stream_events"


@dataclass(frozen=True)
class StreamIdentity:
    """Who this stream is, stored beside its checkpoint so it survives restarts.

    ``epoch`` is drawn at random when the checkpoint is created: ClickHouse
    versions (epoch * 1e9 + batch id) then stay unique across checkpoints, even
    for streams started in the same second or a checkpoint reset to batch 0,
    and one stream's rows are the version range [epoch * 1e9, (epoch + 1) * 1e9).
    ``created_at`` orders identities of one topic: the newest is the one serving
    counts (see tidemark/stream_identities.py).
    """
    stream_id: str
    epoch: int
    created_at: datetime

    @classmethod
    def load_or_create(cls, checkpoint: str) -> "StreamIdentity":
        path = Path(checkpoint) / "tidemark_stream.json"
        if path.exists():
            doc = json.loads(path.read_text())
            created = doc.get("created_at") or datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat()
            return cls(doc["stream_id"], int(doc["epoch"]), datetime.fromisoformat(created))
        path.parent.mkdir(parents=True, exist_ok=True)
        ident = cls(uuid.uuid4().hex, secrets.randbelow(9_000_000_000) + 1, datetime.now(timezone.utc))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stream_id": ident.stream_id, "epoch": ident.epoch,
                                   "created_at": ident.created_at.isoformat()}))
        tmp.replace(path)
        return ident


@dataclass(frozen=True)
class StreamOptions:
    topic: str
    checkpoint: str
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int = 200_000
    trigger_seconds: float = 2.0
    dedup_window: str = "10 minutes"
    allowed_lateness_s: int = 600
    fail_on_data_loss: bool = True

    @classmethod
    def from_settings(cls, cfg: Settings, **overrides) -> "StreamOptions":
        base = dict(topic=cfg.kafka.topic, checkpoint=f"{cfg.spark.checkpoint_root}/{STREAM_NAME}",
                    starting_offsets=cfg.spark.starting_offsets, fail_on_data_loss=cfg.spark.fail_on_data_loss,
                    max_offsets_per_trigger=cfg.spark.max_offsets_per_trigger,
                    trigger_seconds=cfg.spark.trigger_seconds, dedup_window=cfg.spark.dedup_window,
                    allowed_lateness_s=cfg.spark.allowed_lateness_s)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    @property
    def identity(self) -> StreamIdentity:
        return StreamIdentity.load_or_create(self.checkpoint)


class MicroBatchWriter:
    """foreachBatch handler: one micro-batch to the lake and to ClickHouse, exactly once."""

    def __init__(self, cfg: Settings, ident: StreamIdentity, opts: StreamOptions):
        self.cfg = cfg
        self.ident = ident
        self.opts = opts
        self.allowed_lateness_s = opts.allowed_lateness_s
        self.first_batch = True
        from concurrent.futures import ThreadPoolExecutor

        from tidemark.io.clickhouse_sink import RollupSink

        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="delta-append")

        self.sink = RollupSink(cfg.clickhouse, ident.stream_id)

    @property
    def txn_app_id(self) -> str:
        return f"tidemark-stream-{self.ident.stream_id}"

    def __call__(self, batch, batch_id: int) -> None:
        from pyspark.sql import functions as F

        from tidemark.io.clickhouse_sink import BatchMetrics, stream_version
        from tidemark.tables import table
        from tidemark.transforms.rollups import late_event_hours, minute_rollups
        from tidemark.transforms.validation import rejected_events, valid_events

        started = time.monotonic()
        version = stream_version(self.ident.epoch, batch_id)
        batch = batch.persist()
        try:
            stamped = batch.withColumn("batch_version", F.lit(version).cast("long"))
            valid = valid_events(stamped, self.allowed_lateness_s)
            rejected = rejected_events(stamped).withColumn("ingest_date", F.to_date("ingest_time"))

            raw, dead = table("events_raw"), table("events_rejected")
            if self.first_batch:
                # The first batch after a start may be a replay of one whose Delta commit
                # already landed: Delta skips that write by (txnAppId, txnVersion).
                log.info("first batch since start; a replayed Delta write is skipped by txn id",
                         extra={"batch_id": batch_id, "txn_app_id": self.txn_app_id})
                self.first_batch = False
            phases = {}
            mark = time.monotonic()

            def phase(name):
                nonlocal mark
                now = time.monotonic()
                phases[name] = int((now - mark) * 1000)
                mark = now

            metrics = BatchMetrics(self.ident.stream_id, batch_id, version)
            self._collect_stats(stamped, metrics)  # first action: materialises the cached batch
            phase("read_validate_dedup_ms")
            # The two Delta appends and the rollup aggregation are independent Spark jobs: run them
            # at once from threads (Spark schedules concurrent jobs), so the batch waits for the
            # slowest, not the sum; each Delta commit is mostly driver-side I/O. Empty sides are
            # skipped: every Spark job has ~0.5 s of fixed cost, and an empty replay has nothing to commit.
            timed: dict[str, int] = {}

            def timed_call(name, fn):
                t0 = time.monotonic()
                result = fn()
                timed[name] = int((time.monotonic() - t0) * 1000)
                return result

            def rollup_rows():
                rows, late_rows = [], []
                if metrics.valid_rows > metrics.late_rows:
                    rows = [tuple(r) for r in minute_rollups(valid.where(~F.col("is_late"))).collect()]
                if metrics.late_rows:
                    late_rows = [tuple(r) for r in late_event_hours(valid).collect()]
                return rows, late_rows

            pending = []
            if metrics.valid_rows:
                pending.append(self.pool.submit(timed_call, "delta_raw_ms", lambda: self._write_delta(
                    valid.select(*raw.names), self.cfg.lake.events_raw, raw.partition_by, batch_id)))
            if metrics.rejected:
                pending.append(self.pool.submit(timed_call, "delta_rejected_ms", lambda: self._write_delta(
                    rejected.select(*dead.names), self.cfg.lake.events_rejected, dead.partition_by, batch_id)))
            try:
                rollups, late = timed_call("rollups_ms", rollup_rows)
            finally:
                # Every Delta commit lands before the ClickHouse registry row, and no append may
                # still be reading the cached batch when it is unpersisted (even on an error).
                errors = [f.exception() for f in pending]
            if any(errors):
                raise next(e for e in errors if e)
            phase("writes_ms")
            phases["delta_ms"] = max(timed.get("delta_raw_ms", 0), timed.get("delta_rejected_ms", 0))
            phases.update(timed)
            metrics.rollup_rows = len(rollups)
            metrics.processing_ms = int((time.monotonic() - started) * 1000)
            written = self.sink.write_batch(metrics, rollups, late)
            phase("clickhouse_ms")
        finally:
            batch.unpersist()
        if written:
            log.info("batch committed", extra={
                "batch_id": batch_id, "valid": metrics.valid_rows, "late": metrics.late_rows,
                "rejected": sum(metrics.rejected.values()), "rollup_rows": metrics.rollup_rows,
                "freshness_p95_s": round(metrics.freshness_quantile_s(0.95), 2),
                "ms": int((time.monotonic() - started) * 1000), **phases})

    def _write_delta(self, df, path: str, partition_by, batch_id: int) -> None:
        # The table exists with the canonical schema (build() created it); append only.
        # txnAppId/txnVersion make the write idempotent: Delta skips a (app, version) it has committed.
        (df.write.format("delta").mode("append")
           .partitionBy(*partition_by)
           .option("txnAppId", self.txn_app_id)
           .option("txnVersion", str(batch_id))
           .save(path))

    def _collect_stats(self, stamped, metrics) -> None:
        """One Spark job for every per-batch figure: counts by reason, late rows, the newest event,
        and on-time events per 100 ms of event time (the measured freshness histogram)."""
        from pyspark.sql import functions as F

        from tidemark.io.clickhouse_sink import FRESHNESS_STEP_MS

        lateness = F.col("kafka_timestamp").cast("double") - F.col("event_time").cast("double")
        late = lateness > F.lit(float(self.allowed_lateness_s))
        on_time_step = F.when(F.col("reason").isNull() & ~late,
                              F.floor(F.unix_millis("event_time") / FRESHNESS_STEP_MS) * FRESHNESS_STEP_MS)
        rows = (stamped.groupBy("reason", late.alias("late"), on_time_step.alias("step"))
                .agg(F.count(F.lit(1)).alias("n"), F.max("event_time").alias("newest")).collect())
        newest = None
        for row in rows:
            if row["reason"] is not None:
                metrics.rejected[row["reason"]] = metrics.rejected.get(row["reason"], 0) + row["n"]
                continue
            metrics.valid_rows += row["n"]
            if row["late"]:
                metrics.late_rows += row["n"]
            if row["step"] is not None:
                metrics.event_time_steps[int(row["step"])] = row["n"]
            if row["newest"] is not None and (newest is None or row["newest"] > newest):
                newest = row["newest"]
        metrics.newest_event_time = newest


def kafka_source_options(cfg: Settings, opts: StreamOptions) -> dict[str, str]:
    """Options of Spark's ``kafka`` source: consumer settings pass through as ``kafka.*``."""
    return {
        **{f"kafka.{k}": v for k, v in cfg.kafka.client_options.items()},
        "kafka.bootstrap.servers": cfg.kafka.bootstrap_servers,
        "subscribe": opts.topic,
        "startingOffsets": opts.starting_offsets,
        "maxOffsetsPerTrigger": str(opts.max_offsets_per_trigger),
        "failOnDataLoss": str(opts.fail_on_data_loss).lower(),
        # Spark's default 4 min poll timeout would hide a dead broker for minutes.
        "kafkaConsumer.pollTimeoutMs": "30000",
    }


def build(spark, cfg: Settings, opts: StreamOptions):
    """read -> transform -> write. Returns the (not yet started) DataStreamWriter and the identity."""
    from pyspark.sql import functions as F

    from tidemark.tables import EVENTS_RAW, EVENTS_REJECTED, ensure_delta_table
    from tidemark.transforms.dedup import drop_duplicates_within_watermark
    from tidemark.transforms.validation import validate_records

    from tidemark import stream_identities

    ident = StreamIdentity.load_or_create(opts.checkpoint)
    # Registered before the first batch: from now on this identity is the one serving counts for the topic.
    stream_identities.register(cfg, ident.stream_id, ident.epoch, opts.topic, opts.checkpoint, ident.created_at)
    ensure_delta_table(spark, EVENTS_RAW, cfg.lake.events_raw)
    ensure_delta_table(spark, EVENTS_REJECTED, cfg.lake.events_rejected)
    reader = spark.readStream.format("kafka")
    for key, value in kafka_source_options(cfg, opts).items():
        reader = reader.option(key, value)
    records = reader.load()
    validated = validate_records(records, max_payload_bytes=cfg.max_payload_bytes,
                                 max_future_skew_s=cfg.max_future_skew_s, retention_days=cfg.retention_days)
    # ingest_time = the micro-batch's timestamp (current_timestamp() in a stream), identical on replay.
    arrived = validated.withColumn("ingest_time", F.current_timestamp())
    deduped = drop_duplicates_within_watermark(arrived, opts.dedup_window)
    writer = (
        deduped.writeStream.queryName(STREAM_NAME)
        .foreachBatch(MicroBatchWriter(cfg, ident, opts))
        .option("checkpointLocation", f"{opts.checkpoint}/spark")
        .trigger(processingTime=f"{opts.trigger_seconds} seconds")
    )
    return writer, ident


def run(cfg: Settings | None = None, *, available_now: bool = False, **overrides) -> int:
    """Run the stream until stopped (SIGTERM/SIGINT stop it cleanly) or, with
    ``available_now``, until the backlog present at start is processed."""
    from tidemark import spark as spark_session
    from tidemark.stream_metrics import ProgressListener

    cfg = cfg or settings()
    opts = StreamOptions.from_settings(cfg, **overrides)
    spark = spark_session.session("tidemark-stream-events", cfg)
    writer, ident = build(spark, cfg, opts)
    spark.streams.addListener(ProgressListener(cfg, ident.stream_id, opts.topic))
    if available_now:
        writer = writer.trigger(availableNow=True)
    query = writer.start()
    log.warning("stream started", extra={"stream_id": ident.stream_id, "topic": opts.topic,
                                          "checkpoint": opts.checkpoint})

    stopping = []
    # The handler only sets a flag: stopping the query from inside a signal
    # handler would re-enter py4j mid-call.
    signal.signal(signal.SIGTERM, lambda signum, _f: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _f: stopping.append(signum))
    while query.isActive and not stopping:
        query.awaitTermination(1)
    if stopping:
        log.warning("stopping stream", extra={"signal": stopping[0]})
        query.stop()
    exc = query.exception()
    spark.stop()
    if exc is not None:
        log.error("stream failed", extra={"error": str(exc)[:2000]})
        return 1
    return 0
