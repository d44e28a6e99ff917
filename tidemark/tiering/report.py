"""The run's report: tiers before and after, what each step did, alerts.

It goes to three places: the ClickHouse metrics table ``tiering_reports`` (one row per tier,
table and partition, per phase; migration 020), the task log (one structured line per tier), and
stdout of ``tidemark tiering run`` (also with ``--dry-run``, which writes nothing).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from tidemark.config import Settings
from tidemark.io.clickhouse import client, insert_rows
from tidemark.tiering.inventory import PartitionStats, totals

log = logging.getLogger(__name__)

COLUMNS = (
    "run_id",
    "interval_end",
    "reported_at",
    "dry_run",
    "phase",
    "tier",
    "table_name",
    "partition",
    "rows",
    "bytes",
    "files",
    "small_files",
)
TIER_ORDER = ("hot", "warm", "lake_hot", "lake_cold", "lake_rejected")


@dataclass
class TieringReport:
    run_id: str
    interval_end: datetime
    dry_run: bool
    before: list[PartitionStats] = field(default_factory=list)
    after: list[PartitionStats] = field(default_factory=list)
    steps: dict[str, dict] = field(default_factory=dict)  # step -> what it did (or would do)
    alerts: list[str] = field(default_factory=list)

    def tier_totals(self) -> dict[str, dict]:
        before, after = totals(self.before), totals(self.after or self.before)
        empty = {"rows": 0, "bytes": 0, "files": 0, "small_files": 0, "partitions": 0}
        return {
            t: {"before": before.get(t, empty), "after": after.get(t, empty)}
            for t in TIER_ORDER
            if t in before or t in after
        }

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "interval_end": self.interval_end.isoformat(),
            "dry_run": self.dry_run,
            "tiers": self.tier_totals(),
            "steps": self.steps,
            "alerts": self.alerts,
            "small_files_top": [s.as_dict() for s in top_small(self.after or self.before)],
        }

    def lines(self) -> list[str]:
        label = "planned (dry run: nothing changed)" if self.dry_run else "before -> after"
        out = [
            f"tiering run {self.run_id}  interval end {self.interval_end.isoformat()}  {label}",
            f"{'tier':<14}{'rows':>24}{'MB':>20}{'files':>18}{'small files':>18}",
        ]
        for tier, ba in self.tier_totals().items():
            b, a = ba["before"], ba["after"]
            out.append(
                f"{tier:<14}{_pair(b['rows'], a['rows']):>24}"
                f"{_pair(round(b['bytes'] / 1e6, 2), round(a['bytes'] / 1e6, 2)):>20}"
                f"{_pair(b['files'], a['files']):>18}{_pair(b['small_files'], a['small_files']):>18}"
            )
        for step, result in self.steps.items():
            out.append(f"{step}: {json.dumps(result, default=str, sort_keys=True)}")
        small = top_small(self.after or self.before)
        if small:
            out.append("most small files: " + ", ".join(f"{s.table}[{s.partition}]={s.small_files}" for s in small))
        out += [f"ALERT: {a}" for a in self.alerts]
        return out


def _pair(before, after) -> str:
    return f"{before}" if before == after else f"{before} -> {after}"


def top_small(stats: list[PartitionStats], n: int = 5) -> list[PartitionStats]:
    return sorted((s for s in stats if s.small_files > 1), key=lambda s: -s.small_files)[:n]


def write(
    cfg: Settings,
    report_run_id: str,
    interval_end: datetime,
    phase: str,
    stats: list[PartitionStats],
    *,
    dry_run: bool = False,
) -> int:
    """Store one phase ('before' | 'after') of a run in ``tiering_reports``. A repeated phase (a
    retried task) adds rows with a later reported_at: readers take the latest per run and phase."""
    now = datetime.now(timezone.utc)
    rows = [
        (
            report_run_id,
            interval_end,
            now,
            int(dry_run),
            phase,
            s.tier,
            s.table,
            s.partition,
            s.rows,
            s.bytes,
            s.files,
            s.small_files,
        )
        for s in stats
    ]
    if not rows:  # an empty system still records that the run measured it
        rows = [(report_run_id, interval_end, now, int(dry_run), phase, "none", "", "", 0, 0, 0, 0)]
    return insert_rows(client(cfg.clickhouse), f"{cfg.clickhouse.database}.tiering_reports", COLUMNS, rows)


def read(cfg: Settings, report_run_id: str, phase: str) -> list[PartitionStats]:
    """The latest measurement of one phase of a run (e.g. the DAG's 'before', for its report task)."""
    rows = client(cfg.clickhouse).execute(
        f"SELECT tier, table_name, partition, rows, bytes, files, small_files "
        f"FROM {cfg.clickhouse.database}.tiering_reports WHERE run_id = %(r)s AND phase = %(p)s AND tier != 'none' "
        f"AND reported_at = (SELECT max(reported_at) FROM {cfg.clickhouse.database}.tiering_reports "
        f"WHERE run_id = %(r)s AND phase = %(p)s)",
        {"r": report_run_id, "p": phase},
    )
    return [PartitionStats(*r) for r in rows]


def log_report(report: TieringReport) -> None:
    # The tier lines are the report, not something to act on: INFO (Airflow's task log shows them;
    # the CLI prints the same figures as its table). Only alerts are raised above that.
    for tier, ba in report.tier_totals().items():
        log.info(
            "tiering tier",
            extra={
                "run_id": report.run_id,
                "tier": tier,
                "before": ba["before"],
                "after": ba["after"],
                "dry_run": report.dry_run,
            },
        )
    for alert in report.alerts:
        log.error("tiering alert", extra={"run_id": report.run_id, "alert": alert})
