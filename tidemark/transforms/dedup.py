"""Duplicate removal, shared by both layers.

An event is identified by ``(tenant_id, event_id)``, never by ``event_id`` alone: ids are the
producers' (SDKs, relays), and one customer's id generator must never erase another customer's
events. Both layers dedup by that pair (``DEDUP_KEY``).

Stream: within the watermark, by ``dedup_key`` (``tenant_id/event_id``, built by the validation;
dead letters get ``topic/partition/offset``, unique to their Kafka coordinates, so they are never
merged; neither part of a valid key can hold a ``/``, so the two kinds never meet). It is one string
column, whatever it holds: the streaming query's state schema stays the one an existing checkpoint
has (before it was the bare event_id), so an upgraded stream restarts on its checkpoint. The
watermark runs on ``ingest_time``, the micro-batch's own timestamp, not on
the event time nor the producer-set Kafka timestamp: rows behind a watermark
are dropped by Spark, and the lake must keep every event, late mobile events
and old-timestamped re-sends included. Ingest time never runs behind its own
watermark, so nothing is dropped for lateness; a duplicate is an event_id
seen again (for its tenant) within the window after the first copy arrived.

Batch: over a whole hour, keeping the first copy that arrived.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

DEDUP_KEY = ("tenant_id", "event_id")


def drop_duplicates_within_watermark(arrived: DataFrame, window: str) -> DataFrame:
    """``arrived`` must carry ``ingest_time`` (the batch timestamp) and ``dedup_key``."""
    return arrived.withWatermark("ingest_time", window).dropDuplicatesWithinWatermark(["dedup_key"])


def drop_duplicate_events(events: DataFrame) -> DataFrame:
    """Batch dedup by (tenant_id, event_id), deterministic: the earliest (timestamp, partition, offset)
    copy wins."""
    first = Window.partitionBy(*DEDUP_KEY).orderBy("kafka_timestamp", "kafka_partition", "kafka_offset")
    return events.withColumn("_copy", F.row_number().over(first)).where("_copy = 1").drop("_copy")
