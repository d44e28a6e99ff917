"""Synthetic data for the tiering tests: raw events in a Delta lake of its own, and the rollups the
pipeline would have written for them in a ClickHouse database of its own (the hot-tier step drops
whole partitions, so it never runs against a database other tests share).

Days [FIRST_DAY, INTERVAL_END) hold events in HOURS of each day; each hour partition gets one file
per append (the stream's small files). Rollups per hour, written the way the pipeline writes them
(INSERT into rollup_input; publish = a registry row):
* every hour has streaming rows of a registered (current) loader stream;
* "published" hours also have a superseded batch version A and the current version B, which
  counts LATE_EXTRA more events than the stream saw (late data the batch layer picked up).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

from tidemark.config import LakeSettings, check_tiering
from tidemark.io.clickhouse import client, insert_rows
from tidemark.migrations import migrate
from tidemark.tables import ROLLUP_INPUT_COLUMNS

INTERVAL_END = datetime(2026, 11, 20, tzinfo=timezone.utc)
DAYS = 14
FIRST_DAY = (INTERVAL_END - timedelta(days=DAYS)).date()
HOURS = (1, 7, 13, 19)
TENANTS = ("tenant-a", "tenant-b")
LATE_EXTRA = 2
STREAM_EPOCH = 4242


def tiering_cfg(stack, lake_root, database: str, *, hot_days=7, lake_hot_days=10, retention_days=9):
    tiering = dataclasses.replace(
        stack.tiering,
        hot_days=hot_days,
        lake_hot_days=lake_hot_days,
        cold_root=str(lake_root),
        horizon_grace_s=0.0,  # no API reads these databases: the hot step need not wait before dropping
    )
    check_tiering(tiering, retention_days)
    return dataclasses.replace(
        stack,
        lake=LakeSettings(root=str(lake_root)),
        tiering=tiering,
        retention_days=retention_days,
        clickhouse=dataclasses.replace(stack.clickhouse, database=database),
    )


def fresh_database(cfg) -> None:
    client(cfg.clickhouse, database="default").execute(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
    migrate(cfg)


def drop_database(cfg) -> None:
    client(cfg.clickhouse, database="default").execute(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")


def all_hours(days=DAYS, first_day: date = FIRST_DAY) -> list[datetime]:
    return [
        datetime(d.year, d.month, d.day, h, tzinfo=timezone.utc)
        for d in (first_day + timedelta(days=i) for i in range(days))
        for h in HOURS
    ]


def is_published(hour: datetime) -> bool:
    return hour.day % 2 == 0 and hour.hour in (1, 7)


def events(hours, per_hour: int, seed: str = "") -> list[tuple]:
    """Raw events (events_raw column order)."""
    rows = []
    for hour in hours:
        for i in range(per_hour):
            t = hour + timedelta(minutes=(i * 7) % 60, seconds=i % 60)
            rows.append(
                (
                    str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}{hour.isoformat()}-{i}")),
                    TENANTS[i % 2],
                    t,
                    f"u-{i % 9}",
                    "s1",
                    ("US", "DE")[i % 3 == 0],
                    ("desktop", "mobile")[i % 2 == 0],
                    ("/a", "/b")[i % 4 == 0],
                    None,
                    1,
                    False,
                    "page_views",
                    0,
                    i,
                    t,
                    t,
                    0,
                    hour.date(),
                    hour.hour,
                )
            )
    return rows


def write_lake(spark, cfg, rows, appends: int = 3) -> int:
    """Append ``rows`` in ``appends`` commits (small files); returns the table's version after."""
    from tidemark.batch.lake import snapshot_version
    from tidemark.tables import ensure_delta_table, table

    schema = table("events_raw")
    ensure_delta_table(spark, "events_raw", cfg.lake.events_raw)
    for k in range(appends):
        part = rows[k::appends]
        (
            spark.createDataFrame(part, schema.spark())
            .coalesce(1)
            .write.format("delta")
            .mode("append")
            .partitionBy(*schema.partition_by)
            .save(cfg.lake.events_raw)
        )
    return snapshot_version(spark, cfg.lake.events_raw)


def _rollup_rows(layer: str, version: int, rows) -> list[tuple]:
    groups = defaultdict(list)
    for r in rows:
        minute = r[2].replace(second=0, microsecond=0)
        groups[(r[1], minute, r[5], r[6], r[7])].append(r[3])
    return [(layer, version, t, m, c, d, p, len(users), users) for (t, m, c, d, p), users in groups.items()]


def write_rollups(cfg, rows, delta_version: int) -> dict[datetime, int]:
    """Rollups for the raw ``rows``; returns the current batch version of each published hour."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    from tidemark.stream.sink import register_loader

    register_loader(ch, db, "tiering-test-loader", STREAM_EPOCH, 10)
    by_hour = defaultdict(list)
    for r in rows:
        by_hour[r[2].replace(minute=0, second=0, microsecond=0)].append(r)
    registry, current, inputs = [], {}, []
    for n, (hour, hour_rows) in enumerate(sorted(by_hour.items())):
        inputs += _rollup_rows("stream", STREAM_EPOCH * 1_000_000_000 + n % 10, hour_rows[:-LATE_EXTRA])
        if is_published(hour):
            old, new = 1000 + n, 5000 + n
            inputs += _rollup_rows("batch", old, hour_rows[:-LATE_EXTRA]) + _rollup_rows("batch", new, hour_rows)
            for version, dv, lag in ((old, delta_version - 1, 2), (new, delta_version, 3)):
                at = hour + timedelta(hours=lag)
                registry.append(
                    (
                        hour,
                        version,
                        "published",
                        at,
                        int(at.timestamp() * 1e6),
                        dv,
                        len(hour_rows),
                        len(hour_rows),
                        0,
                        0,
                        "tiering-test",
                        "",
                        "",
                    )
                )
            current[hour] = new
    insert_rows(ch, f"{db}.rollup_input", ROLLUP_INPUT_COLUMNS, inputs)
    from tidemark.batch.registry import REGISTRY_COLUMNS

    insert_rows(ch, f"{db}.published_hours", REGISTRY_COLUMNS, registry)
    return current


def merged_hour_totals(cfg, table: str, start: datetime, end: datetime) -> dict[tuple, tuple[int, int]]:
    """(tenant, hour epoch) -> (events, users) through the lambda merge."""
    from tidemark.lambda_merge import merged_filter, snapshot

    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    snap = snapshot(ch, db, start, end)
    if table == "minute_rollups":
        hour, where, users = (
            "toUInt32(toStartOfHour(minute))",
            "minute >= toDateTime(%(s)s) AND minute < toDateTime(%(e)s)",
            "uniqCombinedMerge(users)",
        )
    else:
        hour, where = "toUInt32(hour)", "dimension = 'all' AND hour >= toDateTime(%(s)s) AND hour < toDateTime(%(e)s)"
        users = "uniqCombinedMerge(15)(users)" if table == "day_rollups" else "uniqCombinedMerge(users)"
    rows = ch.execute(
        f"SELECT tenant_id, {hour} AS h, sum(events), {users} FROM {db}.{table} WHERE {where} "
        f"AND {merged_filter(hour)} GROUP BY tenant_id, h",
        {"s": int(start.timestamp()), "e": int(end.timestamp()), **snap.params()},
    )
    return {(t, int(h)): (int(e), int(u)) for t, h, e, u in rows}


def minute_partitions(cfg) -> list[str]:
    return sorted(
        p
        for (p,) in client(cfg.clickhouse).execute(
            "SELECT DISTINCT partition FROM system.parts WHERE database = %(db)s AND table = "
            "'minute_rollups' AND active",
            {"db": cfg.clickhouse.database},
        )
    )


def lake_counts(spark, path: str, version: int | None = None) -> dict[str, int]:
    """event_date -> rows (optionally at a version)."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return {}
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return {str(r["event_date"]): int(r["count"]) for r in reader.load(path).groupBy("event_date").count().collect()}


def lake_ids(spark, path: str) -> set[str]:
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return set()
    return {r[0] for r in spark.read.format("delta").load(path).select("event_id").collect()}


def lake_keys(spark, path: str, day: str | None = None):
    """Counter of (tenant_id, event_id) -> rows, the whole table or one event_date."""
    from collections import Counter

    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return Counter()
    df = spark.read.format("delta").load(path)
    if day is not None:
        df = df.where(f"event_date = DATE'{day}'")
    return Counter((r[0], r[1]) for r in df.select("tenant_id", "event_id").collect())
