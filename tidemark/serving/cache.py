"""Redis cache of query results, with single-flight recomputes and stale-while-revalidate.

* **Key**: the normalized query (tenant, endpoint, metric, aligned range, bucket, filters) plus the
  fingerprint of the published-hours versions inside the range (tidemark/serving/core.py). A
  republished hour changes the fingerprint, so the corrected number is a new key: no long TTL can
  hide it, and the batch layer needs to know nothing about this cache.
* **TTL** (chosen by the caller) depends on recency, with +- jitter so keys written together do not
  expire together. An entry outlives its TTL by ``stale_grace_s``: past its TTL it is *stale*.
* **Single flight**: per key, one request recomputes. In this process, the others await the same
  future; across processes, a Redis lock (SET NX PX) elects the one, and the others poll for its
  result. On a stale entry, the elected request recomputes and every other request is answered
  with the stale value at once (and the stale value is kept if the recompute fails).
* Round trips: a hit costs one (the rate-limit script reads the entry, tidemark/serving/limits.py),
  a miss three (that read; lock + re-read; store + unlock), whatever the number of processes.
* A recompute that timed out is remembered for a few seconds, so a runaway query is not re-run by
  every retry: the next requests get the same 504 at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tidemark.config import ServingSettings
from tidemark.errors import TidemarkError
from tidemark.serving.metrics import Metrics
from tidemark.serving.reader import QueryTimeout

log = logging.getLogger(__name__)

POLL_S = 0.02
TIMEOUT_MEMORY_S = 10.0
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"
# Take the key's lock if free, and read the entry in the same round trip: whoever holds the lock
# may have stored it between this request's first read and now.
_LOCK_AND_READ = (
    "local got = redis.call('SET', KEYS[1] .. ':lock', ARGV[1], 'NX', 'PX', ARGV[2]) "
    "return {got and 1 or 0, redis.call('GET', KEYS[1])}"
)
# Store the value and release the lock (if still ours) in one round trip.
_STORE_AND_RELEASE = (
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) "
    "if redis.call('GET', KEYS[1] .. ':lock') == ARGV[1] then redis.call('DEL', KEYS[1] .. ':lock') end "
    "return 1"
)


class Busy(TidemarkError):
    """Another request's recompute of this key did not finish within single_flight_wait_s (503)."""


def cache_key(parts: dict) -> str:
    normalized = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return "tm:q:" + hashlib.sha256(normalized.encode()).hexdigest()[:40]


class QueryCache:
    def __init__(self, redis, cfg: ServingSettings, metrics: Metrics, lock_s: float):
        self.redis = redis
        self.cfg = cfg
        self.metrics = metrics
        self.lock_ms = int(lock_s * 1000)
        self._flights: dict[str, asyncio.Future] = {}
        self._lock_and_read = redis.register_script(_LOCK_AND_READ)
        self._store_and_release = redis.register_script(_STORE_AND_RELEASE)

    def jittered(self, ttl_s: float) -> float:
        j = self.cfg.ttl_jitter
        return ttl_s * random.uniform(1 - j, 1 + j)

    def _result(self, result: str) -> None:
        self.metrics.inc("tidemark_cache_requests_total", result=result)

    def _entry(self, value, ttl_s: float) -> tuple[str, int]:
        ttl = self.jittered(ttl_s)
        entry = {"v": value, "fresh_until": time.time() + ttl}
        return json.dumps(entry, separators=(",", ":")), int((ttl + self.cfg.stale_grace_s) * 1000)

    async def _remember_timeout(self, key: str, message: str) -> None:
        entry = {"err": "timeout", "msg": message, "fresh_until": time.time() + TIMEOUT_MEMORY_S}
        await self.redis.set(key + ":err", json.dumps(entry), px=int(TIMEOUT_MEMORY_S * 1000))

    async def get_or_compute(
        self,
        key: str,
        ttl_s: float,
        compute: Callable[[], Awaitable],
        first: tuple[bytes | None, bytes | None] | None = None,
    ) -> tuple[Any, str]:
        """(value, how it was served: hit | stale | wait | miss). ``first``: the raw entry and
        remembered timeout under ``key``, already read (by the rate-limit script), else read here."""
        if first is None:
            first = tuple(await self.redis.mget(key, key + ":err"))
        entry = json.loads(first[0]) if first[0] else None
        now = time.time()
        if entry is not None and now < entry["fresh_until"]:
            self._result("hit")
            return entry["v"], "hit"
        failed = json.loads(first[1]) if first[1] else None
        if failed is not None and entry is None:
            self._result("hit")
            raise QueryTimeout(failed["msg"] + " (remembered for a few seconds; narrow the range or filters)")
        if entry is not None:  # stale: one request refreshes, everyone else gets the stale value now
            if key in self._flights:
                self._result("stale")
                return entry["v"], "stale"
            return await self._lead(key, ttl_s, compute, stale=entry)
        flight = self._flights.get(key)
        if flight is not None:
            return await self._follow(flight)
        return await self._lead(key, ttl_s, compute, stale=None)

    async def _follow(self, flight: asyncio.Future) -> tuple[object, str]:
        started = time.monotonic()
        self.metrics.inc("tidemark_single_flight_waits_total")
        try:
            value = await asyncio.wait_for(asyncio.shield(flight), timeout=self.cfg.single_flight_wait_s)
        except TimeoutError:
            raise Busy(
                f"the same query is being computed by another request and took over "
                f"{self.cfg.single_flight_wait_s:g} s; retry shortly"
            ) from None
        finally:
            self.metrics.inc("tidemark_single_flight_wait_seconds_total", time.monotonic() - started)
        self._result("wait")
        return value, "wait"

    async def _lead(self, key: str, ttl_s: float, compute, stale: dict | None) -> tuple[object, str]:
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            value, how = await self._elect(key, ttl_s, compute, stale)
            flight.set_result(value)
            return value, how
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        finally:
            self._flights.pop(key, None)

    async def _elect(self, key: str, ttl_s: float, compute, stale: dict | None) -> tuple[object, str]:
        token = secrets.token_hex(8)
        deadline = time.monotonic() + self.cfg.single_flight_wait_s
        waited_from = None
        while True:
            got, raw = await self._lock_and_read(keys=[key], args=[token, self.lock_ms])
            entry = json.loads(raw) if raw else None
            fresh = entry is not None and time.time() < entry["fresh_until"]
            if got:
                break
            if fresh and entry is not None:  # the lock holder stored it
                if waited_from is not None:
                    self.metrics.inc("tidemark_single_flight_wait_seconds_total", time.monotonic() - waited_from)
                self._result("wait")
                return entry["v"], "wait"
            if stale is not None:  # another process refreshes it
                self._result("stale")
                return stale["v"], "stale"
            if waited_from is None:
                waited_from = time.monotonic()
                self.metrics.inc("tidemark_single_flight_waits_total")
            if time.monotonic() > deadline:
                raise Busy(
                    f"the same query is being computed by another server and took over "
                    f"{self.cfg.single_flight_wait_s:g} s; retry shortly"
                )
            await asyncio.sleep(POLL_S)
        stored = False
        try:
            if fresh and entry is not None:  # another process stored it between our first read and the lock
                self._result("hit")
                return entry["v"], "hit"
            try:
                value = await compute()
            except QueryTimeout as exc:
                if stale is not None:
                    log.warning("refresh timed out; serving the stale value", extra={"error": str(exc)})
                    self._result("stale")
                    return stale["v"], "stale"
                await self._remember_timeout(key, str(exc))
                raise
            except Exception as exc:
                if stale is not None:
                    log.warning("refresh failed; serving the stale value", extra={"error": str(exc)})
                    self._result("stale")
                    return stale["v"], "stale"
                raise
            self.metrics.inc("tidemark_recomputes_total")
            raw, px = self._entry(value, ttl_s)
            await self._store_and_release(keys=[key], args=[token, raw, px])
            stored = True
            self._result("miss")
            return value, "miss"
        finally:
            if not stored:
                await self.redis.eval(_RELEASE, 1, key + ":lock", token)
