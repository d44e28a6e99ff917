"""Session-scoped embedded stack for integration tests.

The stack (Apache Kafka, ClickHouse, Redis) comes up once per test
session from the same code path as `tidemark stack up`, and goes down at the
end unless TIDEMARK_KEEP_STACK=1 (handy when iterating).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tidemark.config import settings


@pytest.fixture(scope="session")
def stack():
    from tidemark.stack import services

    cfg = settings()
    services.up(cfg)
    yield cfg
    if os.environ.get("TIDEMARK_KEEP_STACK") != "1":
        services.down(cfg)


@pytest.fixture(scope="session")
def clickhouse(stack):
    from tidemark.io.clickhouse import client

    return client(stack.clickhouse)


@pytest.fixture(scope="session")
def airflow_env_vars(tmp_path_factory):
    """One Airflow environment for the whole session (every DAG test shares it): Airflow reads its
    configuration when first imported, so AIRFLOW_HOME is set and its metadata DB migrated BEFORE
    anything imports airflow, and never changed afterwards. The env comes from
    tidemark.stack.airflow.airflow_env() (which also defines spark_default)."""
    from tidemark.config import PROJECT_ROOT, settings
    from tidemark.stack.airflow import airflow_env

    dags = PROJECT_ROOT / "dags"
    if "airflow" in sys.modules:  # imported earlier with another config: our env would be ignored
        from airflow.configuration import conf

        if conf.get("core", "dags_folder") != str(dags):
            pytest.fail("airflow was imported before the session set its environment")
    home = tmp_path_factory.mktemp("airflow_home")
    env = airflow_env(settings(), home=home)
    started = time.monotonic()
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=300,
    )
    print(f"airflow db migrate: {time.monotonic() - started:.1f}s")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env
