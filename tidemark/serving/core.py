"""The serving core behind the HTTP layer: keys -> tenant, rate limits, cache, and the queries.

The tenant of every query is the key's tenant, passed down from here; no request parameter can
name one. Keys are resolved in memory (``keys.KeyRing``, refreshed by a background task): no
request ever waits on, or causes, a key lookup in ClickHouse. Each answer goes through the cache
(tidemark/serving/cache.py) under a key made of the normalized question and the fingerprint of
the published hours it covers.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import logging
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import redis.asyncio as aioredis

from tidemark.config import Settings
from tidemark.lambda_merge import Snapshot, minute_horizon, snapshot
from tidemark.serving import grains, keys, queries
from tidemark.serving.admission import Admission
from tidemark.serving.cache import QueryCache, cache_key
from tidemark.serving.limits import Decision, RateLimiter
from tidemark.serving.metrics import Metrics
from tidemark.serving.queries import Filters
from tidemark.serving.ranges import HOUR, TimeRange, realtime_window
from tidemark.serving.reader import DASHBOARD, ClickHouseGate, Unavailable

log = logging.getLogger(__name__)

# The registry fingerprint covers every hour a query may read: 90 days and the 90 before them.
REGISTRY_WINDOW = timedelta(days=181)
LIVE_TTL_FACTOR = {"minute": 1, "hour": 3, "day": 6}
# A registry snapshot older than cfg.serving.registry_max_stale_s (max(30 s, 15 refresh intervals))
# is not answered from (503): the refresh has been failing, and a republished hour (or a newly
# recorded minute horizon: the hot tier waits that long before dropping) must not stay hidden.
FINGERPRINT_MEMO = 4096  # fingerprints of ranges memoized per snapshot
SETTLED_WALK_HOURS = 72  # a live series' unpublished tail is looked for this far back
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
        self._registry_task: asyncio.Task | None = None
        self._registry: Snapshot | None = None
        self._registry_at = 0.0
        self._horizon = 0  # minute rows before this (epoch seconds) were dropped by the hot tier
        self._fingerprints_of: Snapshot | None = None  # the snapshot the memo below belongs to
        self._fingerprints: dict[tuple[int, int], tuple[str, int]] = {}
        self._hours: list[int] = []
        self._health: dict | None = None
        self._health_at = 0.0
        self._health_lock: asyncio.Lock | None = None

    async def start(self) -> None:
        """Start the background key and registry refreshes; wait a little for their first loads,
        so a fresh server answers at once (if ClickHouse is down it starts anyway, and /health
        says why)."""
        self.metrics.set("tidemark_api_process_id", os.getpid())  # which worker answered /metrics
        keys_loaded, registry_loaded = asyncio.Event(), asyncio.Event()
        self._keys_task = asyncio.create_task(self._refresh_keys_forever(keys_loaded))
        self._registry_task = asyncio.create_task(self._refresh_registry_forever(registry_loaded))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(keys_loaded.wait(), registry_loaded.wait()), timeout=FIRST_KEYS_WAIT_S
            )

    async def close(self) -> None:
        for task in (self._keys_task, self._registry_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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

    async def admit(
        self, address: str, key: keys.ApiKey | None, cache_key: str | None = None
    ) -> tuple[Decision, Decision | None, tuple | None]:
        """The client address's token bucket, then the key's tenant's, then (both allowed) the
        cache entry under ``cache_key``: one Redis round trip (tidemark/serving/admission.py)."""
        if key is None:
            return await self.limiter.admit(address)
        return await self.limiter.admit(address, key.tenant_id, key.rate_per_s, key.burst, cache_key)

    # -- registry snapshot -----------------------------------------------------------------
    async def _refresh_registry_forever(self, loaded: asyncio.Event) -> None:
        """Re-read the publication registry, the counted stream batches and the minute tier's
        horizon each registry_refresh_s, outside the request slots: requests never wait on (or
        cause) a registry read; every query of a refresh interval uses the same snapshot, which is
        also what its cache key's fingerprint is made of (so the key and the rows agree)."""
        failures = 0
        while True:
            try:
                started = time.monotonic()
                snap, horizon = await self.gate.run_background(DASHBOARD, self._read_registry)
                self._registry, self._registry_at, self._horizon = snap, started, horizon
                self.metrics.set("tidemark_registry_loaded_at", time.time())
                self.metrics.set("tidemark_minute_horizon", horizon)
                if failures:
                    log.warning("publication registry read again", extra={"after_failures": failures})
                failures = 0
                loaded.set()
            except Exception as exc:  # noqa: BLE001 - keep refreshing; the last snapshot serves until it is too old
                if failures % KEY_FAILURE_LOG_EVERY == 0:
                    log.warning(
                        "could not refresh the publication registry; serving with the last snapshot",
                        extra={"error": str(exc)[:300], "failures": failures + 1},
                    )
                failures += 1
            await asyncio.sleep(self.cfg.serving.registry_refresh_s)

    def _read_registry(self, ch) -> tuple[Snapshot, int]:
        """Registry, counted stream batches, minute horizon: three queries (kept apart from the
        request-path query counters: no request causes them)."""
        self.metrics.inc("tidemark_clickhouse_background_queries_total", 3, kind="registry")
        now = datetime.now(timezone.utc)
        snap = snapshot(ch, self.db, now - REGISTRY_WINDOW, now + timedelta(hours=2))
        return snap, minute_horizon(ch, self.db)

    def _registry_snapshot(self) -> Snapshot | None:
        """The current snapshot, or None if there is none recent enough to answer from: a
        snapshot older than registry_max_stale_s could hide a republished hour too long."""
        max_stale = self.cfg.serving.registry_max_stale_s
        if self._registry is None or time.monotonic() - self._registry_at > max_stale:
            return None
        return self._registry

    def _fingerprint(self, snap: Snapshot, start: int, end: int) -> tuple[str, int]:
        """(digest of the published versions of the hours in [start, end), how many are published).
        Memoized per snapshot (a cache hit must not walk thousands of hours): ranges repeat."""
        first = start // HOUR * HOUR
        if self._fingerprints_of is not snap:
            self._fingerprints_of, self._fingerprints, self._hours = snap, {}, sorted(snap.versions)
        found = self._fingerprints.get((first, end))
        if found is None:
            hours = self._hours[bisect.bisect_left(self._hours, first) : bisect.bisect_left(self._hours, end)]
            inside = [(h, snap.versions[h]) for h in hours]
            found = hashlib.sha256(repr(inside).encode()).hexdigest()[:16], len(inside)
            if len(self._fingerprints) >= FINGERPRINT_MEMO:
                self._fingerprints.clear()
            self._fingerprints[(first, end)] = found
        return found

    def _ttl(self, rng: TimeRange, published: int, now: float) -> float:
        sv = self.cfg.serving
        if rng.touches_live(now):
            return sv.live_ttl_s * LIVE_TTL_FACTOR[rng.bucket]
        hours = -(-rng.end // HOUR) - rng.start // HOUR
        return sv.closed_ttl_s if published >= hours else sv.recent_ttl_s

    async def _cached(
        self,
        adm: Admission,
        kind: str,
        rng: TimeRange,
        read: TimeRange,
        parts: dict,
        plan: queries.Plan,
        klass: str,
        ttl_s: float | None = None,
    ):
        snap = self._registry_snapshot()
        if snap is None:
            await adm.check()  # who is asking comes first (401/429 before this 503)
            raise Unavailable("the publication registry cannot be read right now")
        fingerprint, published = self._fingerprint(snap, read.start, read.end)
        key = cache_key(
            {
                "tenant": adm.tenant_id,
                "kind": kind,
                "start": rng.start,
                "end": rng.end,
                "bucket": rng.bucket,
                "registry": fingerprint,
                "class": klass,
                # A minute-grain answer is keyed by the minute horizon it was computed under: once the
                # API learns of a drop, no answer computed before it is served for the dropped days.
                "minute_from": self._horizon if plan.grain in grains.HORIZON_GRAINS else 0,
                **parts,
            }
        )
        first = await adm.check(key)  # the token buckets and the cache entry: one round trip

        async def compute():
            return await self.gate.run(klass, lambda ch: queries.execute(ch, self.db, plan, self.gate.count, snap))

        ttl = self._ttl(read, published, time.time()) if ttl_s is None else ttl_s
        return await self.cache.get_or_compute(key, ttl, compute, first)

    # -- the questions ------------------------------------------------------------------------
    async def time_series(
        self, adm: Admission, rng: TimeRange, metric: str, filters: Filters, compare: bool, klass: str = DASHBOARD
    ):
        tenant = adm.tenant_id  # checked (with the cache read) before anything runs
        plan = queries.time_series(self.db, tenant, rng, metric, filters, compare, minute_from=self._horizon)
        read = rng.with_previous() if compare else rng
        parts = {"metric": metric, "filters": filters.as_dict(), "compare": compare}
        at = self._settled_until(rng, read)
        if at is None:
            points, how = await self._cached(adm, "series", rng, read, parts, plan, klass)
        else:
            # The settled past (published hours only: its key carries their versions, so a long TTL
            # hides no republish) apart from the live tail, which alone is recomputed at the live TTL.
            past, live = queries.split_at(plan, at)
            settled = TimeRange(read.start, at, rng.bucket)
            past_rows, past_how = await self._cached(
                adm, "series", rng, settled, {**parts, "part": "settled", "at": at}, past, klass
            )
            tail = TimeRange(at, rng.end, rng.bucket)
            live_rows, live_how = await self._cached(adm, "series", rng, tail, {**parts, "part": "live"}, live, klass)
            points = plan.shape(past_rows + live_rows)
            how = "miss" if "miss" in (past_how, live_how) else live_how
        return {
            "tenant": tenant,
            "metric": metric,
            **rng.as_dict(),
            "grain": plan.grain.name,
            "filters": filters.as_dict(),
            "points": points,
        }, how

    def _settled_until(self, rng: TimeRange, read: TimeRange) -> int | None:
        """Where a live hour- or day-bucket series splits into its settled past and its live tail:
        the bucket boundary at or before the oldest hour of the unpublished tail (None: no split).
        The walk back stops after SETTLED_WALK_HOURS (a batch layer that far behind: no split)."""
        now = time.time()
        snap = self._registry_snapshot()
        if rng.bucket == "minute" or snap is None or not rng.touches_live(now):
            return None
        hour = int(now) // HOUR * HOUR
        for _ in range(SETTLED_WALK_HOURS):
            if hour - HOUR < read.start or (hour - HOUR) in snap.versions:
                break
            hour -= HOUR
        else:
            return None
        at = hour // rng.step * rng.step
        return at if read.start < at < rng.end else None

    async def top(
        self, adm: Admission, rng: TimeRange, dimension: str, limit: int, filters: Filters, klass: str = DASHBOARD
    ):
        tenant = adm.tenant_id  # checked (with the cache read) before anything runs
        plan = queries.top(self.db, tenant, rng, dimension, limit, filters, minute_from=self._horizon)
        rows, how = await self._cached(
            adm, "top", rng, rng, {"dimension": dimension, "limit": limit, "filters": filters.as_dict()}, plan, klass
        )
        return {
            "tenant": tenant,
            "dimension": dimension,
            **rng.as_dict(),
            "grain": plan.grain.name,
            "filters": filters.as_dict(),
            "rows": rows,
        }, how

    async def totals(self, adm: Admission, rng: TimeRange, filters: Filters, compare: bool):
        tenant = adm.tenant_id  # checked (with the cache read) before anything runs
        plan = queries.totals(self.db, tenant, rng, filters, compare, minute_from=self._horizon)
        read = rng.with_previous() if compare else rng
        parts = {"filters": filters.as_dict(), "compare": compare}
        value: Any  # the plan's shaped answer (a dict for totals)
        if compare and rng.touches_live(time.time()):
            # The previous period is its own group (its own distinct users): cached apart, under its
            # hours' versions, so only the live current period is recomputed at the live TTL.
            previous, current = queries.split_at(plan, rng.start)
            prev_rows, prev_how = await self._cached(
                adm, "totals", rng, rng.previous(), {**parts, "part": "previous"}, previous, DASHBOARD
            )
            cur_rows, cur_how = await self._cached(
                adm, "totals", rng, rng, {**parts, "part": "current"}, current, DASHBOARD
            )
            value = plan.shape(prev_rows + cur_rows)
            how = "miss" if "miss" in (prev_how, cur_how) else cur_how
        else:
            value, how = await self._cached(adm, "totals", rng, read, parts, plan, DASHBOARD)
        return {"tenant": tenant, **rng.as_dict(), "grain": plan.grain.name, "filters": filters.as_dict(), **value}, how

    async def anomalies(self, adm: Admission, rng: TimeRange, metric: str | None):
        tenant = adm.tenant_id  # checked (with the cache read) before anything runs
        plan = queries.anomalies(self.db, tenant, rng, metric)
        # A detection run rewrites a range after its hours were published: the recent TTL, never the
        # closed one, so what it found shows within a minute.
        ttl = self.cfg.serving.recent_ttl_s
        rows, how = await self._cached(adm, "anomalies", rng, rng, {"metric": metric}, plan, DASHBOARD, ttl)
        return {"tenant": tenant, **rng.as_dict(), "anomalies": rows}, how

    async def realtime(self, adm: Admission):
        tenant = adm.tenant_id  # checked (with the cache read) before anything runs
        window = realtime_window(time.time())
        plan = queries.realtime(self.db, tenant, window)
        value, how = await self._cached(adm, "realtime", window, window, {}, plan, DASHBOARD)
        return {"tenant": tenant, "window_minutes": 5, **window.as_dict(), **value}, how

    async def freshness(self, adm: Admission):
        tenant = adm.tenant_id  # checked (with the cache read) before anything runs
        now = time.time()
        plan = queries.newest_minute(self.db, tenant, now)
        window = TimeRange(plan.start, plan.end, "minute")
        newest, how = await self._cached(adm, "newest_minute", window, window, {}, plan, DASHBOARD)
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
