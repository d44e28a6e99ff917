"""The serving API's only door to ClickHouse: readonly users, a bound on queries in flight,
and errors translated into what the client should hear.

* Two query classes, each a readonly ClickHouse user whose *profile* holds the wall-clock limit
  (`max_execution_time` with `timeout_before_checking_execution_speed=0`; 18.16 silently ignores
  per-query settings sent by a readonly user): ``dashboard`` (JSON endpoints, tight) and ``export``
  (CSV, up to 30 s). Both profiles have query logging off (tidemark/stack/clickhouse_conf.py).
* At most ``max_inflight_queries`` run at once. A request waits ``queue_wait_s`` for a slot, then
  gets 503 (Overloaded): piling up behind a saturated server only turns slow into down.
* clickhouse-driver is synchronous and a Client is not thread-safe: each query borrows a client
  from a per-class pool and runs in a worker thread, so the event loop keeps serving others
  (cache hits, other tenants) while a slow query runs.
* What failed (the server's address, its error text) is logged here; the client only hears that
  the database is unavailable: an API caller has no use for the topology behind it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Callable
from typing import TypeVar

import anyio
from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from tidemark.config import Settings
from tidemark.errors import TidemarkError
from tidemark.serving.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

DASHBOARD, EXPORT = "dashboard", "export"
# ClickHouse error codes that mean "over the time limit": TIMEOUT_EXCEEDED, TOO_SLOW.
_TIMEOUT_CODES = {159, 160}
# ... and "over the profile's size limits": TOO_MANY_ROWS, TOO_MANY_BYTES, MEMORY_LIMIT_EXCEEDED.
_TOO_BIG_CODES = {158, 307, 241}
UNAVAILABLE = "the analytics database is unavailable"


class QueryTimeout(TidemarkError):
    """The query ran past its class's time limit (answered 504)."""


class Overloaded(TidemarkError):
    """No query slot became free in time (answered 503)."""


class Unavailable(TidemarkError):
    """ClickHouse could not be reached or failed (answered 503)."""


class ClickHouseGate:
    def __init__(self, cfg: Settings, metrics: Metrics):
        self.cfg = cfg
        self.metrics = metrics
        ch, sv = cfg.clickhouse, cfg.serving
        self.limits = {DASHBOARD: sv.dashboard_max_execution_s, EXPORT: ch.reader_max_execution_s}
        self._users = {
            DASHBOARD: (sv.dashboard_user, sv.dashboard_password),
            EXPORT: (ch.reader_user, ch.reader_password),
        }
        self._pools: dict[str, queue.SimpleQueue] = {k: queue.SimpleQueue() for k in self._users}
        self._slots: asyncio.Semaphore | None = None
        self.inflight = 0
        self.inflight_max = 0

    def _client(self, klass: str) -> Client:
        try:
            return self._pools[klass].get_nowait()
        except queue.Empty:
            user, password = self._users[klass]
            ch = self.cfg.clickhouse
            # Built here rather than by tidemark.io.clickhouse.client: the dashboard class is a third user.
            # The socket timeout is a backstop only: the server's own limit answers first.
            return Client(
                host=ch.host,
                port=ch.port,
                user=user,
                password=password,
                database=ch.database,
                connect_timeout=3,
                send_receive_timeout=self.limits[klass] + 5,
                compression=False,
            )

    def _run_sync(self, klass: str, work: Callable[[Client], T]) -> T:
        client = self._client(klass)
        healthy = True
        try:
            return work(client)
        except ch_errors.ServerException as exc:
            if exc.code in _TIMEOUT_CODES:
                raise QueryTimeout(
                    f"the query ran past the {self.limits[klass]} s limit of the {klass} class"
                ) from None
            if exc.code in _TOO_BIG_CODES:
                raise QueryTimeout(f"the query exceeded the size limits of the {klass} class") from None
            log.error("ClickHouse refused a query", extra={"code": exc.code, "error": str(exc)[:1000]})
            raise Unavailable(UNAVAILABLE) from None
        except TimeoutError:
            healthy = False
            raise QueryTimeout(f"no answer from ClickHouse within {self.limits[klass] + 5} s") from None
        except (ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError, OSError) as exc:
            healthy = False
            if isinstance(exc, ch_errors.SocketTimeoutError):
                raise QueryTimeout(f"no answer from ClickHouse within {self.limits[klass] + 5} s") from None
            log.warning(
                "ClickHouse unreachable", extra={"address": self.cfg.clickhouse.address, "error": str(exc)[:500]}
            )
            raise Unavailable(UNAVAILABLE) from None
        finally:
            if healthy:
                self._pools[klass].put(client)
            else:
                client.disconnect()

    async def run(self, klass: str, work: Callable[[Client], T]) -> T:
        """Run ``work(client)`` in a worker thread once a slot is free (Overloaded after queue_wait_s)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.cfg.serving.max_inflight_queries)
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self.cfg.serving.queue_wait_s)
        except TimeoutError:
            raise Overloaded(
                f"all {self.cfg.serving.max_inflight_queries} ClickHouse query slots stayed busy "
                f"for {self.cfg.serving.queue_wait_s:g} s"
            ) from None
        self.inflight += 1
        self.inflight_max = max(self.inflight_max, self.inflight)
        self.metrics.set("tidemark_clickhouse_inflight", self.inflight)
        self.metrics.set("tidemark_clickhouse_inflight_max", self.inflight_max)
        try:
            return await anyio.to_thread.run_sync(self._run_sync, klass, work)
        finally:
            self.inflight -= 1
            self.metrics.set("tidemark_clickhouse_inflight", self.inflight)
            self._slots.release()

    async def run_background(self, klass: str, work: Callable[[Client], T]) -> T:
        """``work(client)`` in a worker thread, outside the request slots: for the API's own
        background reads (keys), which must neither wait behind requests nor take their slots."""
        return await anyio.to_thread.run_sync(self._run_sync, klass, work)

    def count(self, kind: str) -> None:
        self.metrics.inc("tidemark_clickhouse_queries_total", kind=kind)

    def close(self) -> None:
        for pool in self._pools.values():
            while True:
                try:
                    pool.get_nowait().disconnect()
                except queue.Empty:
                    break
