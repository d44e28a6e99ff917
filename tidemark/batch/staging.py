"""Stage minute rollups into ClickHouse from the executors (never through the driver).

Not idempotent per partition: a retried task may insert part of its rows twice. The caller
stages under a fresh, invisible version and checks the staged totals before switching, and throws
the version away on any failure (tidemark/batch/publication.py).
"""
from __future__ import annotations

from tidemark.config import ClickHouseSettings

_COLUMNS = ("layer", "version", "tenant_id", "minute", "country", "device", "page", "events", "user_ids")
_CHUNK = 50_000


def stage_rollups(rollups, cfg: ClickHouseSettings, version: int, *, layer: str = "batch") -> int:
    """Insert a minute-rollups DataFrame (tenant_id, minute, country, device, page, events, user_ids)
    into ``rollup_input`` under ``version``. Returns the rows inserted."""
    table = f"{cfg.database}.rollup_input"
    insert = f"INSERT INTO {table} ({', '.join(_COLUMNS)}) VALUES"
    cols = ["tenant_id", "minute", "country", "device", "page", "events", "user_ids"]

    def write_partition(rows):
        from tidemark.io.clickhouse import client

        ch, chunk, sent = None, [], 0
        for r in rows:
            chunk.append((layer, version, *r))
            if len(chunk) >= _CHUNK:
                ch = ch or client(cfg, send_receive_timeout=300)
                ch.execute(insert, chunk)
                sent, chunk = sent + len(chunk), []
        if chunk:
            ch = ch or client(cfg, send_receive_timeout=300)
            ch.execute(insert, chunk)
            sent += len(chunk)
        yield sent

    return int(sum(rollups.select(*cols).rdd.mapPartitions(write_partition).collect()))
