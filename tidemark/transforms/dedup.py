"""Duplicate removal, shared by both layers.

Stream: within the watermark, by ``dedup_key`` (the event_id; dead letters get
a key unique to their Kafka coordinates, so they are never merged). The
watermark runs on the *arrival* time (Kafka timestamp), not the event time:
late mobile events must not be dropped by the watermark, because the lake
keeps every event, and a duplicate is a re-send, so "within the watermark"
means "re-sent within the delay after the first copy arrived".

Batch: over a whole hour, keeping the first copy that arrived.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def drop_duplicates_within_watermark(validated: DataFrame, delay: str) -> DataFrame:
    return validated.withWatermark("kafka_timestamp", delay).dropDuplicatesWithinWatermark(["dedup_key"])


def drop_duplicate_events(events: DataFrame) -> DataFrame:
    """Batch dedup by event_id, deterministic: the earliest (timestamp, partition, offset) copy wins."""
    first = Window.partitionBy("event_id").orderBy("kafka_timestamp", "kafka_partition", "kafka_offset")
    return events.withColumn("_copy", F.row_number().over(first)).where("_copy = 1").drop("_copy")
