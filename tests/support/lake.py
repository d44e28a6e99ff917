"""The Delta lake for tests: raw events written straight into events_raw, as a late arrival, a
corrupt writer or a test's exact rows would land there."""

from __future__ import annotations


def append_raw(spark, cfg, rows: list[tuple]) -> None:
    """Append ``rows`` (events_raw's columns, in order) to the lake's events_raw in one Delta commit."""
    from tidemark.tables import ensure_delta_table, table

    schema = table("events_raw")
    ensure_delta_table(spark, "events_raw", cfg.lake.events_raw)
    spark.createDataFrame(rows, schema.spark()).write.format("delta").mode("append").partitionBy(
        *schema.partition_by
    ).save(cfg.lake.events_raw)
