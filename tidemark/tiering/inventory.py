"""How much each tier holds: rows, bytes, files and small files per partition.

Delta tables are measured from their snapshot's file list (delta-rs reads the log; no data is
read and no Spark is needed, so a dry run stays cheap). ClickHouse tables from ``system.parts``
(active parts only: a part is ClickHouse's file set). Only live files count: files a commit
removed but VACUUM has not deleted yet are not part of any tier.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

from tidemark.batch.lake import delta_files
from tidemark.config import ObjectStoreSettings, Settings
from tidemark.io.clickhouse import client

# tier -> ClickHouse tables in it
CLICKHOUSE_TIERS = {"hot": ("minute_rollups",), "warm": ("hour_rollups", "day_rollups")}


@dataclass(frozen=True)
class PartitionStats:
    tier: str  # hot | warm | lake_hot | lake_rejected | lake_cold
    table: str
    partition: str  # ClickHouse partition id, or the Delta partition path (event_date=.../event_hour=...)
    rows: int
    bytes: int
    files: int
    small_files: int

    def as_dict(self) -> dict:
        return asdict(self)


def delta_tables(cfg: Settings) -> dict[str, tuple[str, str]]:
    """tier -> (table name, path) of the lake tables."""
    return {
        "lake_hot": ("events_raw", cfg.lake.events_raw),
        "lake_rejected": ("events_rejected", cfg.lake.events_rejected),
        "lake_cold": (cfg.tiering.cold_table, cfg.tiering.cold_path),
    }


def delta_partitions(
    path: str, tier: str, table: str, small_bytes: int, store: ObjectStoreSettings | None = None
) -> list[PartitionStats]:
    files = delta_files(path, store)
    if files is None or files.num_rows == 0:
        return []
    cols = files.column_names
    parts = [c for c in cols if c.startswith("partition.")]
    data = files.select(["size_bytes", "num_records", *parts]).to_pydict()
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for i, size in enumerate(data["size_bytes"]):
        key = "/".join(f"{c.split('.', 1)[1]}={data[c][i]}" for c in parts)
        a = acc[key]
        a[0] += int(data["num_records"][i] or 0)
        a[1] += int(size)
        a[2] += 1
        a[3] += int(size) < small_bytes
    return [PartitionStats(tier, table, k, *v) for k, v in sorted(acc.items())]


def clickhouse_partitions(cfg: Settings, small_bytes: int) -> list[PartitionStats]:
    tier_of = {t: tier for tier, tables in CLICKHOUSE_TIERS.items() for t in tables}
    rows = client(cfg.clickhouse).execute(
        "SELECT table, partition, sum(rows), sum(bytes_on_disk), count(), countIf(bytes_on_disk < %(small)s) "
        "FROM system.parts WHERE database = %(db)s AND active AND table IN %(tables)s "
        "GROUP BY table, partition ORDER BY table, partition",
        {"db": cfg.clickhouse.database, "tables": tuple(tier_of), "small": small_bytes},
    )
    return [PartitionStats(tier_of[t], t, str(p), int(r), int(b), int(n), int(s)) for t, p, r, b, n, s in rows]


def take(cfg: Settings) -> list[PartitionStats]:
    """Every tier, per partition."""
    small = cfg.tiering.small_file_bytes
    stats = clickhouse_partitions(cfg, small)
    for tier, (table, path) in delta_tables(cfg).items():
        stats += delta_partitions(path, tier, table, small, cfg.object_store)
    return stats


def totals(stats: list[PartitionStats]) -> dict[str, dict[str, int]]:
    """tier -> {rows, bytes, files, small_files, partitions}."""
    out: dict[str, dict[str, int]] = {}
    for s in stats:
        t = out.setdefault(s.tier, {"rows": 0, "bytes": 0, "files": 0, "small_files": 0, "partitions": 0})
        t["rows"] += s.rows
        t["bytes"] += s.bytes
        t["files"] += s.files
        t["small_files"] += s.small_files
        t["partitions"] += 1
    return out
