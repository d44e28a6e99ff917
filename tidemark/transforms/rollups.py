"""Rollups shared by the speed and batch layers (the same code, not a copy).

``minute_rollups`` gives one row per (tenant, minute, country, device, page)
with the event count and the set of distinct users. ClickHouse turns the user
sets into mergeable uniqCombined states (see schemas/clickhouse/001_rollups.sql),
so distinct users can be merged across minutes, hours and days.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

ROLLUP_KEY = ("tenant_id", "minute", "country", "device", "page")
ROLLUP_COLUMNS = ROLLUP_KEY + ("events", "user_ids")


def minute_rollups(events: DataFrame) -> DataFrame:
    return (
        events.withColumn("minute", F.date_trunc("minute", "event_time"))
        .groupBy(*ROLLUP_KEY)
        .agg(F.count(F.lit(1)).alias("events"), F.array_sort(F.collect_set("user_id")).alias("user_ids"))
    )


def late_event_hours(events: DataFrame) -> DataFrame:
    """Late events per (tenant, event hour): the hours the batch layer must recompute."""
    return (
        events.where("is_late")
        .groupBy("tenant_id", F.date_trunc("hour", "event_time").alias("event_hour"))
        .agg(F.count(F.lit(1)).alias("late_events"), F.max("ingest_time").alias("last_ingest_time"))
    )


def rejected_by_reason(rejected: DataFrame) -> DataFrame:
    return rejected.groupBy("reason").agg(F.count(F.lit(1)).alias("rejected"))
