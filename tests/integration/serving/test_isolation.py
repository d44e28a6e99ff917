"""Tenant isolation, tried as an attacker would: random parameters, other tenants' keys, ids and
names, SQL-injection strings in every field. Zero foreign rows, only clean 4xx; the readonly
users' queries never reach system.query_log, where any reader could read them; and their running
queries in system.processes (which 18.16 shows every user) carry no tenant id or filter value."""

import concurrent.futures
import json
import random
import secrets
import time
from datetime import datetime, timedelta, timezone

import pytest
from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException
from support.serving import HEAVY, insert_minutes, tenant_name
from support.wait import wait_until

INJECTIONS = [
    "' OR 1=1 --",
    "US' OR tenant_id != '",
    "\\' OR 1=1 --",
    "') OR ('1'='1",
    "%(tenant)s",
    "{tenant}",
    "1; DROP TABLE api_keys",
    "' UNION ALL SELECT tenant_id, 1, 1 FROM api_keys --",
    "US\n",
    "\x00",
    "ü页🙂",
    "x" * 300,
    "",
    " ",
    "%",
    "_",
    "*",
    "NULL",
    "'; SELECT sleep(3); --",
    "$(id)",
]


@pytest.fixture(scope="module")
def tenants(api, writer, serving_cfg):
    db = serving_cfg.clickhouse.database
    a, b, c = tenant_name("iso-a"), tenant_name("iso-b"), tenant_name("iso-c")
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    rnd = random.Random(7)
    truth = {}
    rows = []
    for tenant, pages, countries, volume in (
        (a, ["/", "/a-home", "/a-docs"], ["US", "AA"], 3),
        (b, ["/", "/b-secret-admin", "/b-secret-pay"], ["US", "ZZ"], 11),
        (c, ["/", "/c-private"], ["US", "CC"], 5),
    ):
        total = 0
        for m in range(0, 3 * 24 * 60, 9):
            minute = now - timedelta(minutes=m)
            ev = volume + rnd.randrange(3)
            total += ev
            rows.append(
                (
                    tenant,
                    minute,
                    rnd.choice(countries),
                    rnd.choice(["desktop", "mobile"]),
                    rnd.choice(pages),
                    ev,
                    [f"{tenant}-u{rnd.randrange(400)}"],
                )
            )
        truth[tenant] = {"pages": set(pages), "countries": set(countries), "events_3d": total}
    insert_minutes(writer, db, rows)
    keys = {t: api.key(t) for t in (a, b)}
    return {"a": a, "b": b, "c": c, "truth": truth, "keys": keys}


def _foreign_markers(tenants, own):
    others = [t for t in (tenants["a"], tenants["b"], tenants["c"]) if t != own]
    markers = list(others)
    for t in others:
        markers += [p for p in tenants["truth"][t]["pages"] if p != "/"]
        markers += [c for c in tenants["truth"][t]["countries"] if c != "US"]
    return markers


def _random_request(rnd, tenants):
    a, b, c = tenants["a"], tenants["b"], tenants["c"]
    pool = (
        INJECTIONS
        + [a, b, c, tenants["keys"][b], "/b-secret-admin", "ZZ", "CC", "/a-home", "US", "mobile"]
        + list(tenants["truth"][a]["pages"])
    )
    endpoint = rnd.choice(
        [
            "/api/v1/timeseries",
            "/api/v1/top",
            "/api/v1/totals",
            "/api/v1/realtime",
            "/api/v1/freshness",
            "/api/v1/me",
            "/api/v1/export/timeseries.csv",
            "/api/v1/export/top.csv",
        ]
    )
    params = {}
    for name in rnd.sample(
        [
            "range",
            "start",
            "end",
            "metric",
            "compare",
            "dimension",
            "limit",
            "country",
            "device",
            "page",
            "tenant",
            "tenant_id",
            "database",
            "format",
        ],
        rnd.randrange(0, 5),
    ):
        valid = {
            "range": ["1h", "24h", "7d", "30d", "90d", "5m", "0d", "91d"],
            "metric": ["events", "users"],
            "dimension": ["page", "country", "device", "tenant_id"],
            "limit": ["1", "5", "100", "0", "1000", "-1"],
            "compare": ["true", "false"],
            "start": ["2026-11-20T00:00:00Z", "2026-11-20", "0"],
            "end": ["2026-11-21T00:00:00Z"],
        }.get(name, [])
        params[name] = rnd.choice(valid + pool) if valid and rnd.random() < 0.6 else rnd.choice(pool)
    key_choice = rnd.random()
    if key_choice < 0.7:
        key = tenants["keys"][a]
    elif key_choice < 0.8:
        key = tenants["keys"][b]
    elif key_choice < 0.9:  # a's key id with b's secret, garbage, another tenant's name
        key = rnd.choice(
            [
                tenants["keys"][a][:21] + tenants["keys"][b][21:],
                "tmk_" + secrets.token_hex(8) + "_" + "A" * 43,
                b,
                "' OR 1=1 --",
                "",
            ]
        )
    else:
        key = None
    return endpoint, params, key


def test_isolation_fuzz(api, tenants):
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    owner = {tenants["keys"][t]: t for t in tenants["keys"]}
    statuses = {}
    for i in range(400):
        endpoint, params, key = _random_request(rnd, tenants)
        response = api.get(endpoint, key, **params)
        where = f"seed {seed} request {i}: {endpoint} {params!r} key={key!r:.30}"
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (200, 400, 401), f"{where}: {response.status_code} {response.text[:300]}"
        if response.status_code != 200:
            body = response.json()
            assert set(body) == {"error", "detail"} and body["detail"], where
            continue
        tenant = owner[key]
        text = response.text
        if not endpoint.endswith(".csv"):  # the request's own filters are echoed back: not a foreign row
            text = json.dumps({k: v for k, v in response.json().items() if k != "filters"}, ensure_ascii=False)
        for marker in _foreign_markers(tenants, tenant):
            assert marker not in text, f"{where}: {tenant}'s answer contains {marker!r}"
        truth = tenants["truth"][tenant]
        if endpoint.endswith(".csv"):
            continue
        body = response.json()
        assert body["tenant"] == tenant, where
        for row in body.get("rows", []):
            assert row["value"] in truth["pages"] | truth["countries"] | {"desktop", "mobile"}, (
                f"{where}: foreign row {row}"
            )
        if "events" in body and endpoint.endswith("totals") and not body["filters"]:
            assert body["events"] <= truth["events_3d"], f"{where}: more events than {tenant} has"
    assert statuses.get(200, 0) > 50 and statuses.get(400, 0) > 20 and statuses.get(401, 0) > 10, statuses


def test_totals_are_exactly_the_tenants_own(api, tenants):
    for t in (tenants["a"], tenants["b"]):
        body = api.get("/api/v1/totals", tenants["keys"][t], range="7d").json()
        assert body["events"] == tenants["truth"][t]["events_3d"]
        top = api.get("/api/v1/top", tenants["keys"][t], range="7d", dimension="page", limit=100).json()
        assert {r["value"] for r in top["rows"]} == tenants["truth"][t]["pages"]


def test_no_tenant_parameter_is_accepted(api, tenants):
    a, b = tenants["a"], tenants["b"]
    for name in ("tenant", "tenant_id", "TENANT", "tenant[]"):
        r = api.get("/api/v1/totals", tenants["keys"][a], range="24h", **{name: b})
        assert r.status_code == 400 and "unknown parameter" in r.json()["detail"]


def test_reader_queries_never_reach_the_query_log(api, tenants, writer, serving_cfg):
    """The API's queries (tenant ids and filters inline) must not be readable by a readonly user;
    a writer query with a marker is, which proves the check can see a leak."""
    since = int(datetime.now(timezone.utc).timestamp()) - 1
    marker = f"/qlog-marker-{secrets.token_hex(4)}"
    key = tenants["keys"][tenants["a"]]
    assert api.get("/api/v1/timeseries", key, range="24h", page=marker).status_code == 200
    assert api.get("/api/v1/export/top.csv", key, range="7d", country=marker).status_code == 200
    control = f"writer-control-{secrets.token_hex(4)}"
    writer.execute(
        f"SELECT count() FROM {serving_cfg.clickhouse.database}.minute_rollups WHERE page = %(p)s", {"p": control}
    )
    writer.execute("SYSTEM FLUSH LOGS")
    ch, sv = serving_cfg.clickhouse, serving_cfg.serving
    for user, password in ((ch.reader_user, ch.reader_password), (sv.dashboard_user, sv.dashboard_password)):
        reader = Client(host=ch.host, port=ch.port, user=user, password=password, database=ch.database)
        for table in ("query_log", "query_thread_log"):
            try:
                rows = reader.execute(
                    f"SELECT count(), countIf(query LIKE %(c)s) FROM system.{table} "
                    f"WHERE query LIKE %(m)s OR query LIKE %(t)s OR query LIKE %(c)s",
                    {"m": f"%{marker}%", "t": f"%{tenants['a']}%", "c": f"%{control}%"},
                )
            except ServerException as exc:
                assert exc.code == 60, exc  # the table does not exist: nothing was ever logged there
                continue
            total, control_rows = rows[0]
            if table == "query_log":
                assert control_rows >= 1, "the writer's control query is not in the log: the check sees nothing"
            assert total - control_rows == 0, f"{user} can read API queries of tenant {tenants['a']} in system.{table}"
        (logged_by_reader,) = writer.execute(
            "SELECT count() FROM system.query_log WHERE user IN (%(r)s, %(d)s) AND event_time >= toDateTime(%(s)s)",
            {"r": ch.reader_user, "d": sv.dashboard_user, "s": since},
        )[0]
        assert logged_by_reader == 0
    print(json.dumps({"query_log_rows_of_api_queries": 0}))


def test_running_queries_show_no_tenant_to_the_other_serving_user(api, heavy, serving_cfg):
    """18.16 shows every user's running queries in system.processes (it always allows `system`).
    While a dashboard query runs, the export user reads that table: it must see the query (or the
    check proves nothing) but neither the tenant's id nor its filter values."""
    tenant, key = heavy
    ch, sv = serving_cfg.clickhouse, serving_cfg.serving
    # an explicit 90-day range of its own, so neither the cache nor a remembered timeout answers it
    end = int(time.time()) // 86400 * 86400 - random.randrange(1, 30) * 86400
    params = {**HEAVY, "start": str(end - 89 * 86400), "end": str(end)}
    params.pop("range")
    export_user = Client(host=ch.host, port=ch.port, user=ch.reader_user, password=ch.reader_password)
    seen: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(api.get, "/api/v1/timeseries", key, **params)

        def shown() -> bool:
            seen.extend(
                q
                for (q,) in export_user.execute(
                    "SELECT query FROM system.processes WHERE user = %(u)s", {"u": sv.dashboard_user}
                )
            )
            return any("minute_rollups" in q for q in seen) or running.done()

        wait_until(shown, 20, "the dashboard query to show in system.processes", interval_s=0.02)
        response = running.result()
    assert response.status_code in (200, 504), response.text
    assert any("minute_rollups" in q for q in seen), f"the export user saw no dashboard query: {seen}"
    for query in seen:
        for private in (tenant, HEAVY["device"]):
            assert private not in query, f"the export user sees {private!r} in a running query: {query[:300]}"
