"""Orchestration glue: what the Airflow DAGs share (see ``tidemark.orchestration.dag_tasks``)."""
