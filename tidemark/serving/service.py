"""The serving core behind the HTTP layer: keys -> tenant, rate limits, cache, and the queries.

The tenant of every query is the key's tenant, passed down from here; no request parameter can
name one. Keys are resolved in memory (``keys.KeyRing``, refreshed by a background task): no
request ever waits on, or causes, a key lookup in ClickHouse. Each answer goes through the cache
(tidemark/serving/cache.py) under a key made of the normalized question and the fingerprint of
the published hours it covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from datetime import datetime, timedelta, timezone

import redis.asyncio as aioredis

from tidemark.config import Settings
from tidemark.serving import keys, queries
from tidemark.serving.cache import QueryCache, cache_key
from tidemark.serving.limits import Decision, RateLimiter
from tidemark.serving.metrics import Metrics
from tidemark.serving.queries import Filters
from tidemark.serving.ranges import HOUR, TimeRange, realtime_window
from tidemark.serving.reader import DASHBOARD, ClickHouseGate, Unavailable
from tidemark.serving.rollups import Snapshot, snapshot

log = logging.getLogger(__name__)

# The registry fingerprint covers every hour a query may read: 90 days and the 90 before them.
REGISTRY_WINDOW = timedelta(days=181)
LIVE_TTL_FACTOR = {"minute": 1, "hour": 3, "day": 6}
REDIS_CONNECTIONS = 128
FIRST_KEYS_WAIT_S = 5.0  # startup waits this long for the first key load (then requests get 503 until it lands)
HEALTH_CACHE_S = 1.0  # /health is unauthenticated: it checks the backends at most once a second
KEY_FAILURE_LOG_EVERY = 12  # a failing key refresh is logged at its first failure, then every 12th


class Service:
    def __init__(self, cfg: Settings):
        self.cfg = cfg
        self.db = cfg.clickhouse.database
        self.metrics = Metrics()
        # A blocking pool: a burst of requests queues for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            cfg.redis.url, max_connections=REDIS_CONNECTIONS, timeout=5, socket_timeout=5, socket_connect_timeout=3
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        self.gate = ClickHouseGate(cfg, self.metrics)
        lock_s = max(self.gate.limits.values()) + 5
        self.cache = QueryCache(self.redis, cfg.serving, self.metrics, lock_s=lock_s)
        sv = cfg.serving
        self.limiter = RateLimiter(self.redis, sv.rate_per_s, sv.burst, sv.client_rate_per_s, sv.client_burst)
        self.keyring = keys.KeyRing()
        self._keys_task: asyncio.Task | None = None
        self._key_failures = 0
        self._registry: Snapshot | None = None
        self._registry_at = 0.0
        self._registry_lock: asyncio.Lock | None = None
        self._health: dict | None = None
        self._health_at = 0.0
        self._health_lock: asyncio.Lock | None = None

    async def start(self) -> None:
        """Start the background key refresh; wait a little for its first load, so a fresh server
        answers keys at once (if ClickHouse is down it starts anyway, and /health says why)."""
        loaded = asyncio.Event()
        self._keys_task = asyncio.create_task(self._refresh_keys_forever(loaded))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loaded.wait(), timeout=FIRST_KEYS_WAIT_S)

    async def close(self) -> None:
        if self._keys_task is not None:
            self._keys_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keys_task
        self.gate.close()
        await self.redis.aclose()

    # -- keys and limits ------------------------------------------------------------
    async def _refresh_keys_forever(self, loaded: asyncio.Event) -> None:
        """Re-read every key each key_refresh_s, outside the request slots. A key written before a
        load starts is in that load: a new or revoked key takes effect within one refresh interval
        plus two load queries (published as tidemark_api_keys_loaded_through, epoch seconds)."""

        def load(ch) -> int:
            self.gate.count("keys")
            return self.keyring.load(ch, self.db)

        while True:
            try:
                await self.gate.run_background(DASHBOARD, load)
                self.metrics.set("tidemark_api_keys_loaded_through", self.keyring.loaded_through)
                if self._key_failures:
                    log.warning("API keys loaded again", extra={"after_failures": self._key_failures})
                self._key_failures = 0
                loaded.set()
            except Exception as exc:  # noqa: BLE001 - keep refreshing; the last keys serve until key_max_stale_s
                if self._key_failures % KEY_FAILURE_LOG_EVERY == 0:
                    log.warning(
                        "could not refresh API keys; serving with the last loaded ones",
                        extra={"error": str(exc)[:300], "failures": self._key_failures + 1},
                    )
                self._key_failures += 1
            await asyncio.sleep(self.cfg.serving.key_refresh_s)

    def keys_ready(self) -> bool:
        age = self.keyring.age_s()
        return age is not None and age <= self.cfg.serving.key_max_stale_s

    def authenticate(self, token: str) -> keys.ApiKey | None:
        """The live key ``token`` is, or None: from memory, never from ClickHouse. If the keys could
        not be refreshed for key_max_stale_s, no key is trusted (Unavailable): a revocation must not
        be ignored indefinitely."""
        if keys.parse(token) is None:
            return None
        if not self.keys_ready():
            raise Unavailable("API keys cannot be checked right now")
        return self.keyring.verify(token)

    async def admit(self, address: str, key: keys.ApiKey | None) -> tuple[Decision, Decision | None]:
        """The client address's token bucket, then the key's tenant's (one Redis round trip)."""
        if key is None:
            return await self.limiter.admit(address)
        return await self.limiter.admit(address, key.tenant_id, key.rate_per_s, key.burst)

    # -- registry fingerprint -----------------------------------------------------------
    async def _registry_snapshot(self) -> Snapshot:
        registry = self._registry
        if registry is not None and time.monotonic() - self._registry_at < self.cfg.serving.registry_refresh_s:
            return registry
        if self._registry_lock is None:
            self._registry_lock = asyncio.Lock()
        if self._registry_lock.locked() and registry is not None:
            return registry  # being refreshed: the current one is at most a refresh old
        async with self._registry_lock:
            registry = self._registry
            if registry is None or time.monotonic() - self._registry_at >= self.cfg.serving.registry_refresh_s:
                now = datetime.now(timezone.utc)

                def read(ch) -> Snapshot:
                    self.gate.count("registry")
                    return snapshot(ch, self.db, now - REGISTRY_WINDOW, now + timedelta(hours=2))

                registry = self._registry = await self.gate.run(DASHBOARD, read)
                self._registry_at = time.monotonic()
        return registry

    async def _fingerprint(self, start: int, end: int) -> tuple[str, int]:
        """(digest of the published versions of the hours in [start, end), how many are published).
        Uses the snapshot's per-hour versions when it has them; otherwise all its parameters
        (coarser: any publish then renews every key, still correct)."""
        snap = await self._registry_snapshot()
        versions = getattr(snap, "versions", None)
        if isinstance(versions, dict):
            first = start // HOUR * HOUR
            inside = sorted((h, v) for h, v in versions.items() if first <= h < end)
            return hashlib.sha256(repr(inside).encode()).hexdigest()[:16], len(inside)
        return hashlib.sha256(repr(snap.params()).encode()).hexdigest()[:16], 0

    def _ttl(self, rng: TimeRange, published: int, now: float) -> float:
        sv = self.cfg.serving
        if rng.touches_live(now):
            return sv.live_ttl_s * LIVE_TTL_FACTOR[rng.bucket]
        hours = -(-rng.end // HOUR) - rng.start // HOUR
        return sv.closed_ttl_s if published >= hours else sv.recent_ttl_s

    async def _cached(
        self, tenant: str, kind: str, rng: TimeRange, read: TimeRange, parts: dict, plan: queries.Plan, klass: str
    ):
        fingerprint, published = await self._fingerprint(read.start, read.end)
        key = cache_key(
            {
                "tenant": tenant,
                "kind": kind,
                "start": rng.start,
                "end": rng.end,
                "bucket": rng.bucket,
                "registry": fingerprint,
                "class": klass,
                **parts,
            }
        )

        async def compute():
            return await self.gate.run(klass, lambda ch: queries.execute(ch, self.db, plan, self.gate.count))

        return await self.cache.get_or_compute(key, self._ttl(read, published, time.time()), compute)

    # -- the questions ------------------------------------------------------------------------
    async def time_series(
        self, tenant: str, rng: TimeRange, metric: str, filters: Filters, compare: bool, klass: str = DASHBOARD
    ):
        plan = queries.time_series(self.db, tenant, rng, metric, filters, compare)
        read = rng.with_previous() if compare else rng
        points, how = await self._cached(
            tenant,
            "series",
            rng,
            read,
            {"metric": metric, "filters": filters.as_dict(), "compare": compare},
            plan,
            klass,
        )
        return {
            "tenant": tenant,
            "metric": metric,
            **rng.as_dict(),
            "grain": plan.grain.name,
            "filters": filters.as_dict(),
            "points": points,
        }, how

    async def top(
        self, tenant: str, rng: TimeRange, dimension: str, limit: int, filters: Filters, klass: str = DASHBOARD
    ):
        plan = queries.top(self.db, tenant, rng, dimension, limit, filters)
        rows, how = await self._cached(
            tenant, "top", rng, rng, {"dimension": dimension, "limit": limit, "filters": filters.as_dict()}, plan, klass
        )
        return {
            "tenant": tenant,
            "dimension": dimension,
            **rng.as_dict(),
            "grain": plan.grain.name,
            "filters": filters.as_dict(),
            "rows": rows,
        }, how

    async def totals(self, tenant: str, rng: TimeRange, filters: Filters, compare: bool):
        plan = queries.totals(self.db, tenant, rng, filters, compare)
        read = rng.with_previous() if compare else rng
        value, how = await self._cached(
            tenant, "totals", rng, read, {"filters": filters.as_dict(), "compare": compare}, plan, DASHBOARD
        )
        return {"tenant": tenant, **rng.as_dict(), "grain": plan.grain.name, "filters": filters.as_dict(), **value}, how

    async def realtime(self, tenant: str):
        window = realtime_window(time.time())
        plan = queries.realtime(self.db, tenant, window)
        value, how = await self._cached(tenant, "realtime", window, window, {}, plan, DASHBOARD)
        return {"tenant": tenant, "window_minutes": 5, **window.as_dict(), **value}, how

    async def freshness(self, tenant: str):
        now = time.time()
        plan = queries.newest_minute(self.db, tenant, now)
        window = TimeRange(plan.start, plan.end, "minute")
        newest, how = await self._cached(tenant, "newest_minute", window, window, {}, plan, DASHBOARD)
        pipeline_key = cache_key({"kind": "pipeline_freshness", "slot": int(now // self.cfg.serving.live_ttl_s)})

        async def pipeline():
            def read(ch):
                self.gate.count("meta")
                return queries.pipeline_freshness(ch, self.db)

            return await self.gate.run(DASHBOARD, read)

        state, _ = await self.cache.get_or_compute(pipeline_key, self.cfg.serving.live_ttl_s, pipeline)
        iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z") if t else None  # noqa: E731
        commit = state["last_commit"]
        return {
            "tenant": tenant,
            "newest_queryable_minute": iso(newest),
            "data_lag_s": round(now - newest - 60, 1) if newest else None,
            "last_published_hour": iso(state["last_published_hour"]),
            "stream": {"last_commit": iso(commit), "seconds_since_commit": round(now - commit, 1) if commit else None},
        }, how

    async def health(self) -> dict:
        """Each backend's state as True or a short word; what failed is logged, never returned (the
        endpoint is unauthenticated). Computed at most once per HEALTH_CACHE_S, outside the request
        slots, so probing it costs ClickHouse nothing more however often it is called."""
        if self._health is not None and time.monotonic() - self._health_at < HEALTH_CACHE_S:
            return self._health
        if self._health_lock is None:
            self._health_lock = asyncio.Lock()
        async with self._health_lock:
            if self._health is not None and time.monotonic() - self._health_at < HEALTH_CACHE_S:
                return self._health
            checks: dict[str, bool | str] = {}
            try:
                checks["redis"] = bool(await self.redis.ping())
            except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"; the reason goes to the log
                log.warning("health: Redis unreachable", extra={"error": str(exc)[:300]})
                checks["redis"] = "unreachable"

            def ping(ch):
                self.gate.count("meta")
                return ch.execute("SELECT 1")[0][0] == 1

            try:
                checks["clickhouse"] = await self.gate.run_background(DASHBOARD, ping)
            except Exception as exc:  # noqa: BLE001 - as for Redis
                log.warning("health: ClickHouse unreachable", extra={"error": str(exc)[:300]})
                checks["clickhouse"] = "unreachable"
            checks["keys"] = True if self.keys_ready() else "not loaded"
            self._health, self._health_at = checks, time.monotonic()
        return checks
