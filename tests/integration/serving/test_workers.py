"""Several API processes (TIDEMARK_SERVING_WORKERS): `tidemark serve` starts them, and what must hold
across processes does: one tenant's token bucket (Redis), one answer per question, every request
answered. (The other serving tests run one process: they read its own /metrics.)"""

import asyncio
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from support.api import serve
from support.serving import insert_minutes, tenant_name
from support.wait import wait_until


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture(scope="module")
def two(serving_cfg):
    with serve(serving_cfg, {"TIDEMARK_SERVING_WORKERS": "2"}) as api:
        yield api


def _keys_loaded_by_both(api, since: float, timeout_s: float = 15.0) -> None:
    """Each worker has loaded keys since ``since`` (each /metrics answer says which process it is)."""
    loaded: dict[float, float] = {}

    def both() -> bool:
        m = api.metrics()  # answered by whichever process took the connection
        loaded[m["tidemark_api_process_id"]] = m.get("tidemark_api_keys_loaded_through", 0.0)
        return len([p for p, at in loaded.items() if at > since]) >= 2

    wait_until(both, timeout_s, lambda: f"both workers to load keys (loads seen: {loaded})")


def test_two_workers_share_buckets_and_answer_alike(two, writer, serving_cfg):
    # uvicorn's supervisor forks its workers after binding the port
    wait_until(lambda: len(_children(two.pid)) >= 2, 20, "two worker processes", interval_s=0.2)
    t = tenant_name("workers")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    insert_minutes(
        writer,
        serving_cfg.clickhouse.database,
        [(t, now - timedelta(minutes=m), "US", "mobile", "/", 2, [f"u{m}"]) for m in range(30)],
    )
    from tidemark.serving.keys import create

    since = time.time()
    key = create(serving_cfg, t, "test")[1]
    limited = create(serving_cfg, tenant_name("workers-limited"), "test", rate_per_s=0.2, burst=3)[1]
    _keys_loaded_by_both(two, since)
    end = (int(time.time()) // 60 + 1) * 60
    params = {"start": str(end - 3600), "end": str(end)}

    async def burst():  # fresh connections: spread over both processes
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=two.url, limits=limits, timeout=60, headers={"X-API-Key": key}) as http:
            return await asyncio.gather(*(http.get("/api/v1/totals", params=params) for _ in range(200)))

    responses = asyncio.run(burst())
    assert Counter(r.status_code for r in responses) == Counter({200: 200})
    assert {r.json()["events"] for r in responses} == {60}

    statuses = Counter(two.get("/api/v1/me", limited).status_code for _ in range(10))
    assert statuses == Counter({200: 3, 429: 7}), statuses  # one bucket, whichever process answers
