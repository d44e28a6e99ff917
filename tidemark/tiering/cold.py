"""The cold tier: raw events older than ``TIDEMARK_LAKE_HOT_DAYS`` move from ``events_raw`` into a
compacted Delta table (``TIDEMARK_COLD_ROOT``/``TIDEMARK_COLD_TABLE``, partitioned by event date,
Z-ordered by tenant).

One day at a time, each step safe to kill:

1. read the day from ``events_raw`` at one pinned version and count it per hour;
2. write it into the cold table with ``replaceWhere`` on the day (a re-run rewrites the same day,
   never appends twice), in few large files, then ``OPTIMIZE ... ZORDER BY (tenant_id)``;
3. check that the cold day holds exactly the counted rows per hour, and that the hot day still
   holds exactly those (nothing landed since the pinned version);
4. ``DELETE`` the day from ``events_raw``: a whole-partition delete, i.e. one commit of ``remove``
   actions. A day killed before 4 is still entirely hot and is redone; after 4 it is entirely cold.

The delete is a data change in the Delta log, but it adds no files, so no hour becomes dirty
(tidemark/batch/lake_log.py indexes ``add`` actions only). Why the hot lake may lose these days at
all: the contract rejects events older than ``TIDEMARK_RETENTION_DAYS`` at arrival, and
``TIDEMARK_LAKE_HOT_DAYS`` must exceed it (checked in tidemark/config.py), so a cold day never
receives data again and the late-data DAG never looks at it. A recompute of a cold hour is refused
(``refuse_cold_hour``) rather than publishing an empty hour; the cold rows stay readable ad hoc:

    spark.read.format("delta").load(".../events_cold").where("event_date = '2026-10-01'")
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import date, datetime

from tidemark.config import Settings
from tidemark.tables import TableSchema, create_delta_table, table
from tidemark.tiering.inventory import delta_files
from tidemark.tiering.options import Boundaries

log = logging.getLogger(__name__)

TARGET_FILE_BYTES = 128 * 1024 * 1024  # the size cold files are written at (Delta's OPTIMIZE aims at 1 GB)


class ColdHourRefused(RuntimeError):
    """The hour's raw events are in the cold tier; the batch layer does not recompute cold hours."""


@dataclass
class DayMove:
    day: str
    hot_rows: int = 0
    cold_rows: int = 0
    files_before: int = 0
    files_after: int = 0
    moved: bool = False
    reason: str = ""
    seconds: float = 0.0


def cold_schema() -> TableSchema:
    """events_raw's columns, partitioned by day only: a cold day is a few large files."""
    raw = table("events_raw")
    return TableSchema(
        "events_cold",
        "Raw events older than TIDEMARK_LAKE_HOT_DAYS, moved from events_raw (compacted, Z-ordered by tenant).",
        ("event_date",),
        raw.columns,
    )


def hot_days_to_move(cfg: Settings, bounds: Boundaries) -> dict[date, tuple[int, int, int]]:
    """Days of events_raw before the lake boundary -> (rows, bytes, files), from the Delta log."""
    files = delta_files(cfg.lake.events_raw)
    out: dict[date, list[int]] = {}
    if files is None or files.num_rows == 0:
        return {}
    data = files.select(["partition.event_date", "size_bytes", "num_records"]).to_pydict()
    for day, size, rows in zip(data["partition.event_date"], data["size_bytes"], data["num_records"], strict=True):
        day = day if isinstance(day, date) else date.fromisoformat(str(day))
        if day < bounds.lake_from:
            acc = out.setdefault(day, [0, 0, 0])
            acc[0] += int(rows or 0)
            acc[1] += int(size)
            acc[2] += 1
    return {d: (v[0], v[1], v[2]) for d, v in sorted(out.items())}


def _per_hour(df) -> dict[int, int]:
    return {int(r["event_hour"]): int(r["count"]) for r in df.groupBy("event_hour").count().collect()}


def move_day(spark, cfg: Settings, day: date, hot_bytes: int) -> DayMove:
    from delta.tables import DeltaTable

    from tidemark.batch.lake import snapshot_version

    started = time.monotonic()
    raw, cold = cfg.lake.events_raw, cfg.tiering.cold_path
    result = DayMove(day.isoformat())
    where = f"event_date = DATE'{day.isoformat()}'"
    pinned = snapshot_version(spark, raw)
    hot = spark.read.format("delta").option("versionAsOf", pinned).load(raw).where(where)
    expected = _per_hour(hot)
    result.hot_rows = sum(expected.values())
    if not expected:
        result.reason = "nothing left in the hot lake"
        return result
    create_delta_table(spark, cold_schema(), cold)
    files = max(1, math.ceil(hot_bytes / TARGET_FILE_BYTES))
    (
        hot.select(*cold_schema().names)
        .repartition(files, "tenant_id")
        .sortWithinPartitions("tenant_id", "event_time")
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", where)
        .save(cold)
    )
    if cfg.tiering.cold_zorder:
        spark.sql(f"OPTIMIZE delta.`{cold}` WHERE {where} ZORDER BY (tenant_id)")
    log.info(
        "cold day written",
        extra={
            "day": result.day,
            "rows": result.hot_rows,
            "files": files,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    in_cold = _per_hour(spark.read.format("delta").load(cold).where(where))
    result.cold_rows = sum(in_cold.values())
    if in_cold != expected:
        raise RuntimeError(
            f"cold copy of {day} does not match the hot lake (hot {expected}, cold {in_cold}); "
            f"nothing was deleted from events_raw. Re-run the tiering job (the day is rewritten)"
        )
    still_hot = _per_hour(spark.read.format("delta").load(raw).where(where))
    if still_hot != expected:
        result.reason = (
            f"events_raw changed for {day} while it was copied ({sum(still_hot.values())} rows now, "
            f"{result.hot_rows} copied); kept hot, the next run copies it again"
        )
        log.warning("hot day changed during the move", extra={"day": result.day})
        return result
    DeltaTable.forPath(spark, raw).delete(where)
    result.moved, result.reason = True, "copied, verified, deleted from events_raw"
    result.seconds = round(time.monotonic() - started, 2)
    log.info(
        "cold day moved",
        extra={
            "day": result.day,
            "rows": result.hot_rows,
            "seconds": result.seconds,
            "rows_per_s": round(result.hot_rows / max(result.seconds, 1e-3)),
        },
    )
    return result


def run(spark, cfg: Settings, bounds: Boundaries) -> list[DayMove]:
    days = hot_days_to_move(cfg, bounds)
    results = []
    for i, (day, (_rows, size, files)) in enumerate(days.items(), 1):
        result = move_day(spark, cfg, day, size)
        result.files_before = files
        results.append(result)
        log.info("cold tier progress", extra={"day": result.day, "done": i, "of": len(days), "moved": result.moved})
    return results


def plan(cfg: Settings, bounds: Boundaries) -> dict:
    days = hot_days_to_move(cfg, bounds)
    return {
        "lake_from": bounds.lake_from.isoformat(),
        "days_to_move": len(days),
        "rows_to_move": sum(r for r, _b, _f in days.values()),
        "files_to_move": sum(f for _r, _b, f in days.values()),
    }


def summary(results: list[DayMove]) -> dict:
    return {
        "days_moved": sum(r.moved for r in results),
        "rows_moved": sum(r.hot_rows for r in results if r.moved),
        "days_kept": [f"{r.day}: {r.reason}" for r in results if not r.moved],
    }


def refuse_cold_hour(cfg: Settings, hour: datetime) -> None:
    """Raise ColdHourRefused when ``hour``'s day is in the cold table (called by the recompute when the
    hot lake has no files for the hour)."""
    files = delta_files(cfg.tiering.cold_path)
    if files is None or files.num_rows == 0:
        return
    days = {
        d if isinstance(d, date) else date.fromisoformat(str(d))
        for d in files.column("partition.event_date").to_pylist()
    }
    if hour.date() in days:
        raise ColdHourRefused(
            f"the raw events of {hour:%Y-%m-%dT%H} are in the cold tier ({cfg.tiering.cold_path}): hours older "
            f"than TIDEMARK_LAKE_HOT_DAYS={cfg.tiering.lake_hot_days} are not recomputed, their published "
            f"rollups stay as they are. To inspect them: spark.read.format('delta').load('{cfg.tiering.cold_path}')"
            f".where(\"event_date = '{hour:%Y-%m-%d}'\")"
        )
