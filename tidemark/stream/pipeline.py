"""The speed layer's query: Kafka -> validate -> dedup -> (Delta raw, ClickHouse rollups).

``build`` wires the query as read -> transform -> write. The transforms are pure DataFrame
functions in ``tidemark.transforms`` (shared with the batch layer); the per-micro-batch writer is
``tidemark.stream.writer.MicroBatchWriter``.

Exactly-once, end to end:
* Spark's ``kafka`` source keeps offsets in the checkpoint; a replayed micro-batch reads the same
  offset ranges with the same dedup state.
* The writer's Delta appends carry (application id, batch id) in their commits and a replayed batch
  skips what the lake holds (``tidemark.stream.lake_append``); its ClickHouse writes
  follow the registry protocol in ``tidemark.stream.sink``.
"""

from __future__ import annotations

import logging
import signal
import sys

from tidemark.config import Settings
from tidemark.stream.admission import Admission, StreamRefused, admit
from tidemark.stream.options import STREAM_NAME, StreamOptions, kafka_source_options

log = logging.getLogger(__name__)


def build(spark, cfg: Settings, opts: StreamOptions, admission: Admission | None = None):
    """read -> transform -> write. Returns the (not yet started) DataStreamWriter and the identity.
    ``admission``: the checkpoint already admitted (``run`` admits it before starting Spark)."""
    from pyspark.sql import functions as F

    from tidemark.stream.writer import MicroBatchWriter
    from tidemark.tables import EVENTS_RAW, EVENTS_REJECTED, ensure_delta_table
    from tidemark.transforms.dedup import drop_duplicates_within_watermark
    from tidemark.transforms.validation import validate_records

    # Registered before the first batch; it serves only if it is (or, first on its topic, becomes) current.
    ident = (admission or admit(cfg, opts)).identity
    ensure_delta_table(spark, EVENTS_RAW, cfg.lake.events_raw)
    ensure_delta_table(spark, EVENTS_REJECTED, cfg.lake.events_rejected)
    reader = spark.readStream.format("kafka")
    for key, value in kafka_source_options(cfg, opts).items():
        reader = reader.option(key, value)
    records = reader.load()
    # ingest_time = the micro-batch's timestamp (current_timestamp() in a stream), identical on replay:
    # the Kafka timestamps are judged against it, and the dedup's watermark runs on it.
    arrived = records.withColumn("ingest_time", F.current_timestamp())
    validated = validate_records(
        arrived,
        max_payload_bytes=cfg.max_payload_bytes,
        max_future_skew_s=cfg.max_future_skew_s,
        retention_days=cfg.retention_days,
        max_record_age_days=cfg.max_record_age_days,
    )
    deduped = drop_duplicates_within_watermark(validated, opts.dedup_window)
    writer = (
        deduped.writeStream.queryName(STREAM_NAME)
        .foreachBatch(MicroBatchWriter(cfg, ident, opts))
        .option("checkpointLocation", f"{opts.checkpoint}/spark")
        .trigger(processingTime=f"{opts.trigger_seconds} seconds")
    )
    return writer, ident


def run(cfg: Settings, *, available_now: bool = False, **overrides) -> int:
    """Run the stream until stopped (SIGTERM/SIGINT stop it cleanly) or, with
    ``available_now``, until the backlog present at start is processed."""
    from tidemark import spark as spark_session
    from tidemark.stream.metrics import ProgressListener

    opts = StreamOptions.from_settings(cfg, **overrides)
    try:  # before Spark starts: a refused stream costs no session
        admission = admit(cfg, opts)
    except StreamRefused as refused:
        reason = str(refused)
        log.error("stream refused", extra={"checkpoint": opts.checkpoint, "topic": opts.topic, "reason": reason})
        print(f"tidemark stream: refused: {reason}", file=sys.stderr)
        return 2
    spark = spark_session.session("tidemark-stream-events", cfg)
    writer, ident = build(spark, cfg, opts, admission)
    spark.streams.addListener(ProgressListener(cfg, ident.stream_id, opts.topic))
    if available_now:
        writer = writer.trigger(availableNow=True)
    query = writer.start()
    log.warning(
        "stream started",
        extra={
            "stream_id": ident.stream_id,
            "topic": opts.topic,
            "checkpoint": opts.checkpoint,
            "role": admission.role,
        },
    )

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
