"""The DAG toolkit: pieces the Airflow DAGs share instead of copying.

Imports only Airflow at module level; Tidemark's code and settings are imported when
a task runs, so parsing a DAG file stays cheap and never needs the JVM jars.
"""
from __future__ import annotations

from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, task
from airflow.sdk.exceptions import AirflowFailException

REPO = Path(__file__).resolve().parent.parent.parent
JOBS = REPO / "jobs"
HOUR_ROLLUPS = Asset("clickhouse://tidemark/hour_rollups")


def settings():
    from tidemark.config import settings as load

    return load()


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


@task(retries=0)
def quality_gate(hour: str, run_id=None) -> dict:
    """Fail (without retries) when a 'fail' expectation failed; the failure is recorded in the
    registry and the staged version removed."""
    from tidemark.batch.recompute import QualityGateFailed, gate_step

    try:
        summary = gate_step(hour, run_id)
    except QualityGateFailed as exc:
        raise AirflowFailException(str(exc)) from exc
    return {"hour": hour, "status": summary.status, "version": summary.version,
            "dedup_rows": summary.dedup_rows, "dropped_rows": summary.dropped_rows}


@task(outlets=[HOUR_ROLLUPS])
def publish(hour: str, run_id=None, outlet_events=None) -> dict:
    """The compare-and-set switch and clean-up (a no-op for 'empty' and 'up_to_date')."""
    from tidemark.batch.recompute import publish_step

    summary = publish_step(hour, run_id)
    outlet_events[HOUR_ROLLUPS].extra = {"hour": hour, "version": summary.version, "status": summary.status,
                                         "dedup_rows": summary.dedup_rows}
    return {"hour": hour, "status": summary.status, "version": summary.version}
