"""The warm tier: hour_rollups and day_rollups, and the check that they hold what the minute tier holds.

Both tables are written by materialized views off ``rollup_input`` in the same INSERT as the
minute rows (001_rollups.sql, 010_day_rollups.sql), keyed by hour, layer and version. So a
republished hour (the batch layer stages a *new* version and switches the registry) has its warm
rows rebuilt by the same insert, and the lambda merge picks them per hour, exactly as it picks the
minute rows. There is nothing to rebuild afterwards; when a check fails, the remedy is to republish
the hour (``tidemark recompute --hour H --force``), which rewrites every grain.

**What "the same" means.** Each tier is read as readers read it: through the lambda merge, with
one registry snapshot for all three tables (tidemark/lambda_merge.py). Per (tenant, hour,
dimension, value): the published batch version if the hour has one, else the streaming rows of
current stream identities up to their last committed micro-batch. Streaming rows of an unpublished
hour therefore count on both sides; rows no reader counts (superseded versions, retired streams,
partial batches) count on neither. Events must match exactly. Distinct users are compared by
merged states: hour_rollups (uniqCombined, precision 17, the minute tier's own) exactly;
day_rollups (precision 15) within ``day_users_tolerance``. Only what the minute tier holds is
checked: a warm row without minute rows (an hour whose minute rows were already dropped) is fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from tidemark.lambda_merge import merged_filter, snapshot

DIMENSIONS = {"all": "''", "country": "country", "device": "device", "page": "page"}
_HOUR_EXPR = {
    "minute_rollups": "toUInt32(toStartOfHour(minute))",
    "hour_rollups": "toUInt32(hour)",
    "day_rollups": "toUInt32(hour)",
}


@dataclass(frozen=True)
class Mismatch:
    table: str
    tenant: str
    hour: datetime
    dimension: str
    value: str
    minute: tuple[int, int]  # (events, users) in the minute tier
    warm: tuple[int, int] | None  # in the warm table (None: missing)

    def __str__(self) -> str:
        return (
            f"{self.table} {self.tenant} {self.hour:%Y-%m-%dT%H} {self.dimension}={self.value!r}: "
            f"minute {self.minute} vs warm {self.warm}"
        )


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def _grouped(ch, db: str, table: str, dimension: str, params: dict) -> dict[tuple, tuple[int, int]]:
    hour = _HOUR_EXPR[table]
    if table == "minute_rollups":
        value, where, users = (
            DIMENSIONS[dimension],
            "minute >= toDateTime(%(s)s) AND minute < toDateTime(%(e)s)",
            "uniqCombinedMerge(users)",
        )
    else:
        value = "value"
        where = "dimension = %(d)s AND hour >= toDateTime(%(s)s) AND hour < toDateTime(%(e)s)"
        users = "uniqCombinedMerge(15)(users)" if table == "day_rollups" else "uniqCombinedMerge(users)"
    rows = ch.execute(
        f"SELECT tenant_id, {hour} AS h, {value} AS v, sum(events), {users} FROM {db}.{table} "
        f"WHERE {where} AND {merged_filter(hour)} GROUP BY tenant_id, h, v",
        {**params, "d": dimension},
    )
    return {(t, int(h), v): (int(e), int(u)) for t, h, v, e, u in rows}


def compare_day(ch, db: str, day: date, *, users_tolerance: float) -> tuple[int, list[Mismatch]]:
    """Compare the minute tier of one UTC day with both warm tables, through the lambda merge.
    Returns (groups checked, mismatches)."""
    start, end = _day_bounds(day)
    snap = snapshot(ch, db, start, end)  # one registry snapshot for every table read below
    params = {"s": int(start.timestamp()), "e": int(end.timestamp()), **snap.params()}
    checked, bad = 0, []
    for dimension in DIMENSIONS:
        minute = _grouped(ch, db, "minute_rollups", dimension, params)
        checked += len(minute)
        for table in ("hour_rollups", "day_rollups"):
            warm = _grouped(ch, db, table, dimension, params)
            for key, (events, users) in minute.items():
                got = warm.get(key)
                if got is None or got[0] != events or not _users_match(table, users, got[1], users_tolerance):
                    tenant, hour, value = key
                    bad.append(
                        Mismatch(
                            table,
                            tenant,
                            datetime.fromtimestamp(hour, timezone.utc),
                            dimension,
                            value,
                            (events, users),
                            got,
                        )
                    )
    return checked, bad


def _users_match(table: str, minute_users: int, warm_users: int, tolerance: float) -> bool:
    if table == "hour_rollups":
        return minute_users == warm_users
    return abs(minute_users - warm_users) <= tolerance * max(minute_users, 1)
