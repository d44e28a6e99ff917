"""ClickHouse for the detector: the pre-aggregates it reads (lambda-merged, never raw events) and the
``anomalies`` table it owns (024_anomalies.sql)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pandas as pd

from tidemark.errors import TidemarkError
from tidemark.io.clickhouse import insert_rows
from tidemark.lambda_merge import merged_filter, minute_counts, snapshot

HOUR = 3600
COLUMNS = (
    "tenant_id",
    "grain",
    "at",
    "metric",
    "dimension",
    "value",
    "kind",
    "observed",
    "expected",
    "score",
    "weeks",
    "detected_at",
    "run_id",
)
DIMENSIONS = ("country", "device", "page")


class AnomalyStoreError(TidemarkError, RuntimeError):
    """The anomalies table could not be brought to a run's result."""


def _dt(t: int) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def read_hourly(ch, db: str, hours: list[int], tenants: list[str] | None = None) -> pd.DataFrame:
    """(tenant_id, dimension, value, hour, events, users) of the given hours, every dimension, from
    day_rollups (the hourly grain the API reads too) through the lambda merge."""
    columns = ["tenant_id", "dimension", "value", "hour", "events", "users"]
    if not hours:
        return pd.DataFrame(columns=columns)
    start, end = min(hours), max(hours) + HOUR
    snap = snapshot(ch, db, _dt(start), _dt(end))
    tenant_filter = "AND tenant_id IN %(ts)s" if tenants else ""
    rows = ch.execute(
        f"SELECT tenant_id, dimension, value, toUInt32(hour) AS h, sum(events), uniqCombinedMerge(15)(users) "
        f"FROM {db}.day_rollups "
        f"WHERE day >= toDate(toDateTime(%(s)s)) AND day <= toDate(toDateTime(%(e_last)s)) "
        f"AND hour >= toDateTime(%(s)s) AND hour < toDateTime(%(e)s) AND toUInt32(hour) IN %(hours)s "
        f"{tenant_filter} AND {merged_filter('toUInt32(hour)')} "
        f"GROUP BY tenant_id, dimension, value, h",
        {
            "s": start,
            "e": end,
            "e_last": end - 1,
            "hours": tuple(hours),
            "ts": tuple(tenants or ()),
            **snap.params(),
        },
    )
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"hour": "int64", "events": "float64", "users": "float64"})


def read_minutes(ch, db: str, start: int, end: int, tenants: list[str] | None = None) -> pd.DataFrame:
    """(tenant_id, dimension, value, minute, events) of [start, end), per dimension, lambda-merged."""
    rows = minute_counts(ch, db, _dt(start), _dt(end), tenants)
    raw = pd.DataFrame(rows, columns=["tenant_id", "minute", "country", "device", "page", "events"])
    if raw.empty:
        return pd.DataFrame(columns=["tenant_id", "dimension", "value", "minute", "events"])
    raw["minute"] = raw["minute"].map(lambda m: int(m.replace(tzinfo=timezone.utc).timestamp()))
    parts = [raw.groupby(["tenant_id", "minute"], as_index=False)["events"].sum().assign(dimension="all", value="")]
    for dim in DIMENSIONS:
        part = raw.groupby(["tenant_id", "minute", dim], as_index=False)["events"].sum()
        parts.append(part.rename(columns={dim: "value"}).assign(dimension=dim))
    return pd.concat(parts, ignore_index=True).astype({"events": "float64"})


def replace(
    ch,
    db: str,
    grain: str,
    start: int,
    end: int,
    tenants: list[str] | None,
    found: pd.DataFrame,
    run_id: str,
    *,
    timeout_s: float = 300,
) -> int:
    """Make the rows of ``grain`` in [start, end) (of ``tenants``, or all) exactly ``found``: delete
    what a previous run wrote there (and wait: mutations are asynchronous), then insert."""
    where = "grain = %(g)s AND at >= toDateTime(%(s)s) AND at < toDateTime(%(e)s)"
    if tenants:
        where += " AND tenant_id IN %(ts)s"
    params = {"g": grain, "s": start, "e": end, "ts": tuple(tenants or ())}
    (present,) = ch.execute(f"SELECT count() FROM {db}.anomalies WHERE {where}", params)[0]
    if present:
        ch.execute(f"ALTER TABLE {db}.anomalies DELETE WHERE {where}", params)
        deadline = time.monotonic() + timeout_s
        while ch.execute(f"SELECT count() FROM {db}.anomalies WHERE {where}", params)[0][0]:
            if time.monotonic() > deadline:
                raise AnomalyStoreError(
                    f"the previous anomalies of [{_dt(start):%Y-%m-%dT%H:%M}, {_dt(end):%Y-%m-%dT%H:%M}) were "
                    f"not deleted after {timeout_s:.0f} s; check system.mutations in ClickHouse (database {db}) "
                    "and run the detection again"
                )
            time.sleep(0.2)  # a mutation has no completion signal on 18.16: poll its effect
    if found.empty:
        return 0
    detected_at = datetime.now(timezone.utc).replace(microsecond=0)
    rows = [
        (
            r.tenant_id,
            grain,
            _dt(int(r.at)),
            r.metric,
            r.dimension,
            r.value,
            r.kind,
            float(r.observed),
            float(r.expected),
            float(r.score),
            int(r.weeks),
            detected_at,
            run_id,
        )
        for r in found.itertuples(index=False)
    ]
    return insert_rows(ch, f"{db}.anomalies", COLUMNS, rows)


def read_anomalies(ch, db: str, start: int, end: int, tenants: list[str] | None = None) -> list[tuple]:
    """The stored anomalies of [start, end) (operators and tests; the API reads its own tenant's)."""
    tenant_filter = "AND tenant_id IN %(ts)s" if tenants else ""
    return ch.execute(
        f"SELECT tenant_id, grain, toUInt32(at), metric, dimension, value, kind, observed, expected, score, weeks "
        f"FROM {db}.anomalies FINAL WHERE at >= toDateTime(%(s)s) AND at < toDateTime(%(e)s) {tenant_filter} "
        f"ORDER BY tenant_id, grain, at, metric, dimension, value",
        {"s": start, "e": end, "ts": tuple(tenants or ())},
    )
