"""A `tidemark serve` subprocess for the serving tests (`serve`), and the test's handle on it (`Api`).

Not in conftest.py: tests import ``serve`` to start an API with other settings, and ``conftest``
is not a name a test can import (every test folder has one)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from support.ports import free_port
from support.serving import SERVER_ENV
from support.wait import wait_until
from tidemark.config import PROJECT_ROOT

_METRIC_LINE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? ([0-9.e+-]+)$")


@dataclass
class Api:
    url: str
    cfg: object
    log: Path
    pid: int = 0  # the `tidemark serve` process (with several workers, their supervisor)

    def key(self, tenant: str, **kw) -> str:
        """A new key of ``tenant``, returned once the API has loaded it (its keys are refreshed in
        the background; waiting on the server's own counter spends none of the tenant's tokens)."""
        from tidemark.serving.keys import create

        token = create(self.cfg, tenant, "test", **kw)[1]
        self.wait_keys_loaded(time.time())
        return token

    def wait_keys_loaded(self, since: float, timeout_s: float = 15.0) -> float:
        """Wait until a key refresh that started after ``since`` (epoch seconds) has landed; returns
        the seconds waited."""
        started = time.monotonic()
        wait_until(
            lambda: self.metrics().get("tidemark_api_keys_loaded_through", 0.0) > since,
            timeout_s,
            "the API to load its keys anew",
        )
        return time.monotonic() - started

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


@contextmanager
def serve(cfg, extra_env: dict | None = None, healthy: bool = True):
    """A `tidemark serve` subprocess with SERVER_ENV (+ ``extra_env``) on a free port; waits until
    /health answers (200 unless ``healthy`` is False: then any answer will do)."""
    port = free_port()
    log = cfg.home / "logs" / f"api-test-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **SERVER_ENV, **(extra_env or {}), "PYTHONPATH": str(PROJECT_ROOT)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tidemark.cli", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        assert proc.poll() is None, f"tidemark serve exited: {log.read_text()[-2000:]}"
        try:
            return httpx.get(url + "/health", timeout=5).status_code == 200 or not healthy
        except httpx.HTTPError:
            return False  # not listening yet

    try:
        wait_until(
            answering,
            30,
            lambda: f"tidemark serve to answer /health; its log: {log.read_text()[-2000:]}",
            interval_s=0.3,
        )
        yield Api(url, cfg, log, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
