"""Cache stampede and republish: 1,000 concurrent requests on a cold or just-expired key cost one
ClickHouse recompute (one more per live TTL, if a loaded box makes the burst outlast it; counted by
the server's own counters: the readonly users' queries are kept out of system.query_log on purpose);
a republished hour shows up at once, whatever the TTL."""

import asyncio
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from serving_helpers import insert_minutes, publish, tenant_name

pytestmark = pytest.mark.integration


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


# The live TTL of these tests (4 s) less its jitter: a burst that lasts longer than this (a loaded
# 2-core box can take that long to answer 1,000 requests) may rightly recompute a key once more.
MIN_LIVE_TTL_S = 4 * (1 - 0.15)


def _burst(api, key, requests: list[dict]) -> tuple[list[httpx.Response], float]:
    """The responses, and how long the burst took."""

    async def go():
        limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=api.url, limits=limits, timeout=60, headers={"X-API-Key": key}) as http:
            return await asyncio.gather(*(http.get("/api/v1/timeseries", params=p) for p in requests))

    started = time.monotonic()
    responses = asyncio.run(go())
    return responses, time.monotonic() - started


def _at_most(keys: int, seconds: float) -> int:
    """Recomputes a burst of ``keys`` distinct live keys may cost: one each, plus one per TTL the
    burst outlasted."""
    return keys * (1 + int(seconds // MIN_LIVE_TTL_S))


def _counts(api):
    m = api.metrics()
    return (m.get("tidemark_recomputes_total", 0.0), m.get('tidemark_clickhouse_queries_total{kind="rollup"}', 0.0))


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
    assert 1 <= recomputes <= _at_most(1, seconds), f"recomputes: {recomputes} in {seconds:.1f} s"
    assert after[1] - before[1] == recomputes, f"rollup queries: {after[1] - before[1]}"
    how = Counter(r.headers["x-cache"] for r in responses)
    assert how["miss"] == recomputes and how["wait"] + how["hit"] + how["stale"] == 1000 - recomputes, how


def test_expired_key_1000_concurrent_requests_one_query(api, tenant):
    """At expiry (stale-while-revalidate): one request recomputes, the others get the stale value."""
    t, key = tenant
    live = _live_hour()
    assert api.get("/api/v1/timeseries", key, **live).status_code == 200
    time.sleep(4 * 1.15 + 0.3)  # the live TTL (4 s in these tests) with its jitter has passed
    before = _counts(api)
    responses, seconds = _burst(api, key, [live] * 1000)
    after = _counts(api)
    assert all(r.status_code == 200 for r in responses), Counter((r.status_code, r.text[:150]) for r in responses)
    recomputes = after[0] - before[0]
    assert 1 <= recomputes <= _at_most(1, seconds) and after[1] - before[1] == recomputes, (before, after, seconds)
    how = Counter(r.headers["x-cache"] for r in responses)
    assert how["miss"] == recomputes and how["stale"] >= 1, how


def test_many_keys_one_query_each(api, tenant):
    t, key = tenant
    queries = [{**_live_hour(), "page": f"/p{i}", "metric": "users"} for i in range(5)]
    before = _counts(api)
    responses, seconds = _burst(api, key, [queries[i % 5] for i in range(1000)])
    after = _counts(api)
    assert all(r.status_code == 200 for r in responses), Counter((r.status_code, r.text[:150]) for r in responses)
    assert 5 <= after[1] - before[1] <= _at_most(5, seconds), f"{after[1] - before[1]} rollup queries for 5 keys"
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
        switched = time.monotonic()
        while total() != per_minute * 10:
            assert time.monotonic() - switched < 5, f"version {version} not served 5 s after its publish"
            time.sleep(0.1)
