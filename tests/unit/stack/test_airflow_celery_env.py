"""The celery mode's settings and environment (no processes: tests/integration/orchestration/
test_airflow_celery.py runs them for real)."""

import pytest

from tidemark.config import load


@pytest.fixture
def env(monkeypatch, tmp_path):
    for var in ("TIDEMARK_AIRFLOW_MODE", "TIDEMARK_STACK", "TIDEMARK_AIRFLOW_DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TIDEMARK_HOME", str(tmp_path))
    return monkeypatch


def test_mode_defaults_to_standalone_and_to_celery_under_the_cluster_profile(env):
    assert load().airflow.mode == "standalone" and not load().airflow.celery
    env.setenv("TIDEMARK_STACK", "cluster")
    assert load().airflow.celery
    env.setenv("TIDEMARK_AIRFLOW_MODE", "standalone")  # the explicit choice wins
    assert not load().airflow.celery
    env.setenv("TIDEMARK_AIRFLOW_MODE", "kubernetes")
    with pytest.raises(ValueError, match="TIDEMARK_AIRFLOW_MODE"):
        load()


def test_celery_env_points_every_component_at_postgres_redis_and_one_secret(env):
    from tidemark.stack.airflow_celery import celery_env
    from tidemark.stack.services import airflow_services

    env.setenv("TIDEMARK_AIRFLOW_MODE", "celery")
    env.setenv("TIDEMARK_POSTGRES_PORT", "25432")
    env.setenv("TIDEMARK_REDIS_PORT", "26379")
    cfg = load()
    first, second = celery_env(cfg), celery_env(cfg)
    assert first["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert (
        first["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://airflow:airflow@127.0.0.1:25432/airflow"
    )
    assert first["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + first["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert first["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:26379/1"  # not the cache's database 0
    assert first["AIRFLOW__API_AUTH__JWT_SECRET"] == second["AIRFLOW__API_AUTH__JWT_SECRET"]  # kept, shared
    assert len(first["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32
    assert [s.name for s in airflow_services(cfg, celery=True)][:2] == ["postgres", "airflow-api-server"]
    assert not airflow_services(cfg, celery=True)[0].external

    env.setenv("TIDEMARK_AIRFLOW_DATABASE_URL", "postgresql+psycopg2://af:pw@db.internal:5432/airflow")
    cfg = load()
    assert celery_env(cfg)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@db.internal:5432/airflow")
    postgres = airflow_services(cfg, celery=True)[0]
    assert postgres.external and postgres.address == "postgresql://db.internal:5432/airflow"
