"""The DAG toolkit: pieces the Airflow DAGs share instead of copying.

Imports only Airflow at module level; Tidemark's engine settings are read when
a task runs, so parsing a DAG file stays cheap and never needs the JVM jars.
"""
from __future__ import annotations

from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

REPO = Path(__file__).resolve().parent.parent.parent
JOBS = REPO / "jobs"


class TidemarkSparkSubmitOperator(SparkSubmitOperator):
    """spark-submit with Tidemark's engine configuration (the Kafka/Delta jars from ``make setup``,
    the Delta extension, the venv's interpreter), taken from ``tidemark.spark`` when the task runs.

    ``spark_default`` decides where it runs: ``local[2]`` on the embedded stack, a cluster in production.
    """

    def execute(self, context):
        from tidemark.config import settings
        from tidemark.spark import engine_conf, python_env

        cfg = settings()
        self.conf = {**engine_conf(cfg), **(self.conf or {})}
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
