"""ClickHouse care: remove what no reader counts any more, merge closed partitions, watch parts.

* **Superseded batch versions**: ``publication.cleanup`` per hour that still has a version other
  than its current one (it owns the safe rules: never the current version, superseded ones only
  after SUPERSEDED_GRACE, a live run's staging never).
* **Streaming rows of published hours**: once an hour has been published (readers then count its
  batch rows only) for longer than ``TIDEMARK_STREAM_ROWS_GRACE_S``, and its current version's rows
  are present, its streaming rows are deleted. Streaming rows of unpublished hours always stay:
  they are what readers count. Streaming rows of superseded stream identities go through
  ``stream_identities.retire``.
* **OPTIMIZE ... FINAL** of closed partitions that have more than one part.
* **Parts watch**: ClickHouse delays inserts at 150 active parts in a partition and refuses them at
  300 (parts_to_delay_insert / parts_to_throw_insert); above ``TIDEMARK_PARTS_ALERT`` (100) is an alert.

Every action is a no-op when there is nothing to do, so a re-run after a kill repeats nothing.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from tidemark.batch import publication, registry
from tidemark.config import Settings
from tidemark.io.clickhouse import client
from tidemark.stream import identity as stream_identities
from tidemark.tiering.options import Boundaries

log = logging.getLogger(__name__)

ROLLUP_TABLES = ("minute_rollups", "hour_rollups", "day_rollups")
_HOUR_OF = {
    "minute_rollups": "toUInt32(toStartOfHour(minute))",
    "hour_rollups": "toUInt32(hour)",
    "day_rollups": "toUInt32(hour)",
}
_PARTITION = re.compile(r"^\d{6}(\d{2})?$")  # toYYYYMM or toYYYYMMDD
MUTATION_TIMEOUT_S = 600
CHUNK_HOURS = 500  # hours per DELETE mutation


@dataclass
class CareResult:
    stale_version_hours: int = 0
    versions_removed: int = 0
    stream_hours: int = 0
    stream_rows_deleted: int = 0
    streams_retired: dict = field(default_factory=dict)
    partitions_optimized: list = field(default_factory=list)
    parts_alerts: list = field(default_factory=list)


def _hours(rows) -> list[datetime]:
    return [datetime.fromtimestamp(int(h), timezone.utc) for h in rows]


# -- superseded batch versions -------------------------------------------------------------------


def hours_with_stale_versions(cfg: Settings) -> dict[datetime, set[int]]:
    """Hours whose rollup tables hold a batch version other than the hour's current one."""
    db = cfg.clickhouse.database
    union = " UNION ALL ".join(
        f"SELECT {_HOUR_OF[t]} AS h, version FROM {db}.{t} WHERE layer = 'batch' GROUP BY h, version"
        for t in ROLLUP_TABLES
    )
    rows = client(cfg.clickhouse).execute(f"SELECT h, groupUniqArray(version) FROM ({union}) GROUP BY h")
    present = {datetime.fromtimestamp(int(h), timezone.utc): set(map(int, vs)) for h, vs in rows}
    current = registry.current(cfg, list(present))
    stale = {}
    for hour, versions in present.items():
        others = versions - ({current[hour].version} if hour in current else set())
        if others:
            stale[hour] = others
    return stale


def remove_superseded(cfg: Settings, bounds: Boundaries, result: CareResult, *, dry_run: bool) -> None:
    stale = hours_with_stale_versions(cfg)
    result.stale_version_hours = len(stale)
    if dry_run:
        return
    for i, hour in enumerate(sorted(stale), 1):
        result.versions_removed += len(publication.cleanup(cfg, hour, now=bounds.reader_now))
        if i % 100 == 0:
            log.info("removing superseded versions", extra={"hours": i, "of": len(stale)})


# -- streaming rows of published hours -----------------------------------------------------------


def published_stream_hours(cfg: Settings, bounds: Boundaries) -> list[datetime]:
    """Hours with streaming rows, first published before reader_now - grace, whose current
    version's rows are present (so readers have had batch rows to read all along)."""
    db = cfg.clickhouse.database
    ch = client(cfg.clickhouse)
    cutoff = bounds.reader_now - timedelta(seconds=cfg.tiering.stream_rows_grace_s)
    with_stream = _hours(
        h
        for (h,) in ch.execute(
            f"SELECT DISTINCT toUInt32(hour) FROM {db}.hour_rollups WHERE layer = 'stream' AND dimension = 'all'"
        )
    )
    if not with_stream:
        return []
    # Compared in SQL, as epoch seconds: 18.16 types min(DateTime('UTC')) as a plain DateTime, which
    # the driver returns naive or aware depending on the client's time zone.
    published_long_ago = _hours(
        h
        for (h,) in ch.execute(
            f"SELECT toUInt32(hour) FROM {db}.published_hours WHERE status = 'published' AND hour IN %(h)s "
            f"GROUP BY hour HAVING toUInt32(min(published_at)) <= %(cutoff)s",
            {"h": tuple(int(h.timestamp()) for h in with_stream), "cutoff": int(cutoff.timestamp())},
        )
    )
    current = registry.current(cfg, published_long_ago)
    eligible = list(current)
    if not eligible:
        return []
    present = {
        (int(h), int(v))
        for h, v in ch.execute(
            f"SELECT DISTINCT toUInt32(hour), version FROM {db}.hour_rollups WHERE layer = 'batch' "
            f"AND dimension = 'all' AND hour IN %(h)s",
            {"h": tuple(int(h.timestamp()) for h in eligible)},
        )
    }
    return sorted(h for h in eligible if (int(h.timestamp()), current[h].version) in present)


def delete_stream_rows(cfg: Settings, hours: list[datetime], bounds: Boundaries) -> int:
    """Delete the streaming rows of ``hours`` from every rollup table and wait until gone. Minute
    rows of days leaving the hot tier are left to the partition drop."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    hot_from = int(
        datetime(bounds.hot_from.year, bounds.hot_from.month, bounds.hot_from.day, tzinfo=timezone.utc).timestamp()
    )
    deleted, pending = 0, []
    for i in range(0, len(hours), CHUNK_HOURS):
        p = {"h": tuple(int(h.timestamp()) for h in hours[i : i + CHUNK_HOURS]), "hot": hot_from}
        for table in ROLLUP_TABLES:
            cond = f"layer = 'stream' AND {_HOUR_OF[table]} IN %(h)s"
            if table == "minute_rollups":
                cond += " AND minute >= toDateTime(%(hot)s)"
            ((n,),) = ch.execute(f"SELECT count() FROM {db}.{table} WHERE {cond}", p)
            if n:
                ch.execute(f"ALTER TABLE {db}.{table} DELETE WHERE {cond}", p)
                deleted += n
                pending.append((table, cond, p))
    deadline = time.monotonic() + MUTATION_TIMEOUT_S
    while any(ch.execute(f"SELECT count() FROM {db}.{t} WHERE {c}", p)[0][0] for t, c, p in pending):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"streaming rows of published hours not deleted after {MUTATION_TIMEOUT_S}s; "
                f"check system.mutations in ClickHouse (database {db})"
            )
        time.sleep(0.5)
    return deleted


# -- partitions ----------------------------------------------------------------------------------


def _partition_end(partition: str) -> date:
    y, m = int(partition[:4]), int(partition[4:6])
    if len(partition) == 8:
        return date(y, m, int(partition[6:])) + timedelta(days=1)
    return date(y + (m == 12), m % 12 + 1, 1)


def parts_per_partition(cfg: Settings) -> list[tuple[str, str, int]]:
    return [
        (t, str(p), int(n))
        for t, p, n in client(cfg.clickhouse).execute(
            "SELECT table, partition, count() FROM system.parts WHERE database = %(db)s AND active "
            "GROUP BY table, partition ORDER BY count() DESC",
            {"db": cfg.clickhouse.database},
        )
    ]


def optimize_closed(cfg: Settings, bounds: Boundaries, *, dry_run: bool) -> list[str]:
    """OPTIMIZE FINAL each closed rollup partition with more than one active part."""
    ch = client(cfg.clickhouse, send_receive_timeout=1800)
    db = cfg.clickhouse.database
    done = []
    for table, partition, parts in parts_per_partition(cfg):
        if table not in ROLLUP_TABLES or parts < 2 or not _PARTITION.match(partition):
            continue
        if _partition_end(partition) > bounds.closed_day:
            continue
        if not dry_run:
            started = time.monotonic()
            ch.execute(f"OPTIMIZE TABLE {db}.{table} PARTITION {partition} FINAL")
            log.info(
                "optimized partition",
                extra={
                    "table": table,
                    "partition": partition,
                    "parts": parts,
                    "seconds": round(time.monotonic() - started, 2),
                },
            )
        done.append(f"{table}/{partition}")
    return done


def parts_alerts(cfg: Settings) -> list[str]:
    limit = cfg.tiering.parts_alert
    return [
        f"{t} partition {p} has {n} active parts (alert above {limit}; ClickHouse delays inserts at 150 and "
        f"refuses them at 300): look for a writer inserting tiny batches, then OPTIMIZE the partition"
        for t, p, n in parts_per_partition(cfg)
        if n > limit
    ]


def run(cfg: Settings, bounds: Boundaries, *, dry_run: bool = False) -> CareResult:
    result = CareResult()
    remove_superseded(cfg, bounds, result, dry_run=dry_run)
    hours = published_stream_hours(cfg, bounds)
    result.stream_hours = len(hours)
    if hours and not dry_run:
        result.stream_rows_deleted = delete_stream_rows(cfg, hours, bounds)
    if dry_run:
        result.streams_retired = {
            i.stream_id: "would retire" for i in stream_identities.superseded(cfg, now=bounds.reader_now)
        }
    else:
        result.streams_retired = stream_identities.retire(cfg, now=bounds.reader_now)
    result.partitions_optimized = optimize_closed(cfg, bounds, dry_run=dry_run)
    result.parts_alerts = parts_alerts(cfg)
    for alert in result.parts_alerts:
        log.error("too many parts ahead", extra={"alert": alert})
    return result


def summary(result: CareResult) -> dict:
    return {
        "stale_version_hours": result.stale_version_hours,
        "versions_removed": result.versions_removed,
        "published_hours_with_stream_rows": result.stream_hours,
        "stream_rows_deleted": result.stream_rows_deleted,
        "streams_retired": result.streams_retired,
        "partitions_optimized": len(result.partitions_optimized),
        "parts_alerts": len(result.parts_alerts),
    }
