"""Helpers of the serving tests: the test API's settings (SERVER_ENV), rollups filled the way the
pipeline fills them (INSERT into rollup_input), an hour published the way the batch layer publishes
it (one published_hours row), and a TCP path to ClickHouse that can be cut."""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from datetime import datetime, timezone

from tidemark.io.clickhouse import insert_rows
from tidemark.tables import ROLLUP_INPUT_COLUMNS

# The test API's settings (conftest.py), also given to CLI subprocesses that report them.
SERVER_ENV = {
    "TIDEMARK_SERVING_DASHBOARD_MAX_EXECUTION_S": "3",
    "TIDEMARK_SERVING_RATE_PER_S": "100000",
    "TIDEMARK_SERVING_BURST": "100000",
    "TIDEMARK_SERVING_MAX_INFLIGHT": "4",
    # 2 s: a request waiting for a slot behind a normal query never gives up on a slow 2-core box (1 s
    # did: 143 of 1,000 burst requests got 503 in CI), and still well under the 3 s limit above, so
    # requests queued behind heavy queries give up first (test_saturated_query_slots_answer_503)
    "TIDEMARK_SERVING_QUEUE_WAIT_S": "2",
    "TIDEMARK_SERVING_LIVE_TTL_S": "4",
    "TIDEMARK_SERVING_REGISTRY_REFRESH_S": "1",
    "TIDEMARK_SERVING_KEY_REFRESH_S": "1",
    "TIDEMARK_SERVING_CLIENT_RATE_PER_S": "100000",
    "TIDEMARK_SERVING_CLIENT_BURST": "100000",
    "TIDEMARK_SERVING_SINGLE_FLIGHT_WAIT_S": "5",
    # One process: these tests read the server's own counters (/metrics is per process);
    # test_workers.py runs several.
    "TIDEMARK_SERVING_WORKERS": "1",
}
# two filters -> the minute grain; 90 days of distinct users: the heaviest dashboard question
# (for the `heavy` tenant of conftest.py, over the 3 s dashboard limit)
HEAVY = {"range": "90d", "metric": "users", "country": "US", "device": "mobile"}


def tenant_name(label: str) -> str:
    """A tenant id unique to this run, so a kept test database never mixes runs."""
    return f"{label}-{secrets.token_hex(3)}"


def insert_minutes(ch, db: str, rows, layer: str = "stream", version: int = 1) -> None:
    """rows: (tenant, minute datetime, country, device, page, events, [user ids])."""
    insert_rows(ch, f"{db}.rollup_input", ROLLUP_INPUT_COLUMNS, [(layer, version, *r) for r in rows])


def publish(ch, db: str, hour: datetime, version: int) -> None:
    """The batch layer's atomic switch (tidemark/batch/registry.record): one published_hours row."""
    from tidemark.batch.registry import REGISTRY_COLUMNS

    now = datetime.now(timezone.utc)
    insert_rows(
        ch,
        f"{db}.published_hours",
        REGISTRY_COLUMNS,
        [(hour, version, "published", now, int(time.time() * 1_000_000), 0, 0, 0, 0, 0, "serving-test", "", "")],
    )


def request_path_queries(metrics: dict[str, float]) -> float:
    """ClickHouse statements the API ran for requests: every kind but the background key refresh."""
    prefix = "tidemark_clickhouse_queries_total"
    return sum(v for k, v in metrics.items() if k.startswith(prefix) and k != prefix + '{kind="keys"}')


class TcpProxy:
    """A TCP forwarder from a free local port to (host, port) that can be cut: ``cut()`` drops every
    connection and refuses new ones, as a ClickHouse that went away would."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
                far = socket.create_connection(self.target)
            except OSError:
                return  # cut
            with self._lock:
                self._sockets += [near, far]
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accept() blocked in the other thread (close alone would not)
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
