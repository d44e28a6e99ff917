"""Reads of the Delta lake: the batch layer's pinned hour reads, and the facts about the lake that
the layers above it share (its live files, which days are cold).

One hour is read at one pinned table version (``versionAsOf``) with partition
pruning on ``(event_date, event_hour)``, so everything a run computes (rows,
the files it read, the version it records) describes the same snapshot even
while the stream keeps appending.

``hour_snapshot`` takes the version and the hour's file list from one snapshot read by delta-rs
(native, from the last checkpoint: a fraction of a second for tens of thousands of files), and
the data through delta-spark pinned to that version: the log is replayed once by each, instead of
three times by Spark (history, the pinned read, its input-file list).

Whether a day is cold (moved to the cold table by tidemark/tiering/cold.py) is a fact about the
lake, so it is answered here: the batch layer refuses to recompute a cold hour
(``refuse_cold_hour``) without knowing the tiering layer above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from tidemark.config import ObjectStoreSettings, Settings
from tidemark.errors import TidemarkError
from tidemark.object_store import delta_table, is_delta_table, object_key


class ColdHourRefused(TidemarkError, RuntimeError):
    """The hour's raw events are in the cold tier; the batch layer does not recompute cold hours."""


@dataclass(frozen=True)
class HourSnapshot:
    version: int | None  # None: no table at the path yet
    files: list[str]  # the hour's data files, relative to the table root, sorted
    events: Any  # the hour's rows as of ``version`` (a Spark DataFrame), None without a table


def hour_snapshot(spark, path: str, hour: datetime, store: ObjectStoreSettings | None = None) -> HourSnapshot:
    """Version, files and data of one event hour, all from the table's latest snapshot (``store``:
    how to reach an s3a:// path)."""
    from deltalake.exceptions import TableNotFoundError

    try:
        table = delta_table(store, path)
    except TableNotFoundError:
        return HourSnapshot(None, [], None)
    hour = hour.astimezone(timezone.utc)
    uris = table.file_uris(
        file_pruning_predicate=[("event_date", "=", f"{hour:%Y-%m-%d}"), ("event_hour", "=", str(hour.hour))]
    )
    version = table.version()
    return HourSnapshot(version, relative(uris, path), hour_events(spark, path, hour, version))


def snapshot_version(spark, path: str) -> int | None:
    """The table's latest committed version, or None if no table exists there yet."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    newest = DeltaTable.forPath(spark, path).history(1).select("version").first()
    return None if newest is None else int(newest[0])  # a table without history is no table yet


def hour_predicate(hour: datetime) -> str:
    """Partition filter of one UTC event hour (the layout of events_raw)."""
    hour = hour.astimezone(timezone.utc)
    return f"event_date = DATE'{hour:%Y-%m-%d}' AND event_hour = {hour.hour}"


def hour_events(spark, path: str, hour: datetime, version: int):
    """events_raw rows of one event hour, as of table ``version`` (partition-pruned)."""
    return spark.read.format("delta").option("versionAsOf", version).load(path).where(hour_predicate(hour))


def relative_files(df, table_root: str) -> list[str]:
    """The data files a (pruned) Delta read touches, relative to the table root: the same
    names wherever the lake is mounted."""
    return relative(df.inputFiles(), table_root)


def relative(uris, table_root: str) -> list[str]:
    """File URIs or absolute paths relative to the table root, sorted."""
    root = object_key(table_root).rstrip("/") + "/"
    out = []
    for uri in uris:
        path = object_key(uri)
        out.append(path[len(root) :] if path.startswith(root) else path)
    return sorted(out)


def delta_files(path: str, store: ObjectStoreSettings | None = None):
    """The live data files of a Delta table as a pyarrow Table (None when there is no table)."""
    import pyarrow as pa

    if not is_delta_table(store, path):
        return None
    return pa.table(delta_table(store, path).get_add_actions(flatten=True))


def refuse_cold_hour(cfg: Settings, hour: datetime) -> None:
    """Raise ColdHourRefused when ``hour``'s day is in the cold table (called by the recompute when the
    hot lake has no files for the hour)."""
    files = delta_files(cfg.tiering.cold_path, cfg.object_store)
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
