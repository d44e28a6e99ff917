"""Hourly batch recompute: once the stream has committed everything that arrived by hour H's
end + the allowed lateness, recompute H from the Delta lake, gate it with Great Expectations
and publish it (compare-and-set; see tidemark/batch/publication.py); then score H for anomalies
against its seasonal baseline (tidemark/anomalies).

H is the run's data_interval_start. The schedule is an explicit CronDataIntervalTimetable:
Airflow 3's default for a cron string is CronTriggerTimetable, whose data interval is a
single point, which would make every run recompute the wrong hour. catchup=True backfills
every hour since start_date = TIDEMARK_BATCH_START (bounded by max_active_runs); the demo
sets it to its first hour. Tasks: tidemark/orchestration/dag_tasks.py.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag

from tidemark.orchestration.dag_tasks import INTERVAL_HOUR as HOUR
from tidemark.orchestration.dag_tasks import (
    detect_anomalies,
    publish,
    quality_gate,
    recompute_operator,
    settings,
    wait_for_stream,
)


@dag(
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=pendulum.parse(settings().airflow.batch_start),  # TIDEMARK_BATCH_START; reads the environment only
    catchup=True,
    max_active_runs=2,
    default_args={
        "owner": "tidemark",
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
    },
    tags=["tidemark", "batch"],
    doc_md=__doc__,
)
def hourly_recompute():
    (
        wait_for_stream()
        >> recompute_operator("recompute", HOUR)
        >> quality_gate(HOUR)
        >> publish(HOUR)
        >> detect_anomalies(HOUR)
    )


hourly_recompute()
