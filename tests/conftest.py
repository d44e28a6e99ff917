"""Test-wide environment: tests run their own embedded stack, apart from the demo's.

Ports and TIDEMARK_HOME are moved so `make test` never touches a stack that
`make demo` left running. Variables already set by the caller win (so the
suite can be pointed at external services).
"""

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_TEST_ENV = {
    "TIDEMARK_HOME": str(_ROOT / ".tidemark" / "test"),
    "TIDEMARK_KAFKA_PORT": "19192",
    "TIDEMARK_KAFKA_CONTROLLER_PORT": "19193",
    "CLICKHOUSE_PORT": "19100",
    "CLICKHOUSE_HTTP_PORT": "18223",
    "CLICKHOUSE_INTERSERVER_PORT": "19109",
    "TIDEMARK_REDIS_PORT": "16479",
    "TIDEMARK_S3_PORT": "19170",  # the embedded S3Proxy, when a test puts the lake on s3a://
    "CLICKHOUSE_DATABASE": "tidemark_test",
    "SPARK_LOCAL_IP": "127.0.0.1",
    "TIDEMARK_LOG_LEVEL": "WARNING",
    # Some integration tests replay fixed 2026 dates; the default 365-day bound on Kafka timestamps
    # would turn them into dead letters from late 2027 on. Ten years still refuses the 1970 clocks
    # the poison-record tests send.
    "TIDEMARK_MAX_RECORD_AGE_DAYS": "3650",
}
for _key, _value in _TEST_ENV.items():
    os.environ.setdefault(_key, _value)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole test run (start-up costs 6-17 s)."""
    from tidemark.config import load
    from tidemark.spark import session

    spark = session("tidemark-tests", load())
    yield spark
    spark.stop()


def pytest_collection_modifyitems(config, items):
    """Every test under tests/integration is marked ``integration`` and every other test ``unit``,
    so `make test-unit` / `make test-integration` select by marker (-m), not by folder."""
    root = _ROOT / "tests" / "integration"
    for item in items:
        item.add_marker(pytest.mark.integration if root in item.path.parents else pytest.mark.unit)
