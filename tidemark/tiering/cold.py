"""The cold tier: raw events older than ``TIDEMARK_LAKE_HOT_DAYS`` move from ``events_raw`` into a
compacted Delta table (``TIDEMARK_COLD_ROOT``/``TIDEMARK_COLD_TABLE``, partitioned by event date,
Z-ordered by tenant).

A cold day can receive data again: a fresh checkpoint replaying the topic from ``earliest``, a stream
down for longer than the gap between the acceptance window and the hot-lake window, or producer
timestamps all land events of old days in ``events_raw``. So the cold table is only ever added to,
never replaced, and nothing leaves the hot lake before it is in the cold table. An event is
``EVENT_KEY`` = (tenant_id, event_id), the pipeline's dedup key. One day at a time, each step safe to
kill and to re-run:

1. read the day from ``events_raw`` at one pinned version;
2. ``MERGE`` it into the cold day, inserting the rows whose key the cold day does not hold yet
   (``whenNotMatchedInsertAll``: a re-run, or a replay of events already cold, adds nothing), then
   ``OPTIMIZE ... ZORDER BY (tenant_id)`` the day if anything was added;
3. check the union: every row read in 1 has its key in the cold day;
4. delete from ``events_raw`` the day's rows whose key is in the cold day (a delete-only ``MERGE``
   against the cold day's keys). A row that landed after 1 and is not cold yet stays hot for the
   next run; a predicate delete of the whole day would take it with it. Killed before 4, the day is
   whole in the hot lake (and partly or wholly cold, so the re-run adds only what is missing); after
   4, every event of it is in the cold table.

Both MERGEs read the partition they change, so Delta's conflict check makes two concurrent moves of
one day fail rather than double rows. The delete removes whole files (every row of a hot file is
cold), so it adds no data files and no hour becomes dirty (tidemark/batch/lake_log.py indexes ``add``
actions only); only a hot file that also holds rows not yet cold is rewritten. A recompute of a cold
hour is refused (``tidemark.batch.lake.refuse_cold_hour``) rather than publishing an empty hour; the cold rows stay
readable ad hoc:

    spark.read.format("delta").load(".../events_cold").where("event_date = '2026-10-01'")
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from tidemark.batch.lake import delta_files, snapshot_version
from tidemark.config import ObjectStoreSettings, Settings
from tidemark.tables import TableSchema, create_delta_table, table
from tidemark.tiering.options import Boundaries
from tidemark.transforms.dedup import DEDUP_KEY

log = logging.getLogger(__name__)

TARGET_FILE_BYTES = 1024 * 1024 * 1024  # what Delta's OPTIMIZE aims at: more files per day means not compacted yet
EVENT_KEY = DEDUP_KEY  # what identifies an event: the dedup key of both layers


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
    files = delta_files(cfg.lake.events_raw, cfg.object_store)
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


def _key_match(target: str, source: str, day: date) -> str:
    """MERGE condition: same event, and the target pruned to the day's partition."""
    same = " AND ".join(f"{target}.{k} = {source}.{k}" for k in EVENT_KEY)
    return f"{target}.event_date = DATE'{day.isoformat()}' AND {same}"


def _merged(metrics, column: str) -> int:
    """One figure of the DataFrame of metrics a delta-spark MERGE returns."""
    row = metrics.first()
    return int((row.asDict() if row is not None else {}).get(column) or 0)


def move_day(
    spark, cfg: Settings, day: date, hot_bytes: int, *, after_copy: Callable[[], None] | None = None
) -> DayMove:
    """Move one day (see the module docstring). ``after_copy`` runs between the cold write and the hot
    delete (tests use it to land rows mid-move)."""
    from delta.tables import DeltaTable

    started = time.monotonic()
    raw, cold = cfg.lake.events_raw, cfg.tiering.cold_path
    result = DayMove(day.isoformat())
    where = f"event_date = DATE'{day.isoformat()}'"
    pinned = snapshot_version(spark, raw)
    hot = spark.read.format("delta").option("versionAsOf", pinned).load(raw).where(where)
    result.hot_rows = hot.count()
    if not result.hot_rows:
        result.reason = "nothing left in the hot lake"
        return result
    create_delta_table(spark, cold_schema(), cold)
    inserted = _merged(
        DeltaTable.forPath(spark, cold)
        .alias("c")
        .merge(hot.select(*cold_schema().names).alias("h"), _key_match("c", "h", day))
        .whenNotMatchedInsertAll()
        .execute(),
        "num_inserted_rows",
    )
    if cfg.tiering.cold_zorder and (
        inserted or _files(cold, day, cfg.object_store) > math.ceil(hot_bytes / TARGET_FILE_BYTES)
    ):
        spark.sql(f"OPTIMIZE delta.`{cold}` WHERE {where} ZORDER BY (tenant_id)")
    cold_day = spark.read.format("delta").load(cold).where(where)
    log.info(
        "cold day written",
        extra={
            "day": result.day,
            "rows": result.hot_rows,
            "inserted": inserted,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    missing = hot.select(*EVENT_KEY).join(cold_day.select(*EVENT_KEY), list(EVENT_KEY), "left_anti").count()
    result.cold_rows = cold_day.count()
    if missing:
        raise RuntimeError(
            f"{missing} of the {result.hot_rows} hot rows of {day} are not in the cold table after the merge "
            f"({cold}); nothing was deleted from events_raw. Re-run the tiering job (the merge adds what is missing)"
        )
    if after_copy is not None:
        after_copy()
    deleted = _merged(
        DeltaTable.forPath(spark, raw)
        .alias("h")
        .merge(cold_day.select(*EVENT_KEY).distinct().alias("c"), _key_match("h", "c", day))
        .whenMatchedDelete()
        .execute(),
        "num_deleted_rows",
    )
    left = spark.read.format("delta").load(raw).where(where).count()
    result.moved = True
    result.reason = "merged, verified, deleted from events_raw"
    if left:
        result.reason += f"; {left} rows that landed during the move stay hot until the next run"
        log.warning("rows landed in a day being moved; kept hot", extra={"day": result.day, "rows": left})
    result.seconds = round(time.monotonic() - started, 2)
    log.info(
        "cold day moved",
        extra={
            "day": result.day,
            "rows": result.hot_rows,
            "inserted": inserted,
            "deleted": deleted,
            "seconds": result.seconds,
            "rows_per_s": round(result.hot_rows / max(result.seconds, 1e-3)),
        },
    )
    return result


def _files(path: str, day: date, store: ObjectStoreSettings | None) -> int:
    """Live files of one day of the cold table (a day killed between its merge and OPTIMIZE has many)."""
    files = delta_files(path, store)
    if files is None:
        return 0
    return sum(1 for d in files.column("partition.event_date").to_pylist() if str(d) == day.isoformat())


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
