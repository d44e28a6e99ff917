"""GET /api/v1/anomalies: each key sees its own tenant's anomalies only, filtered by metric and range;
a tenant parameter is refused like on every route."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from support.serving import tenant_name

from tidemark.anomalies import store
from tidemark.anomalies.scoring import OUTPUT
from tidemark.io.clickhouse import client


@pytest.fixture(scope="module")
def anomalous(api, serving_cfg):
    a, b = tenant_name("anom-a"), tenant_name("anom-b")
    hour = int(time.time()) // 3600 * 3600 - 5 * 3600
    found = pd.DataFrame(
        [
            (a, hour, "events", "all", "", "spike", 900.0, 300.0, 12.5, 4),
            (a, hour + 3600, "users", "page", "/a-secret", "drop", 0.0, 80.0, -7.1, 4),
            (b, hour, "events", "page", "/b-secret", "drop", 0.0, 50.0, -6.0, 3),
        ],
        columns=OUTPUT,
    )
    db = serving_cfg.clickhouse.database
    store.replace(client(serving_cfg.clickhouse), db, "hour", hour, hour + 2 * 3600, [a, b], found, "t")
    return {"a": a, "b": b, "hour": hour, "keys": {a: api.key(a), b: api.key(b)}}


def test_each_tenant_sees_its_own_anomalies_only(api, anomalous):
    a, b, hour = anomalous["a"], anomalous["b"], anomalous["hour"]
    body_a = api.get("/api/v1/anomalies", anomalous["keys"][a], range="24h").json()
    assert body_a["tenant"] == a
    assert [(x["t"], x["metric"], x["value"], x["kind"]) for x in body_a["anomalies"]] == [
        (hour, "events", "", "spike"),
        (hour + 3600, "users", "/a-secret", "drop"),
    ]
    body_b = api.get("/api/v1/anomalies", anomalous["keys"][b], range="24h").json()
    assert [(x["value"], x["observed"], x["expected"]) for x in body_b["anomalies"]] == [("/b-secret", 0.0, 50.0)]
    assert a not in str(body_b) and "/a-secret" not in str(body_b)


def test_metric_and_range_filter(api, anomalous):
    key = anomalous["keys"][anomalous["a"]]
    users = api.get("/api/v1/anomalies", key, range="24h", metric="users").json()["anomalies"]
    assert [x["metric"] for x in users] == ["users"]
    assert api.get("/api/v1/anomalies", key, range="1h").json()["anomalies"] == []


def test_tenant_parameter_and_bad_metric_are_refused(api, anomalous):
    key = anomalous["keys"][anomalous["a"]]
    assert api.get("/api/v1/anomalies", key, range="24h", tenant=anomalous["b"]).status_code == 400
    assert api.get("/api/v1/anomalies", key, metric="revenue").status_code == 400
    assert api.get("/api/v1/anomalies", None, range="24h").status_code == 401
