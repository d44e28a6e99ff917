"""Session-scoped embedded stack for integration tests.

The stack (Apache Kafka, ClickHouse, Redis) comes up once per test
session from the same code path as `tidemark stack up`, and goes down at the
end unless TIDEMARK_KEEP_STACK=1 (handy when iterating).
"""
import os

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
