"""Late-data recompute: every 15 minutes, recompute the hours that are due, over the contract's
whole acceptance window (TIDEMARK_RETENTION_DAYS):

* dirty hours: a lake commit after their publication's snapshot added data to them;
* hours with lake data that were never published (no hourly run, or it failed);
* failed hours, once their back-off (15 min, doubling, at most daily) has passed.

Each due hour runs the same steps as the hourly DAG (recompute, gate, publish, then anomaly
detection of the republished hour) in a mapped task group. An hour that
has failed FAILING_AFTER times in a row fails ``check_failing_hours`` with the reasons, so it
shows in the UI instead of retrying silently. ``retire_superseded_streams`` deletes the rows of
stream checkpoints that a newer one replaced (already invisible to readers).

catchup=False: each run looks over the whole window from its own data_interval_end (so unpausing
runs the latest interval once, never a backlog of them). max_active_runs=1 so two runs of this DAG
never recompute the same hour at once (and if an hourly run overlaps, the publication protocol
keeps the newer snapshot). Tasks: tidemark/orchestration/dag_tasks.py.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag

from tidemark.orchestration.dag_tasks import (
    check_failing_hours,
    find_due_hours,
    recompute_hour,
    retire_superseded_streams,
)


@dag(
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
    params={
        "lookback_hours": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="window to scan; default: the contract's acceptance window",
        ),
        "max_hours": Param(24, type="integer", minimum=1, description="hours recomputed per run at most"),
    },
    tags=["tidemark", "batch"],
    doc_md=__doc__,
)
def late_data_recompute():
    [recompute_hour.expand(hour=find_due_hours()), check_failing_hours(), retire_superseded_streams()]


late_data_recompute()
