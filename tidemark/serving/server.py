"""Running the API: in the foreground (uvicorn), or detached under a PID file that
`tidemark stack down` stops like the stack's services (the process is defined beside the stream
job's, in tidemark/stack/workloads.py)."""

from __future__ import annotations

import http.client
import sys
import time
import urllib.request

from tidemark.config import Settings
from tidemark.stack.process import StackError, port_open
from tidemark.stack.workloads import api_process, start_probe

START_TIMEOUT_S = 30.0


def run(cfg: Settings, host: str, port: int) -> None:
    import uvicorn

    from tidemark.serving.api import create_app

    # TIDEMARK_SERVING_WORKERS processes (uvicorn's supervisor forks them; each builds its app from
    # the same environment). The cache's in-process single flight, the in-flight bound and
    # /metrics are per process; across processes the Redis lock and the token buckets hold.
    # The client address (per-client rate limit) is the socket peer unless the peer is a configured
    # proxy: uvicorn's default would trust X-Forwarded-For from 127.0.0.1, so any local client
    # could claim a fresh address per request.
    proxies = cfg.serving.forwarded_allow_ips
    workers = cfg.serving.workers
    uvicorn.run(
        # Several workers need an import string (each process builds its own app, from the environment).
        "tidemark.serving.api:app_from_environment" if workers > 1 else create_app(cfg),
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )


def start_detached(cfg: Settings, host: str, port: int) -> int:
    """Start `tidemark serve` in the background and wait until /health answers; returns its PID.
    The SLO monitor starts beside it: from the service's deployment on, a dead API is an outage."""
    pid = _start_api(cfg, host, port)
    start_probe(cfg, f"http://{host}:{port}/health")
    return pid


def _start_api(cfg: Settings, host: str, port: int) -> int:
    proc = api_process(cfg)
    running = proc.pid()
    if running is not None:
        return running
    if port_open(host, port):
        raise StackError(
            f"api: port {port} is taken by a process Tidemark did not start; "
            f"stop it or choose another with --port / TIDEMARK_SERVING_PORT"
        )
    pid = proc.start([sys.executable, "-m", "tidemark.cli", "serve", "--host", host, "--port", str(port)])
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return pid
        except (OSError, http.client.HTTPException):  # not up yet, or unhealthy (HTTPError): wait until the deadline
            pass
        if proc.exited_early():
            raise StackError(f"api: exited during startup; log {proc.log_file}:\n{proc.log_tail()}")
        time.sleep(0.3)
    raise StackError(f"api: /health did not answer 200 within {START_TIMEOUT_S:.0f}s; see {proc.log_file}")
