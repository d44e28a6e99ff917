"""Delta maintenance with delta-spark's own commands: OPTIMIZE, checkpoint, VACUUM.

* **OPTIMIZE** the *closed* partitions (hours whose end + allowed lateness has passed; days of
  dead letters before today) of ``events_raw`` and ``events_rejected``: the stream leaves a few
  small files per hour partition every micro-batch. Compaction commits its new files with
  ``dataChange=false``, so streaming readers skip it and the dirty-hour index
  (tidemark/batch/lake_log.py, ``add`` actions with dataChange=true only) never sees new data: no
  hour becomes dirty. Delta skips partitions that are already one file, so a re-run is a no-op.
* **Checkpoint** each table at its latest version (readers and the stream load snapshots from it).
* **VACUUM** with ``TIDEMARK_VACUUM_RETENTION_HOURS`` (>= 168): removes files that a commit
  removed longer ago than that, and orphan files (written by a writer that died before its
  commit) older than that. Time travel to any version inside the retention keeps working. Delta
  4.4 ignores VACUUM's RETAIN clause unless ``vacuum.retentionWindowIgnore.enabled`` is false, so
  the job sets that for its own session rather than changing the tables' properties (a metadata
  commit would conflict with the stream's concurrent appends).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from tidemark.batch.lake import delta_files
from tidemark.config import Settings
from tidemark.object_store import delta_table
from tidemark.tiering.options import Boundaries

log = logging.getLogger(__name__)

RETENTION_WINDOW_CONF = "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled"


@dataclass
class TableMaintenance:
    table: str
    files_compacted: int = 0
    files_written: int = 0
    partitions_optimized: int = 0
    checkpoint_version: int | None = None
    vacuumed_files: int = 0
    seconds: float = 0.0


def closed_predicates(cfg: Settings, bounds: Boundaries) -> dict[str, tuple[str, str]]:
    """table -> (path, partition predicate of its closed partitions). The cold table is written
    compacted and needs no OPTIMIZE (None)."""
    day = f"DATE'{bounds.closed_day.isoformat()}'"
    raw = f"event_date < {day}"
    if bounds.closed_before.hour:
        raw = f"({raw} OR (event_date = {day} AND event_hour < {bounds.closed_before.hour}))"
    return {
        "events_raw": (cfg.lake.events_raw, raw),
        "events_rejected": (cfg.lake.events_rejected, f"ingest_date < {day}"),
        cfg.tiering.cold_table: (cfg.tiering.cold_path, ""),
    }


def _is_delta(spark, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def optimize(spark, path: str, predicate: str, result: TableMaintenance) -> None:
    metrics = spark.sql(f"OPTIMIZE delta.`{path}` WHERE {predicate}").first()["metrics"]
    result.files_compacted = int(metrics["numFilesRemoved"])
    result.files_written = int(metrics["numFilesAdded"])
    result.partitions_optimized = int(metrics["partitionsOptimized"])


def checkpoint(spark, path: str) -> int:
    """Write a checkpoint of the latest version (delta-spark's own, through its JVM API)."""
    delta_log = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
    delta_log.checkpoint()
    return int(delta_log.unsafeVolatileSnapshot().version())


def vacuum(spark, path: str, retention_hours: int) -> int:
    """VACUUM with the configured retention; returns the files it deleted."""
    spark.conf.set(RETENTION_WINDOW_CONF, "false")
    doomed = spark.sql(f"VACUUM delta.`{path}` RETAIN {retention_hours} HOURS DRY RUN").count()
    if doomed:
        spark.sql(f"VACUUM delta.`{path}` RETAIN {retention_hours} HOURS")
    return doomed


def run(spark, cfg: Settings, bounds: Boundaries) -> list[TableMaintenance]:
    results = []
    for name, (path, predicate) in closed_predicates(cfg, bounds).items():
        if not _is_delta(spark, path):
            continue
        started = time.monotonic()
        result = TableMaintenance(name)
        if predicate:
            optimize(spark, path, predicate, result)
        result.checkpoint_version = checkpoint(spark, path)
        result.vacuumed_files = vacuum(spark, path, cfg.tiering.vacuum_retention_hours)
        result.seconds = round(time.monotonic() - started, 2)
        log.info("delta table maintained", extra=result.__dict__)
        results.append(result)
    return results


def plan(cfg: Settings, bounds: Boundaries) -> dict:
    """What a run would do, from the Delta logs alone (delta-rs; no Spark): closed partitions with
    more than one small file, and the files VACUUM would delete."""
    out = {}
    small = cfg.tiering.small_file_bytes
    for name, (path, predicate) in closed_predicates(cfg, bounds).items():
        files = delta_files(path, cfg.object_store)
        if files is None:
            continue
        cols = [c for c in files.column_names if c.startswith("partition.")]
        data = files.select(["size_bytes", *cols]).to_pydict()
        per_partition: dict[tuple, int] = {}
        for i, size in enumerate(data["size_bytes"]):
            key = tuple(str(data[c][i]) for c in cols)
            if size < small and predicate and _closed(name, key, bounds):
                per_partition[key] = per_partition.get(key, 0) + 1
        compactable = {k: n for k, n in per_partition.items() if n > 1}
        doomed = delta_table(cfg.object_store, path).vacuum(
            retention_hours=cfg.tiering.vacuum_retention_hours, dry_run=True, full=True, enforce_retention_duration=True
        )
        out[name] = {
            "partitions_to_compact": len(compactable),
            "small_files_to_compact": sum(compactable.values()),
            "files_to_vacuum": len(doomed),
        }
    return out


def _closed(table: str, key: tuple, bounds: Boundaries) -> bool:
    day = key[0]
    if table == "events_raw":
        return day < bounds.closed_day.isoformat() or (
            day == bounds.closed_day.isoformat() and int(key[1]) < bounds.closed_before.hour
        )
    return day < bounds.closed_day.isoformat()


def summary(results: list[TableMaintenance]) -> dict:
    return {
        r.table: {
            "files_compacted": r.files_compacted,
            "files_written": r.files_written,
            "checkpoint_version": r.checkpoint_version,
            "vacuumed_files": r.vacuumed_files,
        }
        for r in results
    }
