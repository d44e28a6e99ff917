"""Kafka records -> validated rows (valid events and dead letters side by side).

The contract lives in ``tidemark.contract``; this module only applies it to
Arrow batches on the executors (``mapInArrow``), so one bad record never
fails a batch: it becomes a row with a ``reason``.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Iterator

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

VALIDATED_SCHEMA = T.StructType([
    T.StructField("event_id", T.StringType()),
    T.StructField("tenant_id", T.StringType()),
    T.StructField("event_time", T.TimestampType()),
    T.StructField("user_id", T.StringType()),
    T.StructField("session_id", T.StringType()),
    T.StructField("country", T.StringType()),
    T.StructField("device", T.StringType()),
    T.StructField("page", T.StringType()),
    T.StructField("referrer", T.StringType()),
    T.StructField("schema_version", T.IntegerType()),
    T.StructField("reason", T.StringType()),       # null when valid
    T.StructField("detail", T.StringType()),
    T.StructField("raw_payload", T.BinaryType()),  # kept for dead letters only
    T.StructField("raw_key", T.BinaryType()),
    T.StructField("kafka_topic", T.StringType()),
    T.StructField("kafka_partition", T.IntegerType()),
    T.StructField("kafka_offset", T.LongType()),
    T.StructField("kafka_timestamp", T.TimestampType()),
    T.StructField("dedup_key", T.StringType()),    # event_id, or topic/partition/offset for dead letters
])

_EVENT_FIELDS = ("event_id", "tenant_id", "event_time", "user_id", "session_id", "country", "device", "page",
                 "referrer", "schema_version")


def _validate_batches(max_payload_bytes: int, max_future_skew_s: int, retention_days: int):
    """Build the executor-side function (closes over plain values only, so it pickles)."""

    def run(batches: Iterator) -> Iterator:
        import pyarrow as pa

        from tidemark.contract import InvalidEvent, validate

        skew = timedelta(seconds=max_future_skew_s)
        retention = timedelta(days=retention_days)
        schema = _arrow_schema()
        for batch in batches:
            cols = {name: [] for name in schema.names}
            values = batch.column("value").to_pylist()
            keys = batch.column("key").to_pylist()
            topics = batch.column("topic").to_pylist()
            partitions = batch.column("partition").to_pylist()
            offsets = batch.column("offset").to_pylist()
            stamps = batch.column("timestamp").to_pylist()
            for value, key, topic, partition, offset, stamp in zip(values, keys, topics, partitions, offsets, stamps):
                try:
                    ev = validate(value, stamp, max_payload_bytes=max_payload_bytes,
                                  max_future_skew=skew, retention=retention)
                except InvalidEvent as exc:
                    for name in _EVENT_FIELDS:
                        cols[name].append(None)
                    cols["reason"].append(exc.reason)
                    cols["detail"].append(exc.detail[:500])
                    cols["raw_payload"].append(value)
                    cols["dedup_key"].append(f"{topic}/{partition}/{offset}")
                else:
                    for name in _EVENT_FIELDS:
                        cols[name].append(getattr(ev, name))
                    cols["reason"].append(None)
                    cols["detail"].append(None)
                    cols["raw_payload"].append(None)
                    cols["dedup_key"].append(ev.event_id)
                cols["raw_key"].append(key)
                cols["kafka_topic"].append(topic)
                cols["kafka_partition"].append(partition)
                cols["kafka_offset"].append(offset)
                cols["kafka_timestamp"].append(stamp)
            yield pa.RecordBatch.from_pydict(cols, schema=schema)

    return run


def _arrow_schema():
    import pyarrow as pa

    types = {T.StringType: pa.string(), T.TimestampType: pa.timestamp("us", tz="UTC"),
             T.IntegerType: pa.int32(), T.LongType: pa.int64(), T.BinaryType: pa.binary()}
    return pa.schema([pa.field(f.name, types[type(f.dataType)]) for f in VALIDATED_SCHEMA.fields])


def validate_records(records: DataFrame, *, max_payload_bytes: int = 65536, max_future_skew_s: int = 300,
                     retention_days: int = 30) -> DataFrame:
    """Kafka-shaped rows (key, value, topic, partition, offset, timestamp) -> VALIDATED_SCHEMA rows."""
    return records.select("key", "value", "topic", "partition", "offset", "timestamp").mapInArrow(
        _validate_batches(max_payload_bytes, max_future_skew_s, retention_days), VALIDATED_SCHEMA)


def valid_events(validated: DataFrame, allowed_lateness_s: int) -> DataFrame:
    """Valid rows with partition columns and the late flag (arrival minus event time > allowed lateness)."""
    lateness = F.col("kafka_timestamp").cast("double") - F.col("event_time").cast("double")
    return (
        validated.where(F.col("reason").isNull())
        .withColumn("is_late", lateness > F.lit(float(allowed_lateness_s)))
        .withColumn("event_date", F.to_date("event_time"))
        .withColumn("event_hour", F.hour("event_time"))
    )


def rejected_events(validated: DataFrame) -> DataFrame:
    return validated.where(F.col("reason").isNotNull())
