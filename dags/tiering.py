"""Tiering and maintenance, daily over the data interval that just ended (tidemark/tiering/):

* ``measure_before``: rows, bytes, files and small files per tier and partition -> ``tiering_reports``;
* ``clickhouse_care``: superseded batch versions, streaming rows of hours published longer than the
  grace, retired streams, OPTIMIZE of closed partitions, parts watch;
* ``hot_tier``: minute_rollups partitions older than TIDEMARK_HOT_DAYS are dropped once the warm tier
  (hour/day rollups) is verified to hold their totals through the lambda merge;
* ``lake_maintenance`` (spark-submit jobs/tiering.py): raw days older than TIDEMARK_LAKE_HOT_DAYS move
  to the cold Delta table (counted before they leave events_raw); OPTIMIZE of closed partitions,
  checkpoints, VACUUM (>= 7 days retention) and orphan files;
* ``report``: measures again, stores and logs the report, and fails on an alert (a partition near
  "too many parts", a day the warm tier does not match).

Every task is idempotent and safe to kill; a retry redoes only what is left. catchup=False: each
run works on everything older than its own boundaries.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task

from tidemark.orchestration.airflow import TidemarkSparkSubmitOperator, JOBS, settings


def _options(data_interval_end, run_id):
    from tidemark.tiering.run import task_options

    return task_options(data_interval_end, run_id)


@dag(
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "tidemark", "retries": 2, "retry_delay": timedelta(minutes=5),
                  "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=30)},
    tags=["tidemark", "maintenance"],
    doc_md=__doc__,
)
def tiering():
    @task
    def measure_before(data_interval_end=None, run_id=None) -> dict:
        from tidemark.tiering.run import measure_before as measure

        return measure(settings(), _options(data_interval_end, run_id))

    @task
    def clickhouse_care(data_interval_end=None, run_id=None) -> dict:
        from tidemark.tiering.run import clickhouse_step

        return clickhouse_step(settings(), _options(data_interval_end, run_id))

    @task
    def hot_tier(data_interval_end=None, run_id=None) -> dict:
        from tidemark.tiering.run import hot_step

        return hot_step(settings(), _options(data_interval_end, run_id))

    @task(retries=0)
    def report(care: dict, hot: dict, data_interval_end=None, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from tidemark.tiering.run import report_after

        rep = report_after(settings(), _options(data_interval_end, run_id), {"clickhouse": care, "hot": hot})
        if rep.alerts:
            raise AirflowFailException("tiering alerts: " + "; ".join(rep.alerts))
        return rep.as_dict()

    lake = TidemarkSparkSubmitOperator(
        task_id="lake_maintenance", conn_id="spark_default", application=str(JOBS / "tiering.py"),
        application_args=["--interval-end", "{{ data_interval_end.isoformat() }}", "--run-id", "{{ run_id }}"])
    care, hot = clickhouse_care(), hot_tier()
    measure_before() >> care >> hot >> lake >> report(care, hot)


tiering()
