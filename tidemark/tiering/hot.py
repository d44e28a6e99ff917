"""The hot tier: minute_rollups keeps ``TIDEMARK_HOT_DAYS`` days.

ClickHouse 18.16 has no TTL, so days leave by ``DROP PARTITION`` (the table is partitioned by
``toYYYYMMDD(minute)``), and only after ``warm.compare_day`` found the warm tier holding the same
totals for that day. A day that does not match stays, and is reported with the hours and the
remedy. A day reappears when the batch layer republishes one of its hours (its new version writes
minute rows too); the next run verifies and drops it again.

Between the check and the drop, the partition's set of parts is compared: if anything was
inserted meanwhile, the day waits for the next run. (Should an insert land in the instant after
that comparison, its rows reach the warm tables through the same INSERT's materialized views, so
nothing readers count is lost.) Idempotent: a dropped day is simply no longer a candidate.

Before any day is dropped, the end of the newest day to drop is recorded as the minute tier's
horizon (``minute_horizon``, 022_minute_horizon.sql; idempotent), then the step waits
``TIDEMARK_HOT_HORIZON_GRACE_S`` (default: how long an API process may answer from an old registry
snapshot, plus its queue wait): by the drop, every API process has read the horizon or refuses to
answer, so none answers a minute-only question over dropped days with a partial number.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from datetime import time as day_time

from tidemark.config import Settings
from tidemark.io.clickhouse import client, insert_rows
from tidemark.tiering.options import Boundaries
from tidemark.tiering.warm import compare_day

log = logging.getLogger(__name__)

TABLE = "minute_rollups"
_DAY_PARTITION = re.compile(r"^\d{8}$")


@dataclass
class DayResult:
    day: str
    groups_checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    dropped: bool = False
    reason: str = ""


def candidate_days(cfg: Settings, bounds: Boundaries) -> list[tuple[date, str]]:
    """Days of minute_rollups older than the hot window, with their partition ids."""
    rows = client(cfg.clickhouse).execute(
        "SELECT DISTINCT partition FROM system.parts WHERE database = %(db)s AND table = %(t)s AND active",
        {"db": cfg.clickhouse.database, "t": TABLE},
    )
    out = []
    for (partition,) in rows:
        partition = str(partition)
        if not _DAY_PARTITION.match(partition):
            raise RuntimeError(
                f"{TABLE} partition {partition!r} is not YYYYMMDD: the table's PARTITION BY "
                f"changed; update tidemark/tiering/hot.py before dropping anything"
            )
        day = date(int(partition[:4]), int(partition[4:6]), int(partition[6:]))
        if day < bounds.hot_from:
            out.append((day, partition))
    return sorted(out)


def _parts(ch, db: str, partition: str) -> tuple[str, ...]:
    rows = ch.execute(
        "SELECT name FROM system.parts WHERE database = %(db)s AND table = %(t)s AND active "
        "AND partition = %(p)s ORDER BY name",
        {"db": db, "t": TABLE, "p": partition},
    )
    return tuple(r[0] for r in rows)


def record_horizon(ch, db: str, through: datetime, run_id: str = "") -> float:
    """Record that minute rows before ``through`` are (about to be) dropped; written before any drop.
    Idempotent: if a row already covers ``through`` (an earlier run, or one that crashed after
    recording), nothing is written. Returns when the horizon covering ``through`` was first recorded
    (epoch seconds): API processes have been reading it since then."""
    at = int(through.timestamp())
    ((first, n),) = ch.execute(
        f"SELECT toUInt32(min(recorded_at)), count() FROM {db}.minute_horizon "
        f"WHERE dropped_through >= toDateTime(%(t)s)",
        {"t": at},
    )
    if n:
        return float(first)
    now = datetime.now(timezone.utc)
    insert_rows(ch, f"{db}.minute_horizon", ("dropped_through", "recorded_at", "run_id"), [(through, now, run_id)])
    return now.timestamp()


def _day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), day_time(0), tzinfo=timezone.utc)


def run(cfg: Settings, bounds: Boundaries, *, dry_run: bool = False, run_id: str = "") -> list[DayResult]:
    """Verify every candidate day, record the horizon once (through the newest verified day), wait
    ``horizon_grace_s`` after it was first recorded (every API process has read it by then, or
    refuses to answer), then drop each verified day whose parts did not change since its check."""
    ch = client(cfg.clickhouse, send_receive_timeout=600)
    db = cfg.clickhouse.database
    results = []
    verified: list[tuple[DayResult, str, tuple[str, ...]]] = []
    for day, partition in candidate_days(cfg, bounds):
        started = time.monotonic()
        result = DayResult(day.isoformat())
        parts = _parts(ch, db, partition)
        result.groups_checked, bad = compare_day(ch, db, day, users_tolerance=cfg.tiering.day_users_tolerance)
        if bad:
            result.mismatches = [str(m) for m in bad[:20]]
            hours = sorted({m.hour for m in bad})
            result.reason = (
                f"warm tier does not hold the minute totals of {len(hours)} hour(s) "
                f"({len(bad)} groups); kept. Republish them (`tidemark recompute --hour "
                f"{hours[0]:%Y-%m-%dT%H} --force`), then the next run drops the day"
            )
            log.error(
                "minute partition kept: warm tier differs",
                extra={"day": result.day, "mismatches": len(bad), "first": result.mismatches[0]},
            )
        elif _parts(ch, db, partition) != parts:
            result.reason = "rows were inserted during the check; kept until the next run"
        elif dry_run:
            result.reason = "verified; would drop"
        else:
            verified.append((result, partition, parts))
        log.info(
            "hot tier day checked",
            extra={
                "day": result.day,
                "groups": result.groups_checked,
                "verified": not bad,
                "seconds": round(time.monotonic() - started, 2),
            },
        )
        results.append(result)
    if verified:
        # The horizon goes out before any row does (a crash in between leaves a recorded, not yet
        # dropped day: read from the hour grain or refused, never partial). A day verified but kept
        # below is covered too: conservative, and the next run drops it.
        through = _day_end(date.fromisoformat(verified[-1][0].day))
        first_recorded = record_horizon(ch, db, through, run_id)
        wait_s = first_recorded + cfg.tiering.horizon_grace_s - time.time()
        if wait_s > 0:
            log.info(
                "minute horizon recorded; waiting for the API processes to read it before dropping",
                extra={"through": through.isoformat(), "seconds": round(wait_s, 1)},
            )
            time.sleep(wait_s)  # a time bound: API snapshots older than the grace are refused (503)
    for result, partition, parts in verified:
        if _parts(ch, db, partition) != parts:
            result.reason = "rows were inserted since the check; kept until the next run"
        else:
            ch.execute(f"ALTER TABLE {db}.{TABLE} DROP PARTITION {partition}")
            result.dropped, result.reason = True, "verified and dropped"
        log.info("hot tier day", extra={"day": result.day, "dropped": result.dropped, "reason": result.reason})
    return results


def summary(results: list[DayResult]) -> dict:
    return {
        "days_checked": len(results),
        "days_dropped": sum(r.dropped for r in results),
        "days_kept": [f"{r.day}: {r.reason}" for r in results if not r.dropped and "would drop" not in r.reason],
        "would_drop": [r.day for r in results if "would drop" in r.reason],
    }
