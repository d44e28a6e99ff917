"""Cache stampede and republish: 1,000 concurrent requests on a cold or just-expired key cost one
ClickHouse recompute (one more per live TTL, if a loaded box makes the burst outlast it; counted by
the server's own counters: the readonly users' queries are kept out of system.query_log on purpose);
a republished hour shows up at once, whatever the TTL."""

import asyncio
import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import redis
from support.serving import insert_minutes, publish, tenant_name
from support.wait import wait_until


@pytest.fixture(scope="module")
def tenant(api, writer, serving_cfg):
    t = tenant_name("stampede")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    insert_minutes(
        writer,
        serving_cfg.clickhouse.database,
        [(t, now - timedelta(minutes=m), "US", "mobile", f"/p{m % 7}", 3, [f"u{m}"]) for m in range(90)],
    )
    return t, api.key(t)


def _live_hour() -> dict:
    """The last hour up to the current minute, as explicit bounds: the same cache key for the whole
    burst (a "range=1h" key moves on at each minute) and still a live range (short TTL)."""
    end = (int(time.time()) // 60 + 1) * 60
    return {"start": str(end - 3600), "end": str(end)}


def _burst(api, key, requests: list[dict]) -> tuple[list[httpx.Response], float]:
    """The responses, and how long the burst took."""

    async def go():
        limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=api.url, limits=limits, timeout=60, headers={"X-API-Key": key}) as http:
            return await asyncio.gather(*(http.get("/api/v1/timeseries", params=p) for p in requests))

    started = time.monotonic()
    responses = asyncio.run(go())
    return responses, time.monotonic() - started


def _at_most(api, keys: int, seconds: float) -> int:
    """Recomputes a burst of ``keys`` distinct live keys may cost: one each, plus one per TTL the
    burst outlasted (the test API's live TTL less its jitter, from its settings: a loaded 2-core box
    can take that long to answer 1,000 requests, and may then rightly recompute a key once more)."""
    sv = api.cfg.serving
    return keys * (1 + int(seconds // (sv.live_ttl_s * (1 - sv.ttl_jitter))))


def _counts(api):
    m = api.metrics()
    return (m.get("tidemark_recomputes_total", 0.0), m.get('tidemark_clickhouse_queries_total{kind="rollup"}', 0.0))


def _entries(cache: redis.Redis) -> set[bytes]:
    """The cache's query entries (not their ``:lock`` / ``:err`` companions)."""
    return {k for k in cache.scan_iter(match="tm:q:*", count=1000) if b":" not in k[len(b"tm:q:") :]}


def _check(responses, expected_value=None):
    assert Counter(r.status_code for r in responses) == Counter({200: len(responses)}), Counter(
        (r.status_code, r.text[:120]) for r in responses if r.status_code != 200
    )
    bodies = {r.text for r in responses}
    assert len(bodies) == 1, "every request got the same answer"


def test_cold_key_1000_concurrent_requests_one_query(api, tenant):
    t, key = tenant
    assert api.get("/api/v1/me", key).status_code == 200  # the key is loaded (from memory: no query)
    before = _counts(api)
    responses, seconds = _burst(api, key, [{**_live_hour(), "page": "/p3"}] * 1000)
    after = _counts(api)
    _check(responses)
    recomputes = after[0] - before[0]
    assert 1 <= recomputes <= _at_most(api, 1, seconds), f"recomputes: {recomputes} in {seconds:.1f} s"
    assert after[1] - before[1] == recomputes, f"rollup queries: {after[1] - before[1]}"
    how = Counter(r.headers["x-cache"] for r in responses)
    assert how["miss"] == recomputes and how["wait"] + how["hit"] + how["stale"] == 1000 - recomputes, how


def test_expired_key_1000_concurrent_requests_one_query(api, tenant, serving_cfg):
    """At expiry (stale-while-revalidate): one request recomputes, the others get the stale value."""
    t, key = tenant
    live = _live_hour()
    cache = redis.Redis.from_url(serving_cfg.redis.url)
    known = _entries(cache)
    first = api.get("/api/v1/timeseries", key, **live)
    assert first.status_code == 200 and first.headers["x-cache"] == "miss", first.headers
    stored = _entries(cache) - known
    assert len(stored) == 1, f"one new cache entry expected, found {stored}"
    (entry,) = stored
    # The entry's own freshness (its TTL with the jitter the server drew), and Redis keeping it past
    # that for the stale grace: wait until it is stale, not gone.
    fresh_until = json.loads(cache.get(entry))["fresh_until"]
    assert 0 < fresh_until - time.time() <= serving_cfg.serving.live_ttl_s * (1 + serving_cfg.serving.ttl_jitter)
    wait_until(lambda: time.time() > fresh_until, serving_cfg.serving.live_ttl_s * 2, "the live entry to turn stale")
    assert cache.pttl(entry) > 0, "the stale entry is gone: nothing to serve while one request recomputes"
    before = _counts(api)
    responses, seconds = _burst(api, key, [live] * 1000)
    after = _counts(api)
    assert all(r.status_code == 200 for r in responses), Counter((r.status_code, r.text[:150]) for r in responses)
    recomputes = after[0] - before[0]
    assert 1 <= recomputes <= _at_most(api, 1, seconds) and after[1] - before[1] == recomputes, (before, after, seconds)
    how = Counter(r.headers["x-cache"] for r in responses)
    assert how["miss"] == recomputes and how["stale"] >= 1, how


def test_many_keys_one_query_each(api, tenant):
    t, key = tenant
    queries = [{**_live_hour(), "page": f"/p{i}", "metric": "users"} for i in range(5)]
    before = _counts(api)
    responses, seconds = _burst(api, key, [queries[i % 5] for i in range(1000)])
    after = _counts(api)
    assert all(r.status_code == 200 for r in responses), Counter((r.status_code, r.text[:150]) for r in responses)
    assert 5 <= after[1] - before[1] <= _at_most(api, 5, seconds), f"{after[1] - before[1]} rollup queries for 5 keys"
    assert api.metrics()["tidemark_single_flight_waits_total"] > 0


def test_republished_hour_shows_at_once(api, writer, serving_cfg):
    """Stream rows, then batch version 1, then a corrected version 2 of the same hour: each is
    visible within the registry refresh (1 s here), far inside the 60 s / 1 h TTLs that apply."""
    db = serving_cfg.clickhouse.database
    t = tenant_name("republish")
    key = api.key(t)
    # Publishing switches an hour for every tenant (the batch layer recomputes whole hours): pick one
    # that no other test of this session reads.
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=40)
    span = {"start": hour.isoformat(), "end": (hour + timedelta(hours=1)).isoformat()}
    insert_minutes(
        writer, db, [(t, hour + timedelta(minutes=m), "US", "mobile", "/", 10, [f"u{m}"]) for m in range(10)]
    )

    def total():
        r = api.get("/api/v1/totals", key, **span)
        assert r.status_code == 200, r.text
        return r.json()["events"]

    assert total() == 100
    assert total() == 100  # now cached (TTL 60 s: the hour is not published)
    try:
        _publish_twice(api, writer, db, key, hour, total)
    finally:  # a kept test database must not keep this hour switched for later runs' tenants
        writer.execute(f"ALTER TABLE {db}.published_hours DELETE WHERE run_id = 'serving-test'")


def _publish_twice(api, writer, db, key, hour, total):
    t = api.get("/api/v1/me", key).json()["tenant"]
    for version, per_minute in ((9001, 15), (9002, 17)):
        # stage (invisible: no registry row names the version), then switch
        insert_minutes(
            writer,
            db,
            [(t, hour + timedelta(minutes=m), "US", "mobile", "/", per_minute, [f"u{m}"]) for m in range(10)],
            layer="batch",
            version=version,
        )
        assert total() == (100 if version == 9001 else 150), "staged rows must stay invisible"
        publish(writer, db, hour, version)
        wait_until(lambda n=per_minute * 10: total() == n, 5, f"version {version} to be served after its publish")
