"""Callers without a valid key must cost ClickHouse nothing: keys are resolved from memory (refreshed
in the background), so a flood of unknown keys makes no query and cannot take the query slots from
real users; nothing remembers unknown keys, so nothing can fill up and evict the valid ones; and
each client address has its own token bucket, taken before the key is looked at (a forged
X-Forwarded-For changes nothing).

The flood comes from 127.0.0.2 and the real users from 127.0.0.3: distinct client addresses on
the loopback network, as distinct hosts would be."""

import asyncio
import secrets
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from support.api import serve
from support.serving import insert_minutes, request_path_queries, tenant_name

from tidemark.serving.core import Service

ATTACKER, USER = "127.0.0.2", "127.0.0.3"
FLOOD = 1_500
# More distinct unknown keys than the negative cache that used to hold them (10,000 entries, then
# cleared whole, valid keys included).
PAST_THE_OLD_BOUND = 10_050


def _unknown_key() -> str:
    return f"tmk_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


def _client(url: str, source: str, connections: int) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(
        local_address=source, limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    )
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=60)


async def _flood(url: str, tokens: list[str], paths: list[str], forged: bool = False) -> Counter:
    """Every token once (cycling over ``paths``), 64 at a time, from ATTACKER."""
    gate = asyncio.Semaphore(64)
    async with _client(url, ATTACKER, 64) as http:

        async def one(i: int, token: str) -> int:
            headers = {"X-API-Key": token}
            if forged:  # a fresh "client address" per request, if the API believed it
                headers["X-Forwarded-For"] = f"10.{i % 250}.{i // 250 % 250}.{i % 7 + 1}"
            async with gate:
                return (await http.get(paths[i % len(paths)], headers=headers)).status_code

        return Counter(await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens))))


async def _user_meanwhile(url: str, key: str, until: asyncio.Future) -> list[tuple[int, float]]:
    """A real user from USER, asking /api/v1/me (which needs no ClickHouse query) while the flood runs."""
    seen = []
    async with _client(url, USER, 2) as http:
        while not until.done() or not seen:
            started = time.monotonic()
            r = await http.get("/api/v1/me", headers={"X-API-Key": key})
            seen.append((r.status_code, time.monotonic() - started))
            # Asks again 50 ms later (a person's pace, inside its address's own bucket), or stops as
            # soon as the flood is over.
            await asyncio.wait([until], timeout=0.05)
    return seen


def _flood_while_a_user_asks(url: str, key: str, tokens: list[str], paths: list[str], forged: bool = False):
    async def go():
        flood = asyncio.ensure_future(_flood(url, tokens, paths, forged))
        user = asyncio.ensure_future(_user_meanwhile(url, key, flood))
        return await flood, await user

    return asyncio.run(go())


@pytest.fixture(scope="module")
def tenant(api, writer, serving_cfg):
    t = tenant_name("flood-victim")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    insert_minutes(
        writer,
        serving_cfg.clickhouse.database,
        [(t, now - timedelta(hours=2, minutes=m), "US", "desktop", "/", 3, [f"u{m}"]) for m in range(20)],
    )
    return t


def test_unknown_key_flood_makes_no_clickhouse_query_and_keeps_valid_keys(api, tenant):
    key = api.key(tenant)
    assert api.get("/api/v1/me", key).status_code == 200
    before = api.metrics()
    tokens = [_unknown_key() for _ in range(FLOOD)]
    paths = ["/api/v1/me", "/api/v1/totals", "/api/v1/realtime", "/api/v1/export/top.csv"]
    statuses, user = _flood_while_a_user_asks(api.url, key, tokens, paths)
    after = api.metrics()
    assert statuses == Counter({401: FLOOD}), statuses
    assert request_path_queries(after) - request_path_queries(before) == 0, "unknown keys reached ClickHouse"
    assert after.get("tidemark_clickhouse_inflight_max", 0) <= 4
    assert {s for s, _ in user} == {200}, Counter(s for s, _ in user)
    # its questions are answered from ClickHouse as usual
    totals = api.get("/api/v1/totals", key, range="6h")
    assert totals.status_code == 200 and totals.json()["events"] == 60, totals.text


def test_unknown_keys_past_the_old_cache_bound_keep_valid_keys_in_memory(api, tenant, serving_cfg):
    """The service itself (in this process, on the real ClickHouse and Redis): more unknown keys
    than the old negative cache held, then the valid key is still resolved from memory, and the
    key ring holds exactly the table's live keys, not one entry more."""
    key = api.key(tenant)

    async def go():
        service = Service(serving_cfg)
        await service.start()
        try:

            def queries() -> float:
                total = service.metrics.value("tidemark_clickhouse_queries_total")
                return total - service.metrics.value("tidemark_clickhouse_queries_total", kind="keys")

            assert service.authenticate(key).tenant_id == tenant
            size, before = len(service.keyring), queries()
            for _ in range(PAST_THE_OLD_BOUND):
                assert service.authenticate(_unknown_key()) is None
            assert service.authenticate(key).tenant_id == tenant
            assert queries() == before == 0 and len(service.keyring) == size
        finally:
            await service.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def guarded(serving_cfg):
    """An API whose per-client bucket is small (burst 20, 5 requests/s)."""
    with serve(serving_cfg, {"TIDEMARK_SERVING_CLIENT_RATE_PER_S": "5", "TIDEMARK_SERVING_CLIENT_BURST": "20"}) as api:
        yield api


def test_client_rate_limit_comes_before_the_key_lookup(guarded, tenant):
    key = guarded.key(tenant)
    before = guarded.metrics()
    tokens = [_unknown_key() for _ in range(300)]
    started = time.monotonic()
    statuses, user = _flood_while_a_user_asks(guarded.url, key, tokens, ["/api/v1/totals"], forged=True)
    seconds = time.monotonic() - started
    assert set(statuses) == {401, 429}, statuses
    # the burst, plus what 5/s refills while the flood lasts
    assert 20 <= statuses[401] <= 20 + 5 * seconds + 1, (statuses, seconds)
    assert request_path_queries(guarded.metrics()) - request_path_queries(before) == 0
    # another address has its own bucket: the user is served throughout
    assert {s for s, _ in user} == {200}, Counter(s for s, _ in user)

    async def same_address_valid_key():
        async with _client(guarded.url, ATTACKER, 1) as http:
            return [await http.get("/api/v1/me", headers={"X-API-Key": key}) for _ in range(40)]

    # the bucket is the address's, whatever key it sends: even a valid one is limited there
    refused = [r for r in asyncio.run(same_address_valid_key()) if r.status_code != 200]
    assert refused and {(r.status_code, r.json()["error"]) for r in refused} == {(429, "rate_limited")}
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
