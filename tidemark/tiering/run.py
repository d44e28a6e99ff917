"""One tiering run, in order: measure -> ClickHouse care -> hot tier -> cold tier -> Delta
maintenance -> measure and report. Used by ``tidemark tiering run``, by the tiering DAG's tasks and
by ``jobs/tiering.py`` (the Spark steps, under spark-submit).

ClickHouse care runs before the hot tier so that superseded versions and stale streaming rows are
gone before a day's minute rows are; the cold move runs before OPTIMIZE so days about to leave the
hot lake are not compacted first. A dry run measures and plans every step (ClickHouse checks run,
Delta plans come from the logs via delta-rs) and changes nothing, not even the metrics table.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from tidemark.config import Settings
from tidemark.tiering import clickhouse_care, cold, delta_maintenance, hot, inventory, report
from tidemark.tiering.options import SPARK_STEPS, RunOptions

log = logging.getLogger(__name__)

SparkRunner = Callable[[RunOptions], dict]  # runs the Spark steps of a run, returns their summaries


def clickhouse_step(cfg: Settings, opts: RunOptions) -> dict:
    result = clickhouse_care.run(cfg, opts.boundaries(cfg), dry_run=opts.dry_run)
    return {**clickhouse_care.summary(result), "alerts": result.parts_alerts}


def hot_step(cfg: Settings, opts: RunOptions) -> dict:
    results = hot.run(cfg, opts.boundaries(cfg), dry_run=opts.dry_run, run_id=opts.run_id)
    return {
        **hot.summary(results),
        "hot_from": opts.boundaries(cfg).hot_from.isoformat(),
        "alerts": [f"minute partition {r.day} kept: {r.reason}" for r in results if r.mismatches],
    }


def spark_steps(spark, cfg: Settings, opts: RunOptions) -> dict:
    """The cold move and Delta maintenance (what jobs/tiering.py runs)."""
    bounds = opts.boundaries(cfg)
    out = {}
    if "cold" in opts.steps:
        out["cold"] = cold.summary(cold.run(spark, cfg, bounds))
    if "delta" in opts.steps:
        out["delta"] = delta_maintenance.summary(delta_maintenance.run(spark, cfg, bounds))
    return out


def plan_spark_steps(cfg: Settings, opts: RunOptions) -> dict:
    bounds = opts.boundaries(cfg)
    out = {}
    if "cold" in opts.steps:
        out["cold"] = cold.plan(cfg, bounds)
    if "delta" in opts.steps:
        out["delta"] = delta_maintenance.plan(cfg, bounds)
    return out


def run(cfg: Settings, opts: RunOptions, spark_runner: SparkRunner | None = None) -> report.TieringReport:
    """A whole run in this process; the Spark steps go to ``spark_runner`` (spark-submit for the CLI,
    an in-process session in tests). Without one, or in a dry run, they are planned only."""
    run_id = opts.run_id or f"tiering-{uuid.uuid4().hex[:12]}"
    opts = dataclasses.replace(opts, run_id=run_id)
    rep = report.TieringReport(run_id, opts.interval_end, opts.dry_run, before=inventory.take(cfg))
    if not opts.dry_run:
        report.write(cfg, run_id, opts.interval_end, "before", rep.before)
    if "clickhouse" in opts.steps:
        rep.steps["clickhouse"] = clickhouse_step(cfg, opts)
    if "hot" in opts.steps:
        rep.steps["hot"] = hot_step(cfg, opts)
    if any(s in opts.steps for s in SPARK_STEPS):
        if opts.dry_run or spark_runner is None:
            rep.steps.update(plan_spark_steps(cfg, opts))
        else:
            rep.steps.update(spark_runner(opts))
    return finish(cfg, rep)


def finish(cfg: Settings, rep: report.TieringReport) -> report.TieringReport:
    """Measure after, collect the alerts, store and log the report."""
    for result in rep.steps.values():
        rep.alerts += result.pop("alerts", [])
    if not rep.dry_run:
        rep.after = inventory.take(cfg)
        report.write(cfg, rep.run_id, rep.interval_end, "after", rep.after)
    report.log_report(rep)
    return rep


# -- the DAG's tasks (each a separate process; the report task reads 'before' back) ----------------


def task_options(interval_end: datetime, run_id: str, steps: tuple[str, ...] | None = None) -> RunOptions:
    if steps:
        return RunOptions(interval_end, run_id=run_id, steps=steps)
    return RunOptions(interval_end, run_id=run_id)


def measure_before(cfg: Settings, opts: RunOptions) -> dict:
    stats = inventory.take(cfg)
    report.write(cfg, opts.run_id, opts.interval_end, "before", stats)
    return inventory.totals(stats)


def report_after(cfg: Settings, opts: RunOptions, steps: dict) -> report.TieringReport:
    rep = report.TieringReport(
        opts.run_id,
        opts.interval_end,
        False,
        before=report.read(cfg, opts.run_id, "before"),
        steps={k: dict(v) for k, v in steps.items() if v is not None},
    )
    return finish(cfg, rep)
