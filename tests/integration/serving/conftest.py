"""The serving API against the real embedded stack: a `tidemark serve` subprocess on a free port,
with test limits (3 s dashboard time limit, short live TTL, 4 query slots, keys refreshed every
second, per-client limits out of the way), and helpers that fill rollups the way the pipeline does
(INSERT into rollup_input; publish = registry row: tests/support/serving.py)."""

from __future__ import annotations

import os
import resource
import time

import pytest
from support.api import serve
from support.serving import SERVER_ENV, tenant_name
from support.settings import settings_with
from support.wait import wait_until

from tidemark.io.clickhouse import client


@pytest.fixture(scope="session")
def serving_cfg(stack):
    """Settings of the test API, and the stack's users.xml re-rendered with its limits (whatever
    order the session started in): the dashboard user's 3 s limit must be live before tests run."""
    from tidemark.stack.clickhouse_conf import render

    cfg = settings_with(SERVER_ENV)
    if not cfg.clickhouse.external:
        render(cfg.clickhouse, cfg.home / "clickhouse", cfg.serving)
        # 18.16 notices a config change by the file's mtime in whole seconds: a rewrite in the same second
        # as the stack's own (session start) goes unseen for good. A distinct mtime makes it reload.
        users_xml = cfg.home / "clickhouse" / "users.xml"
        later = int(time.time()) + 2
        os.utime(users_xml, (later, later))
    from clickhouse_driver import Client

    def dashboard_limit() -> str:
        c = Client(
            host=cfg.clickhouse.host,
            port=cfg.clickhouse.port,
            user=cfg.serving.dashboard_user,
            password=cfg.serving.dashboard_password,
            database=cfg.clickhouse.database,
        )
        try:
            return c.execute("SELECT value FROM system.settings WHERE name = 'max_execution_time'")[0][0]
        finally:
            c.disconnect()

    # 18.16 reloads users.xml on its own within a few seconds; until then the user may not exist yet.
    wait_until(
        lambda: dashboard_limit() == SERVER_ENV["TIDEMARK_SERVING_DASHBOARD_MAX_EXECUTION_S"],
        30,
        "the dashboard reader's test profile to become live",
        interval_s=0.5,
        ignoring=(Exception,),
    )
    # The serving tests write streaming rows directly (version 1): make that writer a current stream
    # identity with its batches committed, or the lambda merge would rightly not count its rows.
    from tidemark.stream.sink import register_loader

    register_loader(client(cfg.clickhouse), cfg.clickhouse.database, "serving-tests", 0, 999_999_999)
    return cfg


@pytest.fixture(scope="session")
def api(serving_cfg):
    # 1,000 concurrent connections need more than the common 1,024 descriptors (the server inherits this).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    with serve(serving_cfg) as running:
        yield running


@pytest.fixture(scope="session")
def heavy(api, serving_cfg):
    """A tenant whose minute grain is big enough that merging its distinct users over 90 days takes
    well over the 3 s dashboard limit (3 M minute rows of 100 users each; 1 M took 6-9 s on a loaded
    2-core box but under 3 s on an idle one).
    Written straight into minute_rollups: only the minute grain matters here."""
    t = tenant_name("heavy")
    db = serving_cfg.clickhouse.database
    base = int(time.time()) // 60 * 60 - 3600
    # Its own connection with a long socket timeout: on a loaded box this INSERT takes minutes, and the
    # writer's 60 s would abandon it half-done.
    client(serving_cfg.clickhouse, send_receive_timeout=900).execute(
        f"INSERT INTO {db}.minute_rollups SELECT %(t)s, toDateTime(%(base)s - (number %% 120000) * 60), 'stream', 1, "
        f"'US', 'mobile', concat('/p', toString(number %% 1000)), 1, "
        f"arrayReduce('uniqCombinedState', arrayMap(x -> toString(number * 100 + x), range(100))) "
        f"FROM numbers(3000000)",
        {"t": t, "base": base},
    )
    return t, api.key(t)


@pytest.fixture(scope="session")
def writer(serving_cfg):
    return client(serving_cfg.clickhouse)
