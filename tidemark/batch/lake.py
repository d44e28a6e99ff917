"""The batch layer's reads of the Delta lake, through delta-spark.

One hour is read at one pinned table version (``versionAsOf``) with partition
pruning on ``(event_date, event_hour)``, so everything a run computes (rows,
the files it read, the version it records) describes the same snapshot even
while the stream keeps appending.
"""

from __future__ import annotations

from datetime import datetime, timezone


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
    root = table_root.rstrip("/") + "/"
    out = []
    for uri in df.inputFiles():
        path = uri.split(":", 1)[1] if uri.startswith("file:") else uri
        path = "/" + path.lstrip("/")
        out.append(path[len(root) :] if path.startswith(root) else path)
    return sorted(out)
