"""SQL for the dashboard API: time series, comparison, top N, totals, realtime visitors, freshness.

Every query here:

* reads pre-aggregates only (minute_rollups, day_rollups), never raw events;
* goes through the one lambda merge: the registry is resolved by ``lambda_merge.snapshot`` for the
  exact range read, and ``lambda_merge.merged_filter`` picks, per hour, the published batch version
  else the streaming rows. The snapshot's parameters are passed along opaquely;
* carries the tenant constraint, added here from the API key's tenant and never from a request
  parameter. ClickHouse 18.16 silently ignores row policies, so this WHERE clause is the only wall
  between tenants; on a current ClickHouse a row policy on ``tenant_id`` per serving user would add
  a second one (a policy keyed on a per-tenant user, or on a custom setting the app sets);
* interpolates only names from the whitelists below (tables, dimensions, bucket expressions) and
  integers. The tenant id and every filter value travel apart from the query text, as a one-row
  external table (``_req``, read by scalar subqueries, which 18.16 folds into constants before
  index analysis: the primary key prunes as with a literal). clickhouse-driver inlines bound
  parameters into the text, and 18.16 shows every running query's text to every user in
  ``system.processes`` (it always allows ``system``): so neither serving user sees which tenant
  the other is serving, or what it filters on.

Grain: the coarsest table that answers the question, and before the minute tier's horizon the one
that still holds the rows (tidemark/serving/grains.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from tidemark.lambda_merge import Snapshot, merged_filter, snapshot
from tidemark.serving.grains import (
    HOUR_ROLLUPS_GRAIN,
    HOURLY_GRAIN,
    MINUTE_GRAIN,
    STRADDLE_GRAIN,
    Grain,
    choose_grain,
)
from tidemark.serving.ranges import TimeRange

DIMENSIONS = ("country", "device", "page")
METRICS = ("events", "users")
REQUEST_TABLE = "_req"  # the external table of the request's private values (tenant, filters)


def _private(name: str) -> str:
    return f"(SELECT {name} FROM {REQUEST_TABLE})"


@dataclass(frozen=True)
class Filters:
    country: str | None = None
    device: str | None = None
    page: str | None = None

    def items(self) -> list[tuple[str, str]]:
        return [(d, getattr(self, d)) for d in DIMENSIONS if getattr(self, d) is not None]

    def as_dict(self) -> dict:
        return dict(self.items())


@dataclass
class Plan:
    """One rollup query: SQL with its bound parameters (inlined by the driver: nothing private),
    its private values (sent as the external table ``_req``), and the range whose registry it needs."""

    sql: str
    params: dict
    private: dict[str, str]
    grain: Grain
    start: int
    end: int
    shape: Callable[[list], object] = field(default=lambda rows: rows)

    def external_tables(self) -> list[dict]:
        names = sorted(self.private)
        return [{"name": REQUEST_TABLE, "structure": [(n, "String") for n in names], "data": [self.private]}]


def _where(
    grain: Grain, tenant: str, start: int, end: int, filters: Filters, dimension: str | None
) -> tuple[str, dict, dict[str, str]]:
    """Tenant, range, filters and the lambda merge: (SQL, bound parameters, private values).
    ``dimension``: the per-dimension rows to read (hour/day grains; 'all' when the question involves none)."""
    params: dict = {"s": start, "e": end}
    private = {"tenant": tenant}
    clauses = [
        f"tenant_id = {_private('tenant')}",
        f"{grain.time_col} >= toDateTime(%(s)s)",
        f"{grain.time_col} < toDateTime(%(e)s)",
    ]
    if grain is HOURLY_GRAIN:  # the sort key leads with day: prune on it too
        clauses += ["day >= toDate(toDateTime(%(s)s))", "day <= toDate(toDateTime(%(e_last)s))"]
        params["e_last"] = end - 1
    if grain.per_dimension:
        clauses.append("dimension = %(dim)s")  # a whitelisted name (or 'all'), not the caller's text
        params["dim"] = dimension or "all"
        for dim, value in filters.items():
            assert dim == dimension, "a per-dimension grain answers one dimension"
            clauses.append(f"value = {_private('f_value')}")
            private["f_value"] = value
    else:
        for dim, value in filters.items():
            assert dim in DIMENSIONS
            clauses.append(f"{dim} = {_private('f_' + dim)}")
            private[f"f_{dim}"] = value
    clauses.append(merged_filter(grain.merge_time))
    return " AND ".join(clauses), params, private


def _source(
    db: str, grain: Grain, tenant: str, start: int, end: int, filters: Filters, dimension: str | None, minute_from: int
) -> tuple[str, str, dict, dict[str, str]]:
    """FROM and WHERE of a rollup query: (table or subquery, SQL, bound parameters, private values).
    STRADDLE_GRAIN: the two tables' rows as one subquery, each side with its own tenant, range,
    filter and merge conditions (18.16 does not push an outer WHERE into a UNION ALL)."""
    if grain is not STRADDLE_GRAIN:
        where, params, private = _where(grain, tenant, start, end, filters, dimension)
        return f"{db}.{grain.table}", where, params, private
    hours, params, private = _where(HOUR_ROLLUPS_GRAIN, tenant, start, end, filters, dimension)
    minutes, _, minute_private = _where(MINUTE_GRAIN, tenant, start, end, filters, None)
    params["h"] = minute_from
    value = dimension if dimension in DIMENSIONS else "materialize('')"  # whitelisted names only
    source = (
        f"(SELECT hour AS t, value, events, users FROM {db}.hour_rollups "
        f"WHERE {hours} AND hour < toDateTime(%(h)s) "
        f"UNION ALL SELECT minute AS t, {value} AS value, events, users FROM {db}.minute_rollups "
        f"WHERE {minutes} AND minute >= toDateTime(%(h)s))"
    )
    return source, "1", params, {**private, **minute_private}


def _metric(grain: Grain, metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    return "sum(events)" if metric == "events" else grain.users


def time_series(
    db: str, tenant: str, rng: TimeRange, metric: str, filters: Filters, compare: bool, minute_from: int = 0
) -> Plan:
    """Per bucket: value, and with ``compare`` the previous period's value at the same offset."""
    read = rng.with_previous() if compare else rng
    dims = {d for d, _ in filters.items()}
    grain = choose_grain(rng, dims, read_start=read.start, minute_from=minute_from)
    source, where, params, private = _source(
        db, grain, tenant, read.start, read.end, filters, next(iter(dims), None), minute_from
    )
    sql = (
        f"SELECT toUInt32({grain.bucket(rng.bucket)}) AS b, {_metric(grain, metric)} "
        f"FROM {source} WHERE {where} GROUP BY b ORDER BY b"
    )

    def shape(rows: list) -> list[dict]:
        found = {int(b): int(v) for b, v in rows}
        points = []
        for t in rng.buckets():
            point = {"t": t, "value": found.get(t, 0)}
            if compare:
                point["previous"] = found.get(t - rng.span, 0)
            points.append(point)
        return points

    return Plan(sql, params, private, grain, read.start, read.end, shape)


def split_at(plan: Plan, at: int) -> tuple[Plan, Plan]:
    """A query over [start, at) and over [at, end), each answering its raw rows (integers). Only for
    queries whose groups do not straddle ``at``: a time series split on a bucket boundary (distinct
    users too are per bucket), or compared totals split at the current period's start (each period
    is its own group). Their rows together are then the whole query's, so the settled part can be
    cached apart from the live one (tidemark/serving/core.py)."""
    if not plan.start < at < plan.end or "e" not in plan.params:
        raise ValueError(f"cannot split [{plan.start}, {plan.end}) at {at}")

    def raw(rows: list) -> list:
        return [[int(x) for x in row] for row in rows]

    past_params = {**plan.params, "e": at}
    if "e_last" in plan.params:
        past_params["e_last"] = at - 1
    past = replace(plan, params=past_params, end=at, shape=raw)
    live = replace(plan, params={**plan.params, "s": at}, start=at, shape=raw)
    return past, live


def top(
    db: str, tenant: str, rng: TimeRange, dimension: str, limit: int, filters: Filters, minute_from: int = 0
) -> Plan:
    """The ``limit`` values of ``dimension`` with the most events, each with events and distinct users.
    Users are merged for those values only (the inner query ranks by the cheap event sums)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}")
    limit = int(limit)
    dims = {d for d, _ in filters.items()} | {dimension}
    grain = choose_grain(rng, dims, minute_from=minute_from, buckets=False)
    source, where, params, private = _source(db, grain, tenant, rng.start, rng.end, filters, dimension, minute_from)
    value = "value" if grain.per_dimension else dimension
    sql = (
        f"SELECT {value} AS v, sum(events) AS ev, {grain.users} AS us FROM {source} "
        f"WHERE {where} AND {value} IN (SELECT {value} FROM {source} WHERE {where} "
        f"GROUP BY {value} ORDER BY sum(events) DESC, {value} LIMIT {limit}) "
        f"GROUP BY v ORDER BY ev DESC, v"
    )

    def shape(rows: list) -> list[dict]:
        return [{"value": v, "events": int(e), "users": int(u)} for v, e, u in rows]

    return Plan(sql, params, private, grain, rng.start, rng.end, shape)


def totals(db: str, tenant: str, rng: TimeRange, filters: Filters, compare: bool, minute_from: int = 0) -> Plan:
    read = rng.with_previous() if compare else rng
    dims = {d for d, _ in filters.items()}
    grain = choose_grain(rng, dims, read_start=read.start, minute_from=minute_from, buckets=False)
    source, where, params, private = _source(
        db, grain, tenant, read.start, read.end, filters, next(iter(dims), None), minute_from
    )
    params["cur"] = rng.start
    sql = (
        f"SELECT toUInt8({grain.time_col} >= toDateTime(%(cur)s)) AS current, sum(events), {grain.users} "
        f"FROM {source} WHERE {where} GROUP BY current"
    )

    def shape(rows: list) -> dict:
        found = {int(c): {"events": int(e), "users": int(u)} for c, e, u in rows}
        zero = {"events": 0, "users": 0}
        out: dict[str, Any] = dict(found.get(1, zero))
        if compare:
            out["previous"] = found.get(0, zero)
        return out

    return Plan(sql, params, private, grain, read.start, read.end, shape)


def realtime(db: str, tenant: str, window: TimeRange) -> Plan:
    """Distinct users (and events) in the window, from the minute grain."""
    where, params, private = _where(MINUTE_GRAIN, tenant, window.start, window.end, Filters(), None)
    sql = f"SELECT {MINUTE_GRAIN.users}, sum(events) FROM {db}.minute_rollups WHERE {where}"

    def shape(rows: list) -> dict:
        users, events = rows[0] if rows else (0, 0)
        return {"visitors": int(users), "events": int(events or 0)}

    return Plan(sql, params, private, MINUTE_GRAIN, window.start, window.end, shape)


def newest_minute(db: str, tenant: str, now: float, lookback_s: int = 2 * 86400) -> Plan:
    """The tenant's newest queryable minute (through the merge), within the lookback."""
    end = (int(now) // 60 + 2) * 60
    start = end - lookback_s
    where, params, private = _where(MINUTE_GRAIN, tenant, start, end, Filters(), None)
    sql = f"SELECT toUInt32(max(minute)), count() FROM {db}.minute_rollups WHERE {where}"

    def shape(rows: list) -> int | None:
        newest, n = rows[0] if rows else (0, 0)
        return int(newest) if n else None

    return Plan(sql, params, private, MINUTE_GRAIN, start, end, shape)


ANOMALY_LIMIT = 500


def anomalies(db: str, tenant: str, rng: TimeRange, metric: str | None = None) -> Plan:
    """The tenant's stored anomalies in the range (written by tidemark/anomalies, 024_anomalies.sql),
    oldest first, at most ANOMALY_LIMIT. Not a rollup: no lambda merge here (the detector read
    through it); FINAL because two detection runs of one range may not be merged yet."""
    params: dict = {"s": rng.start, "e": rng.end}
    metric_filter = ""
    if metric is not None:
        _metric(HOURLY_GRAIN, metric)  # whitelisted
        metric_filter, params["m"] = "AND metric = %(m)s", metric
    sql = (
        f"SELECT toUInt32(at), toString(grain), toString(metric), dimension, value, toString(kind), "
        f"observed, expected, score FROM {db}.anomalies FINAL "
        f"WHERE tenant_id = {_private('tenant')} AND at >= toDateTime(%(s)s) AND at < toDateTime(%(e)s) "
        f"{metric_filter} ORDER BY at, grain, metric, dimension, value LIMIT {ANOMALY_LIMIT}"
    )
    names = ("t", "grain", "metric", "dimension", "value", "kind", "observed", "expected", "score")

    def shape(rows: list) -> list[dict]:
        out = [dict(zip(names, row, strict=True)) for row in rows]
        for a in out:
            a["t"] = int(a["t"])
            for k in ("observed", "expected", "score"):
                a[k] = round(float(a[k]), 3)
        return out

    return Plan(sql, params, {"tenant": tenant}, HOURLY_GRAIN, rng.start, rng.end, shape)


def pipeline_freshness(ch, db: str) -> dict:
    """Tenant-free pipeline state a tenant may see: the last published hour and the stream's last
    commit. Nothing derived from other tenants' events (their newest event time, the consumer lag,
    which measures everyone's traffic): per-tenant freshness comes from the tenant's own rows."""
    (last_hour,) = ch.execute(f"SELECT toUInt32(max(hour)) FROM {db}.published_hours WHERE status = 'published'")[0]
    (last_commit,) = ch.execute(
        f"SELECT toUInt32(max(committed_at)) FROM {db}.stream_batches WHERE committed_at >= now() - 86400"
    )[0]
    return {"last_published_hour": int(last_hour) or None, "last_commit": int(last_commit) or None}


def _dt(t: int) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def execute(ch, db: str, plan: Plan, count: Callable[[str], None] = lambda kind: None, snap: Snapshot | None = None):
    """Run the plan with a registry snapshot's parameters: ``snap`` (the API's, taken once per
    refresh and also behind the cache key, so the key and the rows agree), else one read now."""
    if snap is None:
        snap = snapshot(ch, db, _dt(plan.start), _dt(plan.end) + timedelta(seconds=0))
        count("registry")
    else:
        snap = snap.within(plan.start, plan.end)
    rows = ch.execute(plan.sql, {**plan.params, **snap.params()}, external_tables=plan.external_tables())
    count("rollup")
    return plan.shape(rows)
