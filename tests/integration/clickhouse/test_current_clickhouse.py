"""Every query the batch layer, tiering and the serving API send, on ClickHouse 18.16 and 26.9.

The pipeline's own functions run once, with settings whose ClickHouse host is ``dual:``: each
statement they build goes to the embedded 18.16 server and to chdb 26.9 (tidemark/io/chdb_client.py)
with the same parameters, and each answer is compared (tests/support/dual.py says what "equal"
means). Both versions start from the same migrations (tidemark/migrations.py, run through the same
client) and get the same rollups, written the way the pipeline writes them (tests/support/
tiering.py), then: the Delta-log index and dirty hours, a publication (stage from the worker
code, gate, switch, reconfirm, a failed run, clean-up), the batch report, every dashboard query
kind and grain, API keys, and a whole ClickHouse tiering pass (care, warm check, hot drop,
inventory and report), with the dashboards read again after it.

Coverage is checked, not assumed: every function under tidemark/batch, tidemark/tiering and
tidemark/serving that calls ``execute`` or ``insert_rows`` must have sent SQL through the dual
client (an AST scan finds them), so a new query joins this test or fails it.
"""

from __future__ import annotations

import ast
import os
from collections import defaultdict
from datetime import timedelta

import pytest
from support.dual import on_both
from support.tiering import (
    FIRST_DAY,
    INTERVAL_END,
    TENANTS,
    all_hours,
    events,
    is_published,
    tiering_cfg,
    write_rollups,
)

from tidemark import lambda_merge
from tidemark.batch import lake_log, planning, publication, registry, report, staging
from tidemark.config import PROJECT_ROOT
from tidemark.hours import HOUR, label
from tidemark.io.clickhouse import client
from tidemark.migrations import discover, migrate
from tidemark.serving import keys, queries
from tidemark.serving.queries import Filters
from tidemark.serving.ranges import TimeRange
from tidemark.tiering import clickhouse_care, hot, inventory, warm
from tidemark.tiering import report as tiering_report
from tidemark.tiering.options import boundaries

PER_HOUR = 12
START = INTERVAL_END - timedelta(days=14)
# Functions that send SQL but are not run here, with the reason.
NOT_RUN = {
    ("tidemark.serving.core", "Service.health.<locals>.ping"): "SELECT 1 (the health probe), run by test_isolation",
    ("tidemark.tiering.cold", "move_day"): "its .execute() calls are delta-spark MERGEs: Spark, no ClickHouse",
}


def write_lake(path: str, rows: list[tuple], appends: int = 3) -> int:
    """events_raw as the stream lands it (``appends`` commits: small files), written by delta-rs."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from tidemark.tables import table

    schema = table("events_raw")
    arrow = schema.arrow()
    for k in range(appends):
        part = rows[k::appends]
        data = pa.Table.from_pylist([dict(zip(arrow.names, r, strict=True)) for r in part], schema=arrow)
        write_deltalake(path, data, mode="append", partition_by=list(schema.partition_by))
    return DeltaTable(path).version()


def rollups_arrow(rows: list[tuple]):
    """Minute rollups of raw rows in the shape the recompute hands to staging."""
    import pyarrow as pa

    groups: dict[tuple, list[str]] = defaultdict(list)
    for r in rows:
        groups[(r[1], r[2].replace(second=0, microsecond=0), r[5], r[6], r[7])].append(r[3])
    keys_ = sorted(groups)
    return pa.table(
        {
            "tenant_id": [k[0] for k in keys_],
            "minute": pa.array([k[1] for k in keys_], pa.timestamp("us", tz="UTC")),
            "country": [k[2] for k in keys_],
            "device": [k[3] for k in keys_],
            "page": [k[4] for k in keys_],
            "events": [len(groups[k]) for k in keys_],
            "user_ids": [sorted(set(groups[k])) for k in keys_],
        }
    )


def stage(cfg, plan, rows) -> tuple[int, int]:
    """The executor-side staging code (one partition), then the driver's exactness check; returns
    the minute rows and the events staged (what the switch verifies)."""
    target = staging._Target(cfg.clickhouse, plan.version, "batch")
    (done,) = list(staging._insert_partition(target)(iter(rollups_arrow(rows).to_batches())))
    report_row = done.to_pydict()
    staging._check_exact(target, report_row["events"][0], report_row["first_minute"][0], report_row["last_minute"][0])
    return report_row["rows"][0], report_row["events"][0]


def dashboards(cfg, tenant: str, hour) -> list:
    """Every dashboard query kind, on every grain it can read (run through queries.execute)."""
    db = cfg.clickhouse.database
    h = int(hour.timestamp())
    minute6 = TimeRange(h - 3 * HOUR_S, h + 3 * HOUR_S, "minute")
    day = TimeRange(int(START.timestamp()), int(INTERVAL_END.timestamp()), "day")
    hourly = TimeRange(h - 24 * HOUR_S + HOUR_S, h + HOUR_S, "hour")
    straddle = TimeRange(h - 2 * HOUR_S, h + 90 * 60, "minute")
    plans = [
        queries.time_series(db, tenant, minute6, "events", Filters(), compare=False),
        queries.time_series(db, tenant, minute6, "users", Filters(country="US"), compare=True),
        queries.time_series(db, tenant, hourly, "users", Filters(), compare=True),
        queries.time_series(db, tenant, day, "events", Filters(device="mobile"), compare=False),
        queries.time_series(db, tenant, day, "users", Filters(country="DE", device="desktop"), compare=False),
        queries.top(db, tenant, day, "page", 5, Filters()),
        queries.top(db, tenant, day, "country", 1, Filters(country="US")),
        queries.top(db, tenant, hourly, "device", 3, Filters(page="/a")),
        queries.top(db, tenant, minute6, "page", 5, Filters()),
        queries.totals(db, tenant, day, Filters(), compare=True),
        queries.totals(db, tenant, hourly, Filters(page="/b"), compare=False),
        # minute rows before ``h`` as if dropped: whole hours from hour_rollups, minutes after (a UNION ALL)
        queries.totals(db, tenant, straddle, Filters(country="US"), compare=False, minute_from=h),
        queries.top(db, tenant, straddle, "page", 5, Filters(), minute_from=h),
        queries.realtime(db, tenant, TimeRange(h + 5 * 60, h + 10 * 60, "minute")),
        queries.newest_minute(db, tenant, now=INTERVAL_END.timestamp()),
    ]
    ch = client(cfg.clickhouse)
    answers = [queries.execute(ch, db, plan) for plan in plans]
    answers.append(lambda_merge.hour_totals(ch, db, tenant, START, INTERVAL_END, "country"))
    answers.append(lambda_merge.minute_counts(ch, db, hour, hour + HOUR, [tenant]))
    return answers


HOUR_S = 3600
LIVE_S = 600  # the allowed lateness: older on-time events count as backfill, not in freshness


def slo_figures(cfg, ch) -> dict:
    """Every SLO figure recorded the way the running system records it, then evaluated and read back."""
    from datetime import datetime, timezone

    from tidemark.slo import figures, latency, monitor, status
    from tidemark.slo.maths import BURN_SHORT_S

    db = cfg.clickhouse.database
    now = datetime.now(timezone.utc).replace(microsecond=0)
    rec = latency.LatencyRecorder(process="versions")
    for seconds, span in ((0.02, "7d"), (0.04, "7d"), (4.0, "7d"), (0.5, "90d"), (12.0, "90d")):
        rec.record("/api/v1/totals", span, seconds, at=now.timestamp() - 120)
    assert rec.flush(ch, db) == 2
    status.record_reconciliation(ch, db, "versions", 1000, 999)
    mon = monitor.Monitor(cfg, "http://127.0.0.1:9/health")
    mon.pending = [(now, mon.url, 1, 200, 3), (now, mon.url, 0, 0, 2000)]
    mon.write()
    assert not mon.pending
    return {
        "evaluated": [
            (f.objective.name, f.good, f.total, f.value) for f in figures.evaluate(ch, db, now, 3600, LIVE_S)
        ],
        "hourly": figures.hourly(ch, db, now, 3 * 3600, LIVE_S),
        "latest": status.latest(ch, db),
        "short": figures.evaluate(ch, db, now, BURN_SHORT_S, LIVE_S),
    }


@pytest.fixture(scope="module")
def world(stack, dual_log, tmp_path_factory):
    database = f"{stack.clickhouse.database}_versions"
    cfg = on_both(tiering_cfg(stack, tmp_path_factory.mktemp("versions") / "lake", database), database)
    client(cfg.clickhouse, database="default").execute(f"DROP DATABASE IF EXISTS {database}")
    out: dict = {"cfg": cfg}
    assert migrate(cfg) == [m.name for m in discover()]

    hours = all_hours()
    raw = events(hours, PER_HOUR)
    delta_version = write_lake(cfg.lake.events_raw, raw)
    current = write_rollups(cfg, raw, delta_version)
    late_hours = sorted(current)[:2]  # late events land in two published hours: they become dirty
    write_lake(cfg.lake.events_raw, events(late_hours, 2, seed="late"), appends=1)

    # batch layer: the Delta-log index, dirty and due hours, the registry
    out["indexed"] = lake_log.index(cfg)
    out["dirty"] = planning.dirty_hours(cfg, START, INTERVAL_END)
    out["due"] = planning.due_hours(cfg, INTERVAL_END, window=timedelta(days=14))
    assert registry.current(cfg, hours).keys() == current.keys()
    registry.versions(cfg, hours[0])
    registry.volume_history(cfg, hours[-4])

    # a publication of a never-published hour, a failed run, a reconfirm and clean-up
    # an hour of a closed day, so the tiering pass below has a partition with several parts to OPTIMIZE
    closed = (INTERVAL_END - timedelta(days=1)).date()
    hour = next(h for h in reversed(hours) if not is_published(h) and h.date() < closed)
    rows = [r for r in raw if r[2].replace(minute=0, second=0, microsecond=0) == hour]
    plan = publication.Plan.new(hour, delta_version, ["part-0.parquet"], "versions-run")
    assert publication.unchanged(cfg, plan) is None
    publication.begin(cfg, plan)
    staged, staged_events = stage(cfg, plan, rows)
    out["staged_totals"] = publication.staged_totals(cfg, hour, plan.version)
    stats = publication.Stats(raw_rows=len(rows), dedup_rows=len(rows), rollup_rows=staged)
    out["switched"] = publication.switch(cfg, plan, stats, staged_events=staged_events)
    failed = publication.Plan.new(hour, delta_version, ["part-1.parquet"], "versions-failed-run")
    publication.begin(cfg, failed)
    stage(cfg, failed, rows[:3])
    publication.fail(cfg, failed, publication.Stats(), "gate failed on purpose")
    out["failures"] = registry.failures(cfg, [hour])
    newer = publication.Plan.new(hour, delta_version + 1, ["part-0.parquet"], "versions-reconfirm")
    cur = publication.unchanged(cfg, newer)
    assert cur is not None and cur.version == plan.version
    publication.reconfirm(cfg, newer, cur)
    out["present"] = publication.present_versions(cfg, hour)
    out["removed"] = publication.cleanup(cfg, hours[1], now=INTERVAL_END + timedelta(days=1))
    manifest = {
        "minute_counts": [(r[1], f"{r[2]:%Y-%m-%dT%H:%M}", r[5], r[6], r[7], 1) for r in raw],
        "late_events_per_hour": {},
    }
    out["batch_report"] = report.batch_report(cfg, manifest, [hour, hours[1], hours[2]])

    # serving: API keys, every dashboard query, the pipeline's freshness
    key, token = keys.create(cfg, TENANTS[0], "versions")
    keys.list_keys(cfg, TENANTS[0])
    ch = client(cfg.clickhouse)
    ring = keys.KeyRing()
    ring.load(ch, cfg.clickhouse.database)
    assert ring.verify(token) is not None
    keys.revoke(cfg, key.key_id)
    ring.load(ch, cfg.clickhouse.database)
    assert ring.verify(token) is None
    queries.pipeline_freshness(ch, cfg.clickhouse.database)
    out["slo"] = slo_figures(cfg, ch)
    out["dashboards_before"] = [dashboards(cfg, t, hour) for t in TENANTS]

    # tiering: warm check, inventory and its report, ClickHouse care, the hot tier
    bounds = boundaries(cfg, INTERVAL_END, wall_now=INTERVAL_END)
    out["warm"] = warm.compare_day(ch, cfg.clickhouse.database, FIRST_DAY, users_tolerance=0.02)
    stats_before = inventory.clickhouse_partitions(cfg, cfg.tiering.small_file_bytes)
    tiering_report.write(cfg, "versions-tiering", INTERVAL_END, "before", stats_before)
    tiering_report.read(cfg, "versions-tiering", "before")
    out["care"] = clickhouse_care.summary(clickhouse_care.run(cfg, bounds))
    out["hot"] = hot.summary(hot.run(cfg, bounds))
    out["minute_horizon"] = lambda_merge.minute_horizon(ch, cfg.clickhouse.database)
    out["dashboards_after"] = [dashboards(cfg, t, hour) for t in TENANTS]
    yield out
    if os.environ.get("TIDEMARK_KEEP_STACK") != "1":
        client(cfg.clickhouse, database="default").execute(f"DROP DATABASE IF EXISTS {database}")


def test_every_query_answers_the_same_on_clickhouse_18_16_and_26_9(world, dual_log):
    assert dual_log.exchanges, "nothing was sent"
    assert not dual_log.mismatches, f"{len(dual_log.mismatches)} answers differ:\n{dual_log.report()}"


def test_the_scenario_exercised_real_work(world):
    """Guards against a vacuous comparison: each step found or changed something."""
    assert world["indexed"] == 4 and world["switched"] is True
    assert len(world["dirty"]) == 2, "the two published hours that received late events"
    assert world["warm"][0] > 0 and world["warm"][1] == []
    assert world["care"]["versions_removed"] > 0 and world["care"]["stream_rows_deleted"] > 0
    assert world["hot"]["days_dropped"] > 0
    assert any(world["dashboards_before"][0][0])  # the minute series of the first tenant has points
    slo = dict((name, (good, total)) for name, good, total, _value in world["slo"]["evaluated"])
    assert slo["query_7d_p99"] == (2, 3) and slo["query_90d_p99"] == (1, 2)
    assert slo["availability"] == (1, 2) and slo["events_ingested"] == (999, 1000)
    assert [s["slo"] for s in world["slo"]["latest"]] == list(slo)


def _senders(package: str) -> set[tuple[str, str]]:
    """(module, qualname) of every function in ``package`` (a package or a module) that calls
    ``.execute`` (a client's, not queries.execute) or ``insert_rows`` itself: what must have run on
    both versions."""
    found = set()

    def sends(fn) -> bool:
        todo = list(ast.iter_child_nodes(fn))
        while todo:
            node = todo.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
                continue  # their calls belong to them
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Attribute) and f.attr == "execute":
                    if not (isinstance(f.value, ast.Name) and f.value.id == "queries"):
                        return True
                if isinstance(f, ast.Name) and f.id == "insert_rows":
                    return True
            todo.extend(ast.iter_child_nodes(node))
        return False

    def visit(node, module: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                if sends(child):
                    found.add((module, prefix + child.name))
                visit(child, module, f"{prefix}{child.name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, module, f"{prefix}{child.name}.")
            else:
                visit(child, module, prefix)

    module = PROJECT_ROOT / "tidemark" / f"{package}.py"
    if module.exists():
        visit(ast.parse(module.read_text()), f"tidemark.{package}", "")
    for path in sorted((PROJECT_ROOT / "tidemark" / package).glob("*.py")):
        visit(ast.parse(path.read_text()), f"tidemark.{package}.{path.stem}", "")
    return found


def test_every_sql_sending_function_of_batch_tiering_and_serving_ran_on_both(world, dual_log):
    readers = ("batch", "tiering", "serving", "lambda_merge", "slo")
    wanted = set().union(*(_senders(p) for p in readers)) - NOT_RUN.keys()
    assert len(wanted) > 25, sorted(wanted)
    missing = wanted - dual_log.callers
    assert not missing, f"functions that send SQL but did not run on both versions: {sorted(missing)}"
    assert {label(h) for h in world["dirty"]}


def test_the_comparison_is_not_vacuous():
    from datetime import datetime, timezone

    from support.dual import compare

    assert compare("SELECT v FROM t", [(1,), (2,)], [(2,), (1,)])[0]
    assert not compare("SELECT v FROM t", [(1,)], [(2,)])[0]
    assert not compare("SELECT v FROM t ORDER BY v", [(1,), (2,)], [(2,), (1,)])[0]
    assert compare("SELECT v FROM (SELECT v FROM t ORDER BY v) ", [(1,), (2,)], [(2,), (1,)])[0]
    aware, naive = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 1)
    assert compare("SELECT t", [(aware,)], [(aware.astimezone(timezone(timedelta(hours=2))),)])[0]
    assert not compare("SELECT t", [(aware,)], [(naive,)])[0]
    assert not compare("SELECT h, groupUniqArray(v)", [(1, [1, 2])], [(1, [1, 3])])[0]
    assert not compare("SELECT count() FROM db.minute_rollups", [(0,)], [(3,)])[0]
    assert not compare("SELECT partition FROM system.parts", [("20261101",)], [("20261102",)])[0]
