"""What the API tells callers about itself: when ClickHouse goes away (a real TCP path to it, cut),
the 503 and the unauthenticated /health name no address and carry no exception text (the log has
them); keys are refused once they could not be refreshed for key_max_stale_s; and the freshness
answer holds nothing derived from other tenants' events."""

import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from support.api import serve
from support.serving import TcpProxy, insert_minutes, tenant_name
from support.wait import wait_until

MAX_STALE_S = 4


def _leaks(text: str, *ports: int) -> list[str]:
    found = [p for p in ("127.0.0.1", "localhost", "Errno", "refused", "Code:", "Traceback", "Exception") if p in text]
    return found + [str(p) for p in ports if re.search(rf"\b{p}\b", text)]


# tenant -> its newest minute (the fixture's clock: a test that runs a minute later must not recompute it)
NEWEST: dict[str, datetime] = {}


@pytest.fixture(scope="module")
def tenant(writer, serving_cfg):
    t = tenant_name("leaks")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    NEWEST[t] = now - timedelta(minutes=30)
    insert_minutes(
        writer,
        serving_cfg.clickhouse.database,
        [(t, now - timedelta(minutes=30 + m), "US", "desktop", "/", 2, [f"u{m}"]) for m in range(10)],
    )
    return t


def test_clickhouse_gone_503_and_health_name_no_address_and_stale_keys_are_refused(serving_cfg, tenant):
    ch = serving_cfg.clickhouse
    proxy = TcpProxy(ch.host, ch.port)
    env = {
        "CLICKHOUSE_PORT": str(proxy.port),
        "TIDEMARK_SERVING_KEY_REFRESH_S": "1",
        "TIDEMARK_SERVING_KEY_MAX_STALE_S": str(MAX_STALE_S),
    }
    with serve(serving_cfg, env) as api:
        key = api.key(tenant)
        assert api.get("/api/v1/totals", key, range="6h").json()["events"] == 20
        proxy.cut()
        cut_at = time.monotonic()

        failed = api.get("/api/v1/totals", key, range="24h")  # not cached: needs ClickHouse
        assert failed.status_code == 503, failed.text
        assert failed.json()["error"] == "unavailable" and failed.headers["retry-after"]
        assert not _leaks(failed.text, proxy.port, ch.port), failed.text

        health = wait_until(
            lambda: (r := api.get("/health")).status_code != 200 and r,
            10,
            "/health to stop answering 200 after ClickHouse went away",
            interval_s=0.2,
        )
        assert health.status_code == 503 and health.json()["clickhouse"] == "unreachable", health.text
        assert set(health.json().values()) <= {True, False, "unreachable", "not loaded"}, health.text
        assert not _leaks(health.text, proxy.port, ch.port), health.text

        # /me needs no query: the loaded keys answer it, until nobody could re-check them for MAX_STALE_S
        me = wait_until(
            lambda: (r := api.get("/api/v1/me", key)).status_code != 200 and r,
            MAX_STALE_S + 5 - (time.monotonic() - cut_at),
            "the keys to stop being trusted past key_max_stale_s",
            interval_s=0.1,
        )
        refused_at = time.time()
        last_load = api.metrics()["tidemark_api_keys_loaded_through"]  # when the last good load started
        assert refused_at - last_load >= MAX_STALE_S - 0.5, "keys refused before key_max_stale_s"
        assert me.status_code == 503 and me.json()["error"] == "unavailable", me.text
        assert not _leaks(me.text, proxy.port, ch.port), me.text

    log = api.log.read_text()
    assert "ClickHouse unreachable" in log and str(proxy.port) in log, "the detail must reach the server's log"


def test_freshness_is_the_callers_own(api, writer, serving_cfg, tenant):
    """The tenant's newest minute is its own (30 min ago), though another tenant has data this
    minute; and nothing measured over every tenant (newest event, consumer lag) is in the answer."""
    other = tenant_name("leaks-other")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    insert_minutes(writer, serving_cfg.clickhouse.database, [(other, now, "US", "desktop", "/", 1, ["x"])])
    body = api.get("/api/v1/freshness", api.key(tenant)).json()
    assert body["tenant"] == tenant
    assert body["newest_queryable_minute"] == NEWEST[tenant].isoformat().replace("+00:00", "Z")
    assert set(body) == {"tenant", "newest_queryable_minute", "data_lag_s", "last_published_hour", "stream"}
    assert set(body["stream"]) == {"last_commit", "seconds_since_commit"}, body["stream"]
