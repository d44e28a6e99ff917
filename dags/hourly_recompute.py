"""Hourly batch recompute: once the stream has moved past hour H (+ grace), recompute H
from the Delta lake, gate it with Great Expectations and republish it atomically.

    wait_for_stream -> recompute (spark-submit --no-publish) -> quality_gate -> publish

H is the run's data_interval_start. The schedule is an explicit CronDataIntervalTimetable:
Airflow 3's default for a cron string is CronTriggerTimetable, whose data interval is a
single point (start == end == logical date), which would make every run recompute the
wrong hour. catchup=True backfills every hour since start_date (bounded by max_active_runs).

Top level imports only airflow, pendulum and the standard library: tidemark is imported
inside the tasks, so parsing this file stays cheap.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from tidemark.orchestration.airflow import recompute_operator

HOUR_ROLLUPS = Asset("clickhouse://tidemark/hour_rollups")


def _settings():
    from tidemark.config import settings

    return settings()


@dag(
    dag_id="hourly_recompute",
    description="Recompute, gate and republish each event hour from the lake",
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    # TIDEMARK_BATCH_START via tidemark.config (stdlib-only import): catchup backfills from here.
    start_date=pendulum.parse(__import__("tidemark.config", fromlist=["settings"]).settings().airflow.batch_start),
    catchup=True,
    max_active_runs=2,
    default_args={
        "owner": "tidemark",
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
    },
    params={"grace_minutes": Param(10, type="integer", minimum=0,
                                   description="wait until the stream is this far past the hour's end")},
    user_defined_macros={"tidemark_settings": _settings},
    tags=["tidemark", "batch"],
    doc_md=__doc__,
)
def hourly_recompute():
    @task.sensor(poke_interval=30, timeout=4 * 3600, mode="reschedule", retries=0)
    def wait_for_stream(data_interval_end=None, params=None) -> bool:
        """True once a committed micro-batch's newest event is past the hour's end + grace."""
        from tidemark.batch import registry

        return registry.stream_passed(_settings(), data_interval_end + timedelta(minutes=int(params["grace_minutes"])))

    recompute = recompute_operator("recompute", "{{ data_interval_start.strftime('%Y-%m-%dT%H') }}",
                                   name="tidemark-recompute-{{ data_interval_start.strftime('%Y-%m-%dT%H') }}")

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

    hour = "{{ data_interval_start.strftime('%Y-%m-%dT%H') }}"
    wait_for_stream() >> recompute >> quality_gate(hour) >> publish(hour)


hourly_recompute()
