"""The registry of hour versions (ClickHouse ``published_hours``): what is published, what a run
staged, what failed, and which hours need a recompute.

An hour's *current* version is its ``published`` row with the highest ``(delta_version,
sequence)``: versions are ordered by the lake snapshot they were computed from, so a run that
read an older snapshot can never replace a newer one, whichever finishes last. ``sequence`` (the
switch's wall clock) only breaks ties between runs of one snapshot, e.g. a forced re-run.
Serving resolves versions with the same rule (tidemark/lambda_merge.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tidemark.config import Settings
from tidemark.io.clickhouse import client, insert_rows
from tidemark.tables import CURRENT_ORDER

REGISTRY_COLUMNS = (
    "hour",
    "version",
    "status",
    "published_at",
    "sequence",
    "delta_version",
    "raw_rows",
    "dedup_rows",
    "rollup_rows",
    "late_rows",
    "run_id",
    "reason",
    "content_key",
)

FAILED = ("failed_quality", "failed_run")
ENDED = ("discarded", *FAILED)  # a version with any of these must never be published: its rows may be gone
# The reason of the 'staged' row a switch records before it checks its version (publication.switch).
SWITCH_CLAIM = "switching: verifying the staged rows"


@dataclass(frozen=True)
class Publication:
    hour: datetime
    version: int
    published_at: datetime
    delta_version: int
    raw_rows: int
    dedup_rows: int
    rollup_rows: int
    content_key: str
    run_id: str

    def newer_than(self, delta_version: int) -> bool:
        """True if this publication read a later lake snapshot than ``delta_version``."""
        return self.delta_version > delta_version


@dataclass(frozen=True)
class VersionEntry:
    """One version of an hour as the registry log tells it."""

    version: int
    status: str  # the latest status recorded for it
    first_seen: datetime  # when it was first recorded (staging began)
    last_seen: datetime
    run_id: str
    rows: int = 0  # registry rows of the version: a new one means someone else recorded something
    published: bool = False  # it was switched at some point
    ended: bool = False  # some run or clean-up discarded it or recorded a failure (ENDED)
    claimed_at: datetime | None = None  # the latest switch claim (SWITCH_CLAIM)


@dataclass(frozen=True)
class FailureRecord:
    failures: int  # consecutive failures since the hour's last publish
    last_failure: datetime
    reason: str


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _at(epoch_s: int) -> datetime:
    """DateTime columns are read as epoch seconds (toUInt32): 18.16 drops a column's time zone
    through aggregates, and the driver would then return naive, server-local datetimes."""
    return datetime.fromtimestamp(int(epoch_s), timezone.utc)


def _epochs(hours) -> tuple[int, ...]:
    return tuple(int(h.timestamp()) for h in hours)


def current(cfg: Settings, hours: list[datetime]) -> dict[datetime, Publication]:
    """The current published version of each of ``hours`` that has one."""
    if not hours:
        return {}
    cols = (
        "version",
        "toUInt32(published_at)",
        "delta_version",
        "raw_rows",
        "dedup_rows",
        "rollup_rows",
        "content_key",
        "run_id",
    )
    picks = ", ".join(f"argMax({c}, {CURRENT_ORDER})" for c in cols)
    rows = client(cfg.clickhouse).execute(
        f"SELECT toUInt32(hour), {picks} FROM {cfg.clickhouse.database}.published_hours "
        f"WHERE status = 'published' AND hour IN %(h)s GROUP BY hour",
        {"h": _epochs(hours)},
    )
    return {_at(r[0]): Publication(_at(r[0]), r[1], _at(r[2]), *r[3:]) for r in rows}


def record(
    cfg: Settings,
    hour: datetime,
    version: int,
    status: str,
    *,
    delta_version: int,
    run_id: str,
    raw_rows: int = 0,
    dedup_rows: int = 0,
    rollup_rows: int = 0,
    late_rows: int = 0,
    reason: str = "",
    content_key: str = "",
) -> None:
    """Append one registry row. For status 'published' this insert IS the atomic switch."""
    now = _now()
    insert_rows(
        client(cfg.clickhouse),
        f"{cfg.clickhouse.database}.published_hours",
        REGISTRY_COLUMNS,
        [
            (
                hour,
                version,
                status,
                now,
                int(now.timestamp() * 1_000_000),
                max(delta_version, 0),
                raw_rows,
                dedup_rows,
                rollup_rows,
                late_rows,
                run_id,
                reason[:2000],
                content_key,
            )
        ],
    )


def versions(cfg: Settings, hour: datetime) -> dict[int, VersionEntry]:
    """Every version of ``hour`` the registry knows, with its latest status and its whole history's flags."""
    rows = client(cfg.clickhouse).execute(
        f"SELECT version, argMax(status, sequence), toUInt32(min(published_at)), toUInt32(max(published_at)), "
        f"any(run_id), count(), countIf(status = 'published'), countIf(status IN %(ended)s), "
        f"toUInt32(maxIf(published_at, status = 'staged' AND reason = %(claim)s)) "
        f"FROM {cfg.clickhouse.database}.published_hours WHERE hour = toDateTime(%(h)s) GROUP BY version",
        {"h": int(hour.timestamp()), "ended": ENDED, "claim": SWITCH_CLAIM},
    )
    return {
        int(v): VersionEntry(
            int(v), s, _at(first), _at(last), run, int(n), bool(published), bool(ended), _at(claim) if claim else None
        )
        for v, s, first, last, run, n, published, ended, claim in rows
    }


def staged_by_run(cfg: Settings, hour: datetime, run_id: str) -> list[int]:
    """Versions an earlier attempt of ``run_id`` staged and never published (a retried task)."""
    return [v.version for v in versions(cfg, hour).values() if v.run_id == run_id and v.status == "staged"]


def failures(cfg: Settings, hours: list[datetime]) -> dict[datetime, FailureRecord]:
    """Hours whose latest outcome is a failure: how many in a row (since the last publish), when
    the last one was, and why."""
    if not hours:
        return {}
    rows = client(cfg.clickhouse).execute(
        f"SELECT toUInt32(hour), status, toUInt32(published_at), reason FROM {cfg.clickhouse.database}.published_hours "
        f"WHERE hour IN %(h)s AND status IN ('published', 'failed_quality', 'failed_run') "
        f"ORDER BY hour, sequence",
        {"h": _epochs(hours)},
    )
    by_hour: dict[datetime, list] = defaultdict(list)
    for hour, status, at, reason in rows:
        by_hour[_at(hour)].append((status, _at(at), reason))
    out = {}
    for hour, outcomes in by_hour.items():
        streak = 0
        for status, _when, _why in reversed(outcomes):
            if status == "published":
                break
            streak += 1
        if streak:
            _status, when, why = outcomes[-1]
            out[hour] = FailureRecord(streak, when, why)
    return out


def volume_history(cfg: Settings, hour: datetime, days: int = 7) -> list[int]:
    """Deduplicated row counts of the same hour on previous days (published versions)."""
    previous = [hour - timedelta(days=d) for d in range(1, days + 1)]
    return [p.dedup_rows for p in current(cfg, previous).values()]
