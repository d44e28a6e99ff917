"""Two ClickHouse versions side by side: the embedded 18.16 server (the ``stack`` fixture) and a
current ClickHouse in process (chdb 26.9, PyPI ``chdb-core``).

chdb's embedded server is process-wide and holds one data directory, so the whole test session
shares one directory (``chdb_dir``); tests keep apart by database."""

import dataclasses

import pytest
from support.dual import DualClient, ExchangeLog

from tidemark.io.chdb_client import InProcessClient
from tidemark.io.clickhouse import client, register_connector


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("chdb"))


@pytest.fixture(scope="module")
def dual_log(stack, chdb_dir) -> ExchangeLog:
    """Route the host scheme ``dual:`` to both versions; every exchange lands in the returned log.
    One log per test module: each module judges the exchanges of its own scenario (the anomaly
    module's user estimates may differ by HLL error, which the whole-log check here would count)."""
    log = ExchangeLog()
    server_host = stack.clickhouse.host

    def connect(cfg, *, database):
        embedded = client(dataclasses.replace(cfg, host=server_host), database=database)
        return DualClient(embedded, InProcessClient(chdb_dir, database), log)

    register_connector("dual", connect)
    return log
