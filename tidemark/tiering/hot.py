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

Before a day is dropped, the end of that day is recorded as the minute tier's horizon
(``minute_horizon``, 022_minute_horizon.sql): the serving API reads it and never answers a
minute-only question over dropped days with a partial number.
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


def record_horizon(ch, db: str, day: date, run_id: str = "") -> None:
    """Minute rows before the end of ``day`` are (about to be) dropped: written before the drop."""
    through = datetime.combine(day + timedelta(days=1), day_time(0), tzinfo=timezone.utc)
    insert_rows(
        ch,
        f"{db}.minute_horizon",
        ("dropped_through", "recorded_at", "run_id"),
        [(through, datetime.now(timezone.utc), run_id)],
    )


def run(cfg: Settings, bounds: Boundaries, *, dry_run: bool = False) -> list[DayResult]:
    ch = client(cfg.clickhouse, send_receive_timeout=600)
    db = cfg.clickhouse.database
    results = []
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
            record_horizon(ch, db, day)
            ch.execute(f"ALTER TABLE {db}.{TABLE} DROP PARTITION {partition}")
            result.dropped, result.reason = True, "verified and dropped"
        log.info(
            "hot tier day",
            extra={
                "day": result.day,
                "groups": result.groups_checked,
                "dropped": result.dropped,
                "reason": result.reason,
                "seconds": round(time.monotonic() - started, 2),
            },
        )
        results.append(result)
    return results


def summary(results: list[DayResult]) -> dict:
    return {
        "days_checked": len(results),
        "days_dropped": sum(r.dropped for r in results),
        "days_kept": [f"{r.day}: {r.reason}" for r in results if not r.dropped and "would drop" not in r.reason],
        "would_drop": [r.day for r in results if "would drop" in r.reason],
    }
