"""The DAG toolkit: every task the Airflow DAGs run, so the DAG files hold only their schedule and graph.

Imports only Airflow at module level; Tidemark's code and settings are imported inside the tasks,
when they run, so parsing a DAG file stays cheap, needs no JVM jars and opens no connection
(tests/integration/orchestration/test_dags.py parses the folder under an audit hook to hold that).

Sections: assets; the Spark operator and its two uses (recompute one hour, lake maintenance); the
three steps of an hour (recompute, gate, publish) shared by the hourly and late-data DAGs, and the
anomaly detection the hourly DAG runs after its publish; the
late-data planning tasks; the tiering tasks.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, task, task_group
from airflow.sdk.exceptions import AirflowFailException

REPO = Path(__file__).resolve().parent.parent.parent
JOBS = REPO / "jobs"
HOUR_ROLLUPS = Asset("clickhouse://tidemark/hour_rollups")
# hourly_recompute's event hour: its run's data interval (CronDataIntervalTimetable).
INTERVAL_HOUR = "{{ data_interval_start.strftime('%Y-%m-%dT%H') }}"


def settings():
    from tidemark.config import settings as load

    return load()


# -- Spark ---------------------------------------------------------------------------------------


class TidemarkSparkSubmitOperator(SparkSubmitOperator):
    """spark-submit with Tidemark's engine configuration (the Kafka/Delta jars from ``make setup``,
    the Delta extension, the venv's interpreter), taken from ``tidemark.spark`` when the task runs.

    ``spark_default`` decides where it runs: ``local[2]`` on the embedded stack, a cluster in production.
    """

    def execute(self, context):
        from tidemark.spark import engine_conf, python_env

        self.conf = {**engine_conf(settings()), **(self.conf or {})}
        self.env_vars = {**python_env(), **(self.env_vars or {})}
        return super().execute(context)


def recompute_operator(task_id: str, hour: str, **kwargs) -> TidemarkSparkSubmitOperator:
    """The recompute of one event hour (stage and check, no publish: later tasks gate and switch)."""
    return TidemarkSparkSubmitOperator(
        task_id=task_id,
        conn_id="spark_default",
        application=str(JOBS / "recompute_hour.py"),
        application_args=["--hour", hour, "--run-id", "{{ run_id }}", "--no-publish"],
        **kwargs,
    )


def lake_maintenance() -> TidemarkSparkSubmitOperator:
    """The tiering DAG's Spark steps (jobs/tiering.py): cold move, OPTIMIZE, checkpoints, VACUUM."""
    return TidemarkSparkSubmitOperator(
        task_id="lake_maintenance",
        conn_id="spark_default",
        application=str(JOBS / "tiering.py"),
        application_args=["--interval-end", "{{ data_interval_end.isoformat() }}", "--run-id", "{{ run_id }}"],
    )


# -- one hour: wait, recompute, gate, publish -----------------------------------------------------


@task.sensor(poke_interval=30, timeout=4 * 3600, mode="reschedule", retries=0)
def wait_for_stream(data_interval_start=None) -> bool:
    """True once the serving stream committed, on every partition, the offsets current at hour end +
    lateness (tidemark.batch.planning.hour_complete; with producer timestamps, see its CreateTime note)."""
    from datetime import datetime, timezone

    import structlog  # Airflow's own: its named loggers honour namespace_levels (tidemark=INFO) in the task log

    from tidemark.batch.planning import hour_complete

    state = hour_complete(settings(), data_interval_start, datetime.now(timezone.utc))
    structlog.get_logger(__name__).info(state.reason)
    return state.ready


@task(retries=0)
def quality_gate(hour: str, run_id=None) -> dict:
    """Fail (without retries) when a 'fail' expectation failed; the failure is recorded in the
    registry and the staged version removed."""
    from tidemark.batch.recompute import QualityGateFailed, gate_step

    try:
        summary = gate_step(settings(), hour, run_id)
    except QualityGateFailed as exc:
        raise AirflowFailException(str(exc)) from exc
    return {
        "hour": hour,
        "status": summary.status,
        "version": summary.version,
        "dedup_rows": summary.dedup_rows,
        "dropped_rows": summary.dropped_rows,
    }


@task(outlets=[HOUR_ROLLUPS])
def publish(hour: str, run_id=None, outlet_events=None) -> dict:
    """The compare-and-set switch and clean-up (a no-op for 'empty' and 'up_to_date')."""
    from tidemark.batch.recompute import publish_step

    summary = publish_step(settings(), hour, run_id)
    outlet_events[HOUR_ROLLUPS].extra = {
        "hour": hour,
        "version": summary.version,
        "status": summary.status,
        "dedup_rows": summary.dedup_rows,
    }
    return {"hour": hour, "status": summary.status, "version": summary.version}


@task(retries=2, retry_delay=timedelta(minutes=1))
def detect_anomalies(hour: str, run_id=None) -> dict:
    """Score the hour just published against its seasonal baseline (tidemark/anomalies) and replace
    its stored anomalies: idempotent, so a retry or a republish gives the same rows."""
    from tidemark.anomalies.detect import detect_hours
    from tidemark.hours import HOUR, parse_hour

    start = parse_hour(hour)
    return detect_hours(settings(), start, start + HOUR, run_id=run_id or "").as_dict()


@task_group
def recompute_hour(hour: str):
    """The hourly DAG's steps for one hour of the late-data DAG's list (mapped over it): a republished
    hour is scored again, so its stored anomalies follow its corrected rollups."""
    recompute = recompute_operator("recompute", hour, max_active_tis_per_dag=1)  # one Spark driver (2 cores)
    recompute >> quality_gate(hour) >> publish(hour) >> detect_anomalies(hour)


# -- late data -----------------------------------------------------------------------------------


def _due(data_interval_end, params):
    from tidemark.batch.planning import due_hours

    lookback = params["lookback_hours"]
    return due_hours(settings(), data_interval_end, window=timedelta(hours=lookback) if lookback else None)


@task
def find_due_hours(data_interval_end=None, params=None) -> list[str]:
    """Dirty, never-published and backed-off failed hours, at most ``max_hours`` of them."""
    from tidemark.hours import label

    return [label(h) for h in _due(data_interval_end, params).to_run(int(params["max_hours"]))]


@task(retries=0)
def check_failing_hours(data_interval_end=None, params=None) -> None:
    """Fail, with the reasons, when an hour has failed FAILING_AFTER times in a row."""
    due = _due(data_interval_end, params)
    if due.failing:
        raise AirflowFailException(f"hours failing repeatedly (retried with back-off): {due.failing_report()}")


@task
def retire_superseded_streams() -> dict:
    """Delete the rows of stream checkpoints a newer one replaced (already invisible to readers)."""
    from tidemark.stream.identity import retire

    return retire(settings())


# -- tiering -------------------------------------------------------------------------------------


def _tiering_options(data_interval_end, run_id):
    from tidemark.tiering.run import task_options

    return task_options(data_interval_end, run_id)


@task
def measure_before(data_interval_end=None, run_id=None) -> dict:
    from tidemark.tiering.run import measure_before as measure

    return measure(settings(), _tiering_options(data_interval_end, run_id))


@task
def clickhouse_care(data_interval_end=None, run_id=None) -> dict:
    from tidemark.tiering.run import clickhouse_step

    return clickhouse_step(settings(), _tiering_options(data_interval_end, run_id))


@task
def hot_tier(data_interval_end=None, run_id=None) -> dict:
    from tidemark.tiering.run import hot_step

    return hot_step(settings(), _tiering_options(data_interval_end, run_id))


@task(retries=0)
def report(care: dict, hot: dict, data_interval_end=None, run_id=None) -> dict:
    """Measure again, store and log the report; fail on an alert."""
    from tidemark.tiering.run import report_after

    rep = report_after(settings(), _tiering_options(data_interval_end, run_id), {"clickhouse": care, "hot": hot})
    if rep.alerts:
        raise AirflowFailException("tiering alerts: " + "; ".join(rep.alerts))
    return rep.as_dict()
