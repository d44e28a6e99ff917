"""Recompute one event hour from the lake; stage it for publication.

    read events_raw (one hour, one Delta snapshot: its version, files and pinned, partition-pruned
         read; only the columns used below)
    -> dedup by (tenant_id, event_id) over the whole hour (late arrivals included), cached
    -> raw quality gate: every rule's figures and the per-tenant exact figures in one aggregation,
       judged by the rule book: 'drop' rules filter rows, 'fail' rules block publishing
    -> minute rollups (the stream's own transform)
    -> stage in ClickHouse under the run's own new version (invisible), from the executors
    -> rollup quality gate on what readers would see (sums, HLL vs exact users)

``conclude`` then decides: a failed gate is recorded and the version thrown away, otherwise
the compare-and-set switch publishes it (tidemark/batch/publication.py has the protocol). The
gates' Great Expectations results and Data Docs are written from their figures after that
(``record_data_docs``), off the critical path.

Idempotent: a run whose lake files equal those of the current publication changes nothing
(it only records that the current version also holds for the newer snapshot).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from tidemark.batch import publication
from tidemark.batch.publication import Plan, Stats
from tidemark.config import Settings
from tidemark.errors import TidemarkError
from tidemark.hours import label, parse_hour
from tidemark.timing import LapTimer

log = logging.getLogger(__name__)


class QualityGateFailed(TidemarkError, RuntimeError):
    """An hour failed a 'fail' expectation: it was not published."""


@dataclass
class RunSummary:
    hour: str
    version: int
    delta_version: int
    run_id: str
    content_key: str = ""
    status: str = "staged"  # staged | published | superseded | failed_quality | up_to_date | empty
    raw_rows: int = 0
    dedup_rows: int = 0
    dropped_rows: int = 0
    late_rows: int = 0
    rollup_rows: int = 0
    tenants: int = 0
    reason: str = ""
    gates: list = field(default_factory=list)
    data_docs: str | None = None
    seconds: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g.get("passed") for g in self.gates)

    def plan(self) -> Plan:
        return Plan(parse_hour(self.hour), self.delta_version, self.content_key, self.version, self.run_id)

    def stats(self) -> Stats:
        return Stats(self.raw_rows, self.dedup_rows, self.rollup_rows, self.late_rows)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str))
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path: Path) -> RunSummary:
        return cls(**json.loads(Path(path).read_text()))


def summary_path(cfg: Settings, hour: datetime, run_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return cfg.home / "batch" / "runs" / label(hour) / f"{safe}.json"


def recompute(
    spark,
    cfg: Settings,
    hour: datetime,
    *,
    run_id: str | None = None,
    publish_now: bool = True,
    force: bool = False,
    on_snapshot: Callable[[int], None] | None = None,
) -> RunSummary:
    """Read, transform and stage one hour; with ``publish_now``, also ``conclude`` it.
    ``on_snapshot(delta_version)`` runs right after the lake snapshot is pinned (tests use it to
    land data mid-run)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from tidemark import quality
    from tidemark.batch import lake, registry
    from tidemark.quality.figures import SUPPORTED
    from tidemark.transforms.dedup import BATCH_COLUMNS, DEDUP_KEY, drop_duplicate_events
    from tidemark.transforms.rollups import minute_rollups

    run_id = run_id or uuid.uuid4().hex[:12]
    timer = LapTimer()
    # read: one snapshot for the whole run (the stream keeps committing meanwhile): its version, the
    # hour's files and the pinned read all come from it
    snap = lake.hour_snapshot(spark, cfg.lake.events_raw, hour, cfg.object_store)
    delta_version, raw, files = snap.version, snap.events, snap.files
    if on_snapshot is not None:
        on_snapshot(-1 if delta_version is None else delta_version)
    plan = Plan.new(hour, -1 if delta_version is None else delta_version, files, run_id)
    summary = RunSummary(
        hour=hour.isoformat(),
        version=plan.version,
        delta_version=plan.delta_version,
        run_id=run_id,
        content_key=plan.content_key,
    )
    current = None if force else publication.unchanged(cfg, plan)
    if current is not None:
        publication.reconfirm(cfg, plan, current)
        summary.status, summary.version = "up_to_date", current.version
        summary.raw_rows, summary.dedup_rows = current.raw_rows, current.dedup_rows
        summary.rollup_rows = current.rollup_rows
        log.info("hour already published from the same lake files", extra={"hour": label(hour)})
        return summary
    # Raises ColdHourRefused if the tiering DAG moved the hour's day to cold, with or without hot files:
    # hot rows of a cold day are only what landed after the move, and publishing them alone would
    # replace the hour's rollups with a fraction of it (the next cold move merges them into cold).
    lake.refuse_cold_hour(cfg, hour)
    if raw is None or not files:
        # Publishing nothing would hide whatever the stream shows for the hour.
        summary.status, summary.reason = "empty", "no raw events in the lake for this hour"
        log.warning("hour has no raw events; nothing to publish", extra={"hour": label(hour)})
        return summary
    params = quality.raw_hour_params(hour, registry.volume_history(cfg, hour))
    # The table rules judge the lake's columns; only BATCH_COLUMNS go through the dedup.
    figures = quality.Figures("raw_hour", params, raw.columns, unique_by=[DEDUP_KEY])
    if not figures.supported:
        raise quality.QualityConfigError(
            f"raw_hour uses an expectation the recompute cannot judge on figures (supported: {sorted(SUPPORTED)})"
        )
    timer.lap("plan")

    # transform. The raw count is observed on the dedup's own scan: a separate count() would read
    # the hour's (many, small) files a second time.
    observed = Observation(f"raw-{run_id}")
    narrow = raw.select(*BATCH_COLUMNS).observe(observed, F.count(F.lit(1)).alias("rows"))
    deduped = drop_duplicate_events(narrow).persist()
    try:
        summary.dedup_rows = deduped.count()
        summary.raw_rows = int(observed.get["rows"])
        timer.lap("read_dedup")
        # raw gate: every rule's figures and the published rows' per-tenant figures in one pass
        started = time.monotonic()
        by_tenant = _hour_figures(deduped, figures)
        raw_gate = figures.judge(
            deduped, quality.totals_of(by_tenant, figures.names()), f"{label(hour)}-{run_id}", started
        )
        summary.dropped_rows = raw_gate.dropped_rows
        kept = deduped if figures.keep_sql is None else deduped.where(F.expr(figures.keep_sql))
        exact = {
            r["tenant_id"]: (int(r["_events"]), int(r["_users"]), int(r["_late"] or 0))
            for r in by_tenant
            if r["_events"]
        }
        summary.late_rows = int(sum(v[2] for v in exact.values()))
        summary.tenants = len(exact)
        timer.lap("raw_gate")

        # write: staged, invisible until the switch
        publication.begin(cfg, plan)
        try:
            summary.rollup_rows = publication.stage(cfg, plan, minute_rollups(kept))
        except BaseException as exc:
            publication.fail(cfg, plan, summary.stats(), f"staging failed: {exc}"[:500], status="failed_run")
            raise
        timer.lap("rollups_stage")
    finally:
        deduped.unpersist()

    # Judged on figures too; the Data Docs of both gates are written by ``conclude``, after the switch.
    rollup_gate = quality.validate(
        _staged_vs_exact(spark, cfg, plan, exact),
        "hour_rollups",
        quality.hour_rollups_params(sum(v[0] for v in exact.values())),
        run_name=f"{label(hour)}-{run_id}",
        home=quality.quality_home(cfg),
        docs=False,
    )
    quality.report(raw_gate)
    timer.lap("rollup_gate")
    summary.gates = [raw_gate.as_dict(), rollup_gate.as_dict()]
    summary.reason = "; ".join(g.reason() for g in (raw_gate, rollup_gate) if not g.passed)
    summary.seconds = timer.laps
    if publish_now:
        try:
            conclude(cfg, summary, data_docs=False)
        finally:
            timer.lap("publish")
            summary.seconds = timer.laps
        record_data_docs(cfg, summary)
        timer.lap("data_docs")
        summary.seconds = timer.laps
    return summary


def _hour_figures(deduped, figures) -> list:
    """One aggregation over the deduplicated hour, one row per tenant: the raw gate's figures (see
    quality.figures: all additive, totalled by the caller) and, of the rows the drop rules keep, the
    events, exact distinct users and late events. Users are counted as (tenant, user) groups of a
    first hash aggregation that also carries every other figure, so no distinct-count expansion."""
    from pyspark.sql import functions as F

    keep = F.expr(figures.keep_sql) if figures.keep_sql is not None else F.lit(True)
    per_user = deduped.groupBy("tenant_id", "user_id").agg(
        *figures.aggregates(),
        F.sum(F.when(keep, 1).otherwise(0)).alias("_events"),
        F.sum(F.when(keep & F.col("is_late"), 1).otherwise(0)).alias("_late"),
    )
    user_kept = (F.col("_events") > 0) & F.col("user_id").isNotNull()
    return (
        per_user.groupBy("tenant_id")
        .agg(
            *[F.sum(n).alias(n) for n in figures.names()],
            F.sum("_events").alias("_events"),
            F.count(F.when(user_kept, 1)).alias("_users"),
            F.sum("_late").alias("_late"),
        )
        .collect()
    )


def _staged_vs_exact(spark, cfg: Settings, plan: Plan, exact: dict):
    """One row per tenant: what the staged version shows readers beside the exact figures."""
    staged = publication.staged_totals(cfg, plan.hour, plan.version)
    rows = []
    for tenant, (events, users, _late) in sorted(exact.items()):
        ch_events, ch_users, ch_min = staged.get(tenant, (0, 0, 0))
        rows.append(
            (tenant, ch_events, events, users, ch_users, abs(ch_users - users) / users if users else 0.0, ch_min)
        )
    return spark.createDataFrame(
        rows or [("", 0, 0, 0, 0, 0.0, 0)],
        "tenant_id STRING, events_sum LONG, dedup_rows LONG, exact_users LONG, hll_users LONG, "
        "users_rel_error DOUBLE, min_events LONG",
    )


def conclude(cfg: Settings, summary: RunSummary, *, data_docs: bool = True) -> RunSummary:
    """gate -> switch -> clean up -> Data Docs (unless ``data_docs`` is False: the caller writes them).
    Raises QualityGateFailed (after recording it and writing its Data Docs) on a failed gate."""
    if summary.status != "staged":
        return summary  # up_to_date, empty, or already concluded
    plan, stats = summary.plan(), summary.stats()
    if not summary.passed:
        publication.fail(cfg, plan, stats, summary.reason)
        summary.status = "failed_quality"
        record_data_docs(cfg, summary)
        raise QualityGateFailed(
            f"hour {label(plan.hour)} was not published: {summary.reason} (Data Docs: {summary.data_docs})"
        )
    switched = publication.switch(cfg, plan, stats, staged_events=summary.dedup_rows - summary.dropped_rows)
    summary.status = "published" if switched else "superseded"
    publication.cleanup(cfg, plan.hour)
    # After the switch: work that must neither delay nor undo a publish goes below (it cannot fail it).
    if data_docs:
        record_data_docs(cfg, summary)
    return summary


def record_data_docs(cfg: Settings, summary: RunSummary) -> RunSummary:
    """The gates' results into GE's store and the Data Docs site (from the figures the gates were
    judged on: no data is read). Best effort: the verdict is already in the summary and registry."""
    from tidemark import quality

    if not summary.gates:
        return summary
    try:
        quality.record(
            summary.gates, quality.quality_home(cfg)
        )  # fills each gate's data_docs_index and validation_page
    except Exception:
        log.warning("could not write the Data Docs of the run", extra={"hour": summary.hour}, exc_info=True)
        return summary
    summary.data_docs = next((g["data_docs_index"] for g in summary.gates if g.get("data_docs_index")), None)
    return summary


def _summary(cfg: Settings, hour_label: str, run_id: str) -> tuple[Path, RunSummary]:
    path = summary_path(cfg, parse_hour(hour_label), run_id)
    return path, RunSummary.read(path)


def gate_step(cfg: Settings, hour_label: str, run_id: str) -> RunSummary:
    """The orchestrators' quality-gate step for a staged run: raises QualityGateFailed (after
    recording it and removing the version) when a 'fail' expectation failed."""
    path, summary = _summary(cfg, hour_label, run_id)
    if summary.status == "staged" and not summary.passed:
        try:
            conclude(cfg, summary)
        finally:
            summary.write(path)
    return summary


def publish_step(cfg: Settings, hour_label: str, run_id: str) -> RunSummary:
    """The orchestrators' publish step: the switch and clean-up (a no-op for 'empty', 'up_to_date')."""
    path, summary = _summary(cfg, hour_label, run_id)
    summary = conclude(cfg, summary)
    summary.write(path)
    return summary
