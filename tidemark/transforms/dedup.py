"""Duplicate removal, shared by both layers.

Stream: within the watermark, by ``dedup_key`` (the event_id; dead letters get
a key unique to their Kafka coordinates, so they are never merged). The
watermark runs on ``ingest_time``, the micro-batch's own timestamp, not on
the event time nor the producer-set Kafka timestamp: rows behind a watermark
are dropped by Spark, and the lake must keep every event, late mobile events
and old-timestamped re-sends included. Ingest time never runs behind its own
watermark, so nothing is dropped for lateness; a duplicate is an event_id
seen again within the window after the first copy arrived.

Batch: over a whole hour, keeping the first copy that arrived.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def drop_duplicates_within_watermark(arrived: DataFrame, window: str) -> DataFrame:
    """``arrived`` must carry ``ingest_time`` (the batch timestamp) and ``dedup_key``."""
    return arrived.withWatermark("ingest_time", window).dropDuplicatesWithinWatermark(["dedup_key"])


def drop_duplicate_events(events: DataFrame) -> DataFrame:
    """Batch dedup by event_id, deterministic: the earliest (timestamp, partition, offset) copy wins."""
    first = Window.partitionBy("event_id").orderBy("kafka_timestamp", "kafka_partition", "kafka_offset")
    return events.withColumn("_copy", F.row_number().over(first)).where("_copy = 1").drop("_copy")
