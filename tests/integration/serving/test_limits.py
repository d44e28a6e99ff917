"""Limits: the per-tenant token bucket (429 + Retry-After), the dashboard class's wall-clock limit
(504, a real ClickHouse timeout on a heavy minute-grain query), the bound on queries in flight (503);
and all the while other tenants are answered."""

import concurrent.futures
import time
from datetime import datetime, timedelta, timezone

import pytest
from support.serving import HEAVY, insert_minutes, tenant_name
from support.wait import wait_until


@pytest.fixture(scope="module")
def bystander(api, writer, serving_cfg):
    """Another tenant, with a little data, whose requests must keep working."""
    t = tenant_name("bystander")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    insert_minutes(
        writer,
        serving_cfg.clickhouse.database,
        [(t, now - timedelta(minutes=m), "US", "desktop", "/", 2, [f"u{m}"]) for m in range(30)],
    )
    return api.key(t)


def test_rate_limit_answers_429_with_retry_after_and_others_are_served(api, bystander):
    t = tenant_name("limited")
    key = api.key(t, rate_per_s=0.5, burst=3)
    statuses = [api.get("/api/v1/me", key).status_code for _ in range(8)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429] * 5, statuses
    limited = api.get("/api/v1/realtime", key)
    refused_at = time.monotonic()
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    retry = int(limited.headers["retry-after"])
    assert 1 <= retry <= 2
    assert api.get("/api/v1/realtime", bystander).status_code == 200  # another tenant's bucket is its own
    # The fact waited on is the server's own promise: Retry-After seconds from its answer (+0.1 s for
    # the clock edge); no request is sent meanwhile, so none takes a token.
    wait_until(lambda: time.monotonic() >= refused_at + retry + 0.1, retry + 1, "the Retry-After to pass")
    assert api.get("/api/v1/me", key).status_code == 200


def _dashboard_queries(writer, serving_cfg) -> list[tuple]:
    """The minute-rollup queries the dashboard reader is running now (ClickHouse's own list; the
    tenant travels in an external table, so the text does not name it)."""
    return writer.execute(
        "SELECT query_id, elapsed FROM system.processes WHERE user = %(u)s AND query LIKE '%%minute_rollups%%'",
        {"u": serving_cfg.serving.dashboard_user},
    )


def test_timeout_answers_504_and_others_are_served(api, heavy, bystander, writer, serving_cfg):
    _, heavy_key = heavy
    # An earlier test's heavy query may still be ending: the one seen below must be this one.
    wait_until(lambda: not _dashboard_queries(writer, serving_cfg), 30, "earlier dashboard queries to end")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(api.get, "/api/v1/timeseries", heavy_key, **HEAVY)
        wait_until(lambda: _dashboard_queries(writer, serving_cfg), 10, "the heavy query to run in ClickHouse")
        started = time.monotonic()
        # while the heavy query runs, another tenant is answered, quickly
        other = [api.get("/api/v1/timeseries", bystander, range="1h", compare="true") for _ in range(3)]
        others_done = time.monotonic() - started
        response = slow.result()
    assert all(o.status_code == 200 for o in other)
    assert response.status_code == 504, response.text
    body = response.json()
    assert body["error"] == "query_timeout" and "3 s limit" in body["detail"], body
    assert others_done < 3.0, f"the other tenant waited {others_done:.2f} s"
    again_started = time.monotonic()
    again = api.get("/api/v1/timeseries", heavy_key, **HEAVY)  # remembered: no second runaway query
    assert again.status_code == 504 and time.monotonic() - again_started < 0.5


def test_saturated_query_slots_answer_503(api, heavy, bystander):
    """Eight different heavy questions at once against 4 slots and a 2 s queue wait (under the 3 s limit): the excess
    gets 503 with Retry-After instead of piling up; once they drain, others are answered."""
    _, heavy_key = heavy
    end = int(time.time()) // 3600 * 3600
    queries = [
        {**HEAVY, "range": None, "start": str(end - 89 * 86400 - i * 86400), "end": str(end - i * 86400)}
        for i in range(8)
    ]
    for q in queries:
        q.pop("range")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda q: api.get("/api/v1/timeseries", heavy_key, **q), queries))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {504, 503} and statuses.count(503) >= 1, statuses
    for r in responses:
        if r.status_code == 503:
            assert r.json()["error"] == "overloaded" and r.headers["retry-after"] == "1"
    assert api.get("/api/v1/totals", bystander, range="24h").status_code == 200
    assert api.metrics()["tidemark_clickhouse_inflight_max"] <= 4
