"""The serving API against the real embedded stack: a `tidemark serve` subprocess on a free port,
with test limits (3 s dashboard time limit, short live TTL, 4 query slots), and helpers that fill
rollups the way the pipeline does (INSERT into rollup_input; publish = registry row)."""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tidemark.config import load
from tidemark.io.clickhouse import client

ROOT = Path(__file__).resolve().parents[3]
SERVER_ENV = {
    "TIDEMARK_SERVING_DASHBOARD_MAX_EXECUTION_S": "3",
    "TIDEMARK_SERVING_RATE_PER_S": "100000",
    "TIDEMARK_SERVING_BURST": "100000",
    "TIDEMARK_SERVING_MAX_INFLIGHT": "4",
    "TIDEMARK_SERVING_QUEUE_WAIT_S": "1",
    "TIDEMARK_SERVING_LIVE_TTL_S": "4",
    "TIDEMARK_SERVING_REGISTRY_REFRESH_S": "1",
    "TIDEMARK_SERVING_KEY_CACHE_S": "1",
    "TIDEMARK_SERVING_SINGLE_FLIGHT_WAIT_S": "5",
}
_METRIC_LINE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? ([0-9.e+-]+)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_env(extra: dict):
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        return load()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Api:
    url: str
    cfg: object
    log: Path

    def key(self, tenant: str, **kw) -> str:
        from tidemark.serving.keys import create

        return create(self.cfg, tenant, "test", **kw)[1]

    def get(self, path: str, key: str | None = None, **params) -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        return httpx.get(self.url + path, params=params, headers=headers, timeout=30)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            m = _METRIC_LINE.match(line)
            if m:
                out[m.group(1) + (f"{{{m.group(2)}}}" if m.group(2) else "")] = float(m.group(3))
        return out


@pytest.fixture(scope="session")
def serving_cfg(stack):
    """Settings of the test API, and the stack's users.xml re-rendered with its limits (whatever
    order the session started in): the dashboard user's 3 s limit must be live before tests run."""
    from tidemark.stack.clickhouse_conf import render

    cfg = _with_env(SERVER_ENV)
    if not cfg.clickhouse.external:
        render(cfg.clickhouse, cfg.home / "clickhouse", cfg.serving)
    deadline = time.monotonic() + 30
    while True:  # 18.16 reloads users.xml on its own within a few seconds
        try:
            from clickhouse_driver import Client

            c = Client(
                host=cfg.clickhouse.host,
                port=cfg.clickhouse.port,
                user=cfg.serving.dashboard_user,
                password=cfg.serving.dashboard_password,
                database=cfg.clickhouse.database,
            )
            (limit,) = c.execute("SELECT value FROM system.settings WHERE name = 'max_execution_time'")[0]
            if limit == SERVER_ENV["TIDEMARK_SERVING_DASHBOARD_MAX_EXECUTION_S"]:
                break
        except Exception:  # noqa: BLE001 - the server may not accept connections yet: retry until the deadline
            pass
        assert time.monotonic() < deadline, "the dashboard reader's test profile did not become live"
        time.sleep(0.5)
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
    port = _free_port()
    log = serving_cfg.home / "logs" / f"api-test-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **SERVER_ENV, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tidemark.cli", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, f"tidemark serve exited: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"tidemark serve not healthy in 30 s: {log.read_text()[-2000:]}"
        time.sleep(0.3)
    yield Api(url, serving_cfg, log)
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="session")
def writer(serving_cfg):
    return client(serving_cfg.clickhouse)
