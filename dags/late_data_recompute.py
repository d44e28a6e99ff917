"""Late-data recompute: every 15 minutes, republish the published hours that late events
have made stale since their publication ("dirty hours", registry.dirty_hours).

    find_dirty_hours -> recompute_hour[i] = (recompute -> quality_gate -> publish), one mapped
                        task group instance per dirty hour

The task group is mapped (.expand) so each hour runs the same three steps as the hourly
DAG, with per-hour dependencies: one hour's failed gate stops only that hour's publish,
and a failed gate fails without retries while a Spark failure is retried.

catchup=False: each run looks back over the whole window (lookback_hours, default 7 days)
from its own data_interval_end, so a missed run loses nothing; catching up would only
replay identical scans (and recompute the same hours) once per missed 15-minute slot.
max_active_runs=1 so two runs never recompute the same hour at once.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task, task_group
from airflow.sdk.exceptions import AirflowFailException

from tidemark.orchestration.airflow import recompute_operator

HOUR_ROLLUPS = Asset("clickhouse://tidemark/hour_rollups")


def _settings():
    from tidemark.config import settings

    return settings()


@dag(
    dag_id="late_data_recompute",
    description="Republish published hours that received late events",
    schedule=CronDataIntervalTimetable("*/15 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "tidemark",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
    },
    params={"lookback_hours": Param(7 * 24, type="integer", minimum=1,
                                    description="look for dirty hours this far before the run's interval end")},
    user_defined_macros={"tidemark_settings": _settings},
    tags=["tidemark", "batch"],
    doc_md=__doc__,
)
def late_data_recompute():
    @task
    def find_dirty_hours(data_interval_end=None, params=None) -> list[str]:
        from tidemark.batch import registry
        from tidemark.batch.hours import label

        start = data_interval_end - timedelta(hours=int(params["lookback_hours"]))
        return [label(h) for h in registry.dirty_hours(_settings(), start, data_interval_end)]

    @task(retries=0)
    def quality_gate(hour: str, run_id=None) -> dict:
        """Fail (without retries) when a 'fail' expectation failed; the failure is recorded in the registry."""
        from tidemark.batch.recompute import QualityGateFailed, gate_step

        try:
            summary = gate_step(hour, run_id)
        except QualityGateFailed as exc:
            raise AirflowFailException(str(exc)) from exc
        return {"hour": hour, "status": summary.status, "version": summary.version,
                "dedup_rows": summary.dedup_rows, "dropped_rows": summary.dropped_rows}

    @task(outlets=[HOUR_ROLLUPS])
    def publish(hour: str, run_id=None, outlet_events=None) -> int:
        """The atomic switch (a no-op for 'empty' and 'up_to_date'). Returns the hour's version."""
        from tidemark.batch.recompute import publish_step

        summary = publish_step(hour, run_id)
        outlet_events[HOUR_ROLLUPS].extra = {"hour": hour, "version": summary.version, "status": summary.status,
                                             "dedup_rows": summary.dedup_rows}
        return summary.version

    @task_group
    def recompute_hour(hour: str):
        recompute = recompute_operator("recompute", hour, name="tidemark-late-recompute",
                                       max_active_tis_per_dag=1)  # one Spark driver at a time (2 cores)
        recompute >> quality_gate(hour) >> publish(hour)

    recompute_hour.expand(hour=find_dirty_hours())


late_data_recompute()
