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
run works on everything older than its own boundaries (unpausing runs the latest day once).
Tasks: tidemark/orchestration/dag_tasks.py.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag

from tidemark.orchestration.dag_tasks import clickhouse_care, hot_tier, lake_maintenance, measure_before, report


@dag(
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "tidemark",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
    },
    tags=["tidemark", "maintenance"],
    doc_md=__doc__,
)
def tiering():
    measure_before() >> (care := clickhouse_care()) >> (hot := hot_tier()) >> lake_maintenance() >> report(care, hot)


tiering()
