"""ClickHouse side of the batch layer: stage an hour's recomputed rollups under
a new version, verify them, then switch the registry (see 003_published_hours.sql).

Staged rows are invisible to readers until the registry row that names their
version is written, so staging can be retried, verified and thrown away freely.
"""
from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence

from tidemark.config import Settings
from tidemark.io.clickhouse import client, insert_rows
from tidemark.io.clickhouse_sink import ROLLUP_INPUT_COLUMNS

log = logging.getLogger(__name__)

# Bump when the recompute's output for the same input changes (transforms, dedup rule),
# so a recompute of unchanged data still publishes the new logic.
TRANSFORM_VERSION = "rollups-v1"

# A superseded version stays readable this long after the switch, for readers that
# resolved the registry just before it (a reader never sees a gap).
SUPERSEDED_GRACE = timedelta(minutes=10)
INSERT_CHUNK = 100_000


def publish_version(hour: datetime, file_paths: Iterable[str]) -> int:
    """Deterministic version of an hour's content: same files (and logic) -> same version,
    so re-running an unchanged hour is recognised as already published."""
    digest = hashlib.sha256()
    digest.update(f"{TRANSFORM_VERSION}|{hour.isoformat()}".encode())
    for path in sorted(file_paths):
        digest.update(b"\0" + path.encode())
    return int(digest.hexdigest()[:15], 16) or 1


def _hour_params(hour: datetime, version: int) -> dict:
    start = int(hour.timestamp())
    return {"s": start, "e": start + 3600, "v": version}


def remove_version(cfg: Settings, hour: datetime, version: int, *, timeout_s: float = 300) -> int:
    """Delete batch rows of one version of one hour and wait until gone (mutations are async)."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    p = _hour_params(hour, version)
    where = {
        "minute_rollups": "layer = 'batch' AND version = %(v)s AND minute >= toDateTime(%(s)s) AND minute < toDateTime(%(e)s)",
        "hour_rollups": "layer = 'batch' AND version = %(v)s AND hour = toDateTime(%(s)s)",
        "day_rollups": "layer = 'batch' AND version = %(v)s AND hour = toDateTime(%(s)s)",  # serving's long-range grain
    }
    found = 0
    for table, cond in where.items():
        (n,) = ch.execute(f"SELECT count() FROM {db}.{table} WHERE {cond}", p)[0]
        if n:
            found += n
            ch.execute(f"ALTER TABLE {db}.{table} DELETE WHERE {cond}", p)
    deadline = time.monotonic() + timeout_s
    while found and any(ch.execute(f"SELECT count() FROM {db}.{t} WHERE {c}", p)[0][0] for t, c in where.items()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"batch rows of {hour.isoformat()} version {version} not deleted after {timeout_s}s")
        time.sleep(0.2)
    return found


def stage(cfg: Settings, hour: datetime, version: int, rows: Iterable[Sequence]) -> int:
    """Insert (tenant, minute, country, device, page, events, user_ids) rows as layer 'batch', version."""
    removed = remove_version(cfg, hour, version)  # leftovers of an interrupted attempt
    if removed:
        log.warning("removed rows of an interrupted staging", extra={"hour": hour.isoformat(), "rows": removed})
    ch = client(cfg.clickhouse, send_receive_timeout=300)
    table = f"{cfg.clickhouse.database}.rollup_input"
    sent, chunk = 0, []
    for row in rows:
        chunk.append(("batch", version, *row))
        if len(chunk) >= INSERT_CHUNK:
            sent += insert_rows(ch, table, ROLLUP_INPUT_COLUMNS, chunk)
            chunk = []
    sent += insert_rows(ch, table, ROLLUP_INPUT_COLUMNS, chunk)
    return sent


def staged_totals(cfg: Settings, hour: datetime, version: int) -> dict[str, tuple[int, int, int]]:
    """tenant -> (events, distinct users by HLL, smallest minute count) of a staged version,
    read the way readers will read it."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    p = _hour_params(hour, version)
    hours = ch.execute(
        f"SELECT tenant_id, sum(events), uniqCombinedMerge(users) FROM {db}.hour_rollups "
        f"WHERE dimension = 'all' AND layer = 'batch' AND version = %(v)s AND hour = toDateTime(%(s)s) "
        f"GROUP BY tenant_id", p)
    smallest = dict(ch.execute(
        f"SELECT tenant_id, min(events) FROM {db}.minute_rollups WHERE layer = 'batch' AND version = %(v)s "
        f"AND minute >= toDateTime(%(s)s) AND minute < toDateTime(%(e)s) GROUP BY tenant_id", p))
    return {t: (int(e), int(u), int(smallest.get(t, 0))) for t, e, u in hours}


def cleanup_superseded(cfg: Settings, hour: datetime, current_version: int | None,
                       current_since: datetime | None, keep: set[int]) -> int:
    """Remove batch versions of ``hour`` other than ``keep`` once the current version has been
    live for SUPERSEDED_GRACE: every older version was superseded at least that long ago, so no
    reader can still be reading it. Returns the rows removed."""
    if current_version is None or current_since is None:
        return 0
    if datetime.now(timezone.utc) - current_since < SUPERSEDED_GRACE:
        return 0
    ch = client(cfg.clickhouse)
    versions = ch.execute(
        f"SELECT DISTINCT version FROM {cfg.clickhouse.database}.hour_rollups "
        f"WHERE layer = 'batch' AND hour = toDateTime(%(s)s)", _hour_params(hour, 0))
    keep = keep | {current_version}
    return sum(remove_version(cfg, hour, v) for (v,) in versions if v not in keep)
