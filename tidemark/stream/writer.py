"""The micro-batch writer (``foreachBatch``): one micro-batch to the lake and to ClickHouse, exactly once.

* delta-spark appends carry the stream's application id and the batch id in their commit; the first
  batch after a start, the only one that can be a replay, skips an append the lake already holds
  (``tidemark.stream.lake_append``).
* ClickHouse writes follow the registry protocol in ``tidemark.stream.sink``.

Nothing collected here is a timestamp: ``collect()`` turns Spark timestamps into *naive* datetimes
in the driver process's local zone, and clickhouse-driver reads a naive value as UTC, so on a host
whose TZ is not UTC every rollup would land hours away from its minute. Timestamps leave Spark as
epoch numbers (``unix_seconds`` / ``unix_micros``), which no zone can misread.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

from tidemark.config import Settings
from tidemark.stream.identity import StreamIdentity
from tidemark.stream.options import StreamOptions
from tidemark.timing import LapTimer

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class MicroBatchWriter:
    """foreachBatch handler: one micro-batch to the lake and to ClickHouse, exactly once."""

    def __init__(self, cfg: Settings, ident: StreamIdentity, opts: StreamOptions):
        self.cfg = cfg
        self.ident = ident
        self.opts = opts
        self.allowed_lateness_s = opts.allowed_lateness_s
        self.first_batch = True
        from concurrent.futures import ThreadPoolExecutor

        from tidemark.stream.sink import RollupSink

        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="delta-append")

        self.sink = RollupSink(cfg.clickhouse, ident.stream_id)

    @property
    def txn_app_id(self) -> str:
        return f"tidemark-stream-{self.ident.stream_id}"

    def __call__(self, batch, batch_id: int) -> None:
        from pyspark.sql import functions as F

        from tidemark.stream.identity import stream_version
        from tidemark.stream.sink import BatchMetrics
        from tidemark.tables import table
        from tidemark.transforms.batch_constant import per_batch_constant
        from tidemark.transforms.rollups import late_event_hours, minute_rollups
        from tidemark.transforms.validation import rejected_events, valid_events

        started = time.monotonic()
        codegen_before = codegen_totals(batch.sparkSession)
        version = stream_version(self.ident.epoch, batch_id)
        batch = batch.persist()
        try:
            # not F.lit(version) alone: each batch's writes would compile new code (batch_constant)
            stamped = batch.withColumn(
                "batch_version", per_batch_constant(F.lit(version).cast("long"), "kafka_partition")
            )
            valid = valid_events(stamped, self.allowed_lateness_s)
            rejected = rejected_events(stamped).withColumn("ingest_date", F.to_date("ingest_time"))

            raw, dead = table("events_raw"), table("events_rejected")
            # The first batch after a start may replay one whose Delta commits already landed.
            may_be_replay, self.first_batch = self.first_batch, False
            timer = LapTimer()
            metrics = BatchMetrics(self.ident.stream_id, batch_id, version)
            self._collect_stats(stamped, metrics)  # first action: materialises the cached batch
            timer.lap("read_validate_dedup")
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
                    minutes = minute_rollups(valid.where(~F.col("is_late")))
                    rows = [tuple(r) for r in _epoch_seconds(minutes, "minute").collect()]
                if metrics.late_rows:
                    hours = late_event_hours(valid)
                    late_rows = [tuple(r) for r in _epoch_seconds(hours, "event_hour", "last_ingest_time").collect()]
                return rows, late_rows

            pending = []
            if metrics.valid_rows:
                pending.append(
                    self.pool.submit(
                        timed_call,
                        "delta_raw_ms",
                        lambda: self._write_delta(
                            valid.select(*raw.names),
                            self.cfg.lake.events_raw,
                            raw.partition_by,
                            batch_id,
                            may_be_replay,
                        ),
                    )
                )
            if metrics.rejected:
                pending.append(
                    self.pool.submit(
                        timed_call,
                        "delta_rejected_ms",
                        lambda: self._write_delta(
                            rejected.select(*dead.names),
                            self.cfg.lake.events_rejected,
                            dead.partition_by,
                            batch_id,
                            may_be_replay,
                        ),
                    )
                )
            try:
                rollups, late = timed_call("rollups_ms", rollup_rows)
            finally:
                # Every Delta commit lands before the ClickHouse registry row, and no append may
                # still be reading the cached batch when it is unpersisted (even on an error).
                errors = [f.exception() for f in pending]
            if any(errors):
                raise next(e for e in errors if e)
            timer.lap("writes")
            phases = timer.milliseconds()
            phases["delta_ms"] = max(timed.get("delta_raw_ms", 0), timed.get("delta_rejected_ms", 0))
            phases.update(timed)
            metrics.rollup_rows = len(rollups)
            metrics.processing_ms = int((time.monotonic() - started) * 1000)
            written = self.sink.write_batch(metrics, rollups, late)
            phases["clickhouse_ms"] = int(round(timer.lap("clickhouse") * 1000))
            codegen_after = codegen_totals(batch.sparkSession)
            phases["codegen_ms"] = int((codegen_after[0] - codegen_before[0]) / 1e6)
            phases["codegen_classes"] = codegen_after[1] - codegen_before[1]
        finally:
            batch.unpersist()
        if written:
            log.info(
                "batch committed",
                extra={
                    "batch_id": batch_id,
                    "valid": metrics.valid_rows,
                    "late": metrics.late_rows,
                    "rejected": sum(metrics.rejected.values()),
                    "rollup_rows": metrics.rollup_rows,
                    "freshness_p95_s": round(metrics.freshness_quantile_s(0.95), 2),
                    "ms": int((time.monotonic() - started) * 1000),
                    **phases,
                },
            )

    def _write_delta(self, df, path: str, partition_by, batch_id: int, may_be_replay: bool) -> None:
        # The table exists with the canonical schema (build() created it); append only, exactly once.
        from tidemark.stream.lake_append import append

        # Coalesced (no shuffle): one file per event-hour directory instead of one per Kafka
        # partition. An hour's scan pays ~1 ms of CPU per file (a Hadoop configuration copy, a footer
        # read); at 4 partitions the busy hour of bench/recompute_hour.py was 20 k files.
        append(
            df.coalesce(self.cfg.spark.lake_write_tasks),
            path,
            partition_by,
            app_id=self.txn_app_id,
            batch_id=batch_id,
            may_be_replay=may_be_replay,
        )

    def _collect_stats(self, stamped, metrics) -> None:
        """One Spark job for every per-batch figure: counts by reason, late rows, the newest event,
        and on-time events per 100 ms of event time (the measured freshness histogram)."""
        from pyspark.sql import functions as F

        from tidemark.stream.sink import FRESHNESS_STEP_MS

        lateness = F.col("kafka_timestamp").cast("double") - F.col("event_time").cast("double")
        late = lateness > F.lit(float(self.allowed_lateness_s))
        on_time_step = F.when(
            F.col("reason").isNull() & ~late,
            F.floor(F.unix_millis("event_time") / FRESHNESS_STEP_MS) * FRESHNESS_STEP_MS,
        )
        rows = (
            stamped.groupBy("reason", late.alias("late"), on_time_step.alias("step"))
            .agg(F.count(F.lit(1)).alias("n"), F.max(F.unix_micros("event_time")).alias("newest"))
            .collect()
        )
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
        metrics.newest_event_time = None if newest is None else EPOCH + timedelta(microseconds=newest)


def codegen_totals(spark) -> tuple[int, int]:
    """Janino's compile time (ns) and generated classes so far in this JVM (driver and, in local mode,
    executors): a plan whose generated code changes every batch compiles again every batch."""
    jvm = spark.sparkContext._jvm
    codegen = jvm.org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator
    classes = jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME().getCount()
    return int(codegen.compileTime()), int(classes)


def _epoch_seconds(df, *names: str):
    """``df`` with the timestamp columns ``names`` as epoch seconds (BIGINT), columns in place."""
    from pyspark.sql import functions as F

    return df.select(*[F.unix_seconds(c).alias(c) if c in names else F.col(c) for c in df.columns])
