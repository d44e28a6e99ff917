"""Query plans: the coarsest grain that answers, the tenant constraint and the lambda merge in every
query, and user text only as bound parameters."""

from tidemark.serving import grains, queries
from tidemark.serving.queries import Filters
from tidemark.serving.ranges import resolve

NOW = 1_796_142_437
EVIL = "x' OR 1=1 --"


def _plans(filters):
    out = []
    for preset in ("1h", "24h", "7d", "90d"):
        r = resolve(NOW, preset)
        out += [queries.time_series("db", "acme", r, m, filters, c) for m in ("events", "users") for c in (True, False)]
        out += [queries.top("db", "acme", r, d, 10, filters) for d in ("page", "country", "device")]
        out.append(queries.totals("db", "acme", r, filters, True))
    return out


def test_grain_follows_the_bucket_and_dimensions():
    assert (
        queries.time_series("db", "t", resolve(NOW, "1h"), "events", Filters(), False).grain.table == "minute_rollups"
    )
    assert queries.time_series("db", "t", resolve(NOW, "7d"), "events", Filters(), False).grain.table == "day_rollups"
    assert queries.time_series("db", "t", resolve(NOW, "90d"), "users", Filters(), False).grain.table == "day_rollups"
    # one dimension: the per-dimension grains answer; two: only the minute grain has both
    assert queries.top("db", "t", resolve(NOW, "7d"), "page", 5, Filters(page="/")).grain.table == "day_rollups"
    assert queries.top("db", "t", resolve(NOW, "7d"), "page", 5, Filters(country="US")).grain.table == "minute_rollups"


def test_every_query_is_tenant_bound_merged_and_parameterized():
    for filters in (Filters(), Filters(country=EVIL), Filters(page=EVIL, device=EVIL)):
        for plan in _plans(filters):
            assert "tenant_id = (SELECT tenant FROM _req)" in plan.sql and plan.private["tenant"] == "acme"
            assert "layer = 'batch'" in plan.sql and "%(pub)s" in plan.sql  # lambda_merge.merged_filter
            assert EVIL not in plan.sql and "acme" not in plan.sql
            assert "events_raw" not in plan.sql and "rollup_input" not in plan.sql


def test_tenant_and_filter_values_never_reach_the_query_text():
    """clickhouse-driver inlines bound parameters into the text that every 18.16 user can read in
    system.processes: the tenant and the filter values go in the external table, never in params."""
    for filters in (Filters(country="ZZ-marker"), Filters(page="/marker", device="marker-dev")):
        for plan in _plans(filters):
            inlined = repr(plan.params) + plan.sql
            for value in ("acme", *filters.as_dict().values()):
                assert value not in inlined
            (table,) = plan.external_tables()
            assert table["name"] == "_req" and table["data"] == [plan.private]
            assert {n for n, _ in table["structure"]} == set(plan.private)
            assert set(plan.private.values()) == {"acme", *filters.as_dict().values()}


def test_series_shape_aligns_previous_period():
    r = resolve(NOW, "24h")
    plan = queries.time_series("db", "t", r, "events", Filters(), True)
    rows = [(r.start, 5), (r.start - r.span, 3)]
    points = plan.shape(rows)
    assert len(points) == 24 and points[0] == {"t": r.start, "value": 5, "previous": 3}


def test_minute_horizon_hour_grain_where_it_answers_the_same_else_a_reasoned_refusal():
    import pytest

    from tidemark.serving.ranges import TimeRange

    h = NOW // 3600 * 3600 - 30 * 86400  # whole hours, 30 days ago
    horizon = h + 86400  # minute rows before it were dropped
    hours = TimeRange(h, h + 2 * 3600, "minute")
    assert queries.totals("db", "t", hours, Filters(country="US"), False, minute_from=horizon).grain.name == "hourly"
    assert queries.top("db", "t", hours, "page", 5, Filters(), minute_from=horizon).grain.name == "hourly"
    for plan, why in (
        (lambda: queries.totals("db", "t", hours, Filters(country="US", device="d"), False, horizon), "two dimensions"),
        (lambda: queries.top("db", "t", TimeRange(h + 60, h + 3600, "minute"), "page", 5, Filters(), horizon), "whole"),
        (lambda: queries.time_series("db", "t", hours, "events", Filters(), False, horizon), "minute buckets"),
    ):
        with pytest.raises(grains.MinuteDetailDropped, match=why):
            plan()
    # after the horizon, the minute grain as before
    later = TimeRange(horizon, horizon + 3600, "minute")
    assert queries.totals("db", "t", later, Filters(country="US", device="d"), False, horizon).grain.name == "minute"


def test_a_range_from_whole_hours_before_the_horizon_to_minutes_after_it_reads_both_tiers():
    import pytest

    from tidemark.serving.ranges import TimeRange

    horizon = NOW // 86400 * 86400 - 30 * 86400  # a day boundary: minute rows before it were dropped
    straddle = TimeRange(horizon - 2 * 3600, horizon + 90 * 60, "minute")  # 22:00 .. 01:30
    for plan in (
        queries.totals("db", "acme", straddle, Filters(country=EVIL), False, horizon),
        queries.totals("db", "acme", straddle, Filters(), False, horizon),
        queries.top("db", "acme", straddle, "page", 5, Filters(page=EVIL), minute_from=horizon),
    ):
        assert plan.grain is grains.STRADDLE_GRAIN and plan.params["h"] == horizon
        assert "db.hour_rollups" in plan.sql and "db.minute_rollups" in plan.sql
        # each side is tenant-bound, merged and ranged on its own (18.16 pushes nothing into a UNION ALL)
        assert plan.sql.count("tenant_id = (SELECT tenant FROM _req)") == plan.sql.count("FROM db.") >= 2
        assert plan.sql.count("layer = 'batch'") == plan.sql.count("FROM db.")
        assert "hour < toDateTime(%(h)s)" in plan.sql and "minute >= toDateTime(%(h)s)" in plan.sql
        assert EVIL not in plan.sql and "acme" not in plan.sql
    # minutes before the horizon, two dimensions, or minute buckets: still refused
    for ask, why in (
        (
            lambda: queries.totals(
                "db", "t", TimeRange(horizon - 30 * 60, horizon + 60, "minute"), Filters(), False, horizon
            ),
            "whole hours",
        ),
        (
            lambda: queries.totals("db", "t", straddle, Filters(country="US", device="d"), False, horizon),
            "two dimensions",
        ),
        (lambda: queries.time_series("db", "t", straddle, "events", Filters(), False, horizon), "minute buckets"),
    ):
        with pytest.raises(grains.MinuteDetailDropped, match=why):
            ask()


def test_split_at_a_bucket_boundary_reads_two_disjoint_ranges():
    r = resolve(NOW, "90d")
    plan = queries.time_series("db", "t", r, "users", Filters(), True)
    at = r.end - 86400
    past, live = queries.split_at(plan, at)
    assert (past.start, past.end, past.params["e"], past.params["e_last"]) == (plan.start, at, at, at - 1)
    assert (live.start, live.end, live.params["s"], live.params["e"]) == (at, plan.end, at, plan.end)
    assert past.sql == live.sql == plan.sql
    rows = past.shape([(r.start, 3)]) + live.shape([(at, 4)])
    points = plan.shape(rows)
    assert points[0]["value"] == 3 and points[-1]["value"] == 4


def test_compared_totals_split_at_the_current_period_keep_each_periods_group():
    r = resolve(NOW, "7d")
    plan = queries.totals("db", "t", r, Filters(), True)
    previous, current = queries.split_at(plan, r.start)
    assert previous.params["cur"] == current.params["cur"] == r.start  # the group flag is unchanged
    rows = previous.shape([(0, 5, 2)]) + current.shape([(1, 7, 3)])
    assert plan.shape(rows) == {"events": 7, "users": 3, "previous": {"events": 5, "users": 2}}


def test_anomalies_are_tenant_bound_and_private():
    for metric in (None, "events", "users"):
        plan = queries.anomalies("db", "acme", resolve(NOW, "7d"), metric)
        assert "tenant_id = (SELECT tenant FROM _req)" in plan.sql and plan.private == {"tenant": "acme"}
        assert "acme" not in plan.sql + repr(plan.params) and "FINAL" in plan.sql
    rows = [(NOW // 3600 * 3600, "hour", "events", "page", "/", "drop", 0.0, 80.123456, -7.0)]
    (shaped,) = queries.anomalies("db", "acme", resolve(NOW, "7d")).shape(rows)
    assert shaped == {
        "t": NOW // 3600 * 3600,
        "grain": "hour",
        "metric": "events",
        "dimension": "page",
        "value": "/",
        "kind": "drop",
        "observed": 0.0,
        "expected": 80.123,
        "score": -7.0,
    }
