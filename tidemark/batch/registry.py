"""The published-hours registry (ClickHouse `published_hours`) and the stream
bookkeeping the batch layer reads: what is published, what is dirty, and
whether the stream has moved past an hour."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tidemark.config import Settings
from tidemark.io.clickhouse import client, insert_rows

REGISTRY_COLUMNS = ("hour", "version", "status", "published_at", "sequence", "delta_version", "raw_rows",
                    "dedup_rows", "rollup_rows", "late_rows", "run_id", "reason")

# Late events are flagged at micro-batch start and committed to Delta a few seconds
# later; a recompute's snapshot may miss a batch in flight by that much.
IN_FLIGHT_MARGIN = timedelta(minutes=2)


@dataclass(frozen=True)
class Publication:
    hour: datetime
    version: int
    published_at: datetime
    delta_version: int
    raw_rows: int
    dedup_rows: int
    rollup_rows: int


def _now() -> datetime:
    return datetime.now(timezone.utc)


def current(cfg: Settings, hours: list[datetime]) -> dict[datetime, Publication]:
    """The current published version of each of ``hours`` that has one."""
    if not hours:
        return {}
    rows = client(cfg.clickhouse).execute(
        f"SELECT hour, argMax(version, sequence), argMax(published_at, sequence), argMax(delta_version, sequence), "
        f"argMax(raw_rows, sequence), argMax(dedup_rows, sequence), argMax(rollup_rows, sequence) "
        f"FROM {cfg.clickhouse.database}.published_hours WHERE status = 'published' AND hour IN %(h)s GROUP BY hour",
        {"h": tuple(int(h.timestamp()) for h in hours)})
    return {r[0]: Publication(*r) for r in rows}


def record(cfg: Settings, hour: datetime, version: int, status: str, *, delta_version: int, raw_rows: int,
           dedup_rows: int, rollup_rows: int, late_rows: int, run_id: str, reason: str = "") -> None:
    """Append one registry row. For status 'published' this insert IS the atomic switch."""
    now = _now()
    insert_rows(client(cfg.clickhouse), f"{cfg.clickhouse.database}.published_hours", REGISTRY_COLUMNS, [(
        hour, version, status, now, int(now.timestamp() * 1_000_000), delta_version, raw_rows, dedup_rows,
        rollup_rows, late_rows, run_id, reason[:2000])])


def dirty_hours(cfg: Settings, start: datetime, end: datetime) -> list[datetime]:
    """Published hours in [start, end) with late events that arrived after their publication read the lake."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    late = ch.execute(
        f"SELECT event_hour, max(last_ingest_time) FROM {db}.late_event_hours "
        f"WHERE event_hour >= toDateTime(%(s)s) AND event_hour < toDateTime(%(e)s) GROUP BY event_hour",
        {"s": int(start.timestamp()), "e": int(end.timestamp())})
    published = current(cfg, [h for h, _ in late])
    return sorted(h for h, last in late if h in published and last >= published[h].published_at - IN_FLIGHT_MARGIN)


def stream_passed(cfg: Settings, moment: datetime) -> bool:
    """True once the stream has committed a micro-batch whose newest event time is at or after ``moment``:
    the stream's progress has passed it, so the hour before it is complete in the lake (late stragglers
    aside, which the late-data recompute folds in)."""
    (newest,) = client(cfg.clickhouse).execute(
        f"SELECT max(newest_event_time) FROM {cfg.clickhouse.database}.stream_batches")[0]
    return newest is not None and newest >= moment


def volume_history(cfg: Settings, hour: datetime, days: int = 7) -> list[int]:
    """Deduplicated row counts of the same hour on previous days (published versions)."""
    previous = [hour - timedelta(days=d) for d in range(1, days + 1)]
    return [p.dedup_rows for p in current(cfg, previous).values()]
