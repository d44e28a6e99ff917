"""Hourly batch recompute: once the stream has committed everything that arrived by hour H's
end + the allowed lateness, recompute H from the Delta lake, gate it with Great Expectations
and publish it (compare-and-set; see tidemark/batch/publication.py).

H is the run's data_interval_start. The schedule is an explicit CronDataIntervalTimetable:
Airflow 3's default for a cron string is CronTriggerTimetable, whose data interval is a
single point, which would make every run recompute the wrong hour. catchup=True backfills
every hour since start_date (bounded by max_active_runs).
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task

from tidemark.orchestration.airflow import publish, quality_gate, recompute_operator, settings

HOUR = "{{ data_interval_start.strftime('%Y-%m-%dT%H') }}"


@dag(
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=pendulum.parse(settings().airflow.batch_start),  # TIDEMARK_BATCH_START; stdlib-only import
    catchup=True,
    max_active_runs=2,
    default_args={"owner": "tidemark", "retries": 3, "retry_delay": timedelta(minutes=2),
                  "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=30)},
    tags=["tidemark", "batch"],
    doc_md=__doc__,
)
def hourly_recompute():
    @task.sensor(poke_interval=30, timeout=4 * 3600, mode="reschedule", retries=0)
    def wait_for_stream(data_interval_start=None) -> bool:
        """True once the stream committed, on every partition, the offsets current at hour end + lateness."""
        import logging
        from datetime import datetime, timezone

        from tidemark.batch.planning import hour_complete

        state = hour_complete(settings(), data_interval_start, datetime.now(timezone.utc))
        logging.getLogger(__name__).info(state.reason)
        return state.ready

    wait_for_stream() >> recompute_operator("recompute", HOUR) >> quality_gate(HOUR) >> publish(HOUR)


hourly_recompute()
