"""Anomaly detection on real ClickHouse, on 18.16 and 26.9 at once (the ``dual:`` client: every
statement of the detector goes to both and their answers must agree).

Two tenants' traffic from the generator, for three scored hours and the same hours of the four
weeks before (only the hours the baseline reads: 15 hours), written as published batch rollups. The
generator injects a spike (acme, first hour) and a dead page (acme's "/", second hour); the third
hour is ordinary. The detector must find both, nothing else, and give the same rows when run again.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from support.dual import on_both
from support.serving import publish

from tidemark.anomalies import store
from tidemark.anomalies.detect import detect_hours, detect_minutes
from tidemark.anomalies.scoring import WEEK
from tidemark.generator.injections import Injection
from tidemark.generator.options import TrafficOptions
from tidemark.generator.rollups import RollupManifest
from tidemark.generator.traffic import TrafficGenerator
from tidemark.io.clickhouse import client, insert_rows
from tidemark.migrations import migrate
from tidemark.serving import queries
from tidemark.serving.ranges import TimeRange
from tidemark.tables import ROLLUP_INPUT_COLUMNS

T1 = datetime(2026, 11, 23, 14, tzinfo=timezone.utc)  # a Monday afternoon
HOUR = timedelta(hours=1)
PER_HOUR = 1800


def _hour_rows(hour: datetime, seed: int, injections: tuple[Injection, ...]) -> list[tuple]:
    manifest = RollupManifest()
    start_ms = int(hour.timestamp()) * 1000 + 10_000  # on-time jitter stays inside the hour
    options = TrafficOptions(
        start_ms=start_ms,
        count=PER_HOUR - 10,
        rate=PER_HOUR / 3600,
        seed=seed,
        catalog_seed=7,  # the same two sites every hour; the traffic itself differs
        tenants=2,
        late_fraction=0.0,
        duplicate_fraction=0.0,
        malformed_fraction=0.0,
        injections=injections,
    )
    for _ in TrafficGenerator(options, manifest).records():
        pass
    return manifest.rollup_rows("batch", 1)


@pytest.fixture(scope="module")
def detected(stack, dual_log):
    database = f"{stack.clickhouse.database}_anomalies"
    cfg = on_both(stack, database)
    client(cfg.clickhouse, database="default").execute(f"DROP DATABASE IF EXISTS {database}")
    migrate(cfg)
    ms = lambda t: int(t.timestamp() * 1000)  # noqa: E731
    injections = (
        Injection("spike", "acme", ms(T1), ms(T1 + HOUR), 4.0),
        Injection("dead_page", "acme", ms(T1 + HOUR), ms(T1 + 2 * HOUR), page="/"),
    )
    ch = client(cfg.clickhouse)
    rows = []
    for k in range(5):
        for j in range(3):
            hour = T1 + j * HOUR - timedelta(seconds=k * WEEK)
            rows += _hour_rows(hour, seed=100 * k + j, injections=injections if k == 0 else ())
            publish(ch, database, hour, 1)
    insert_rows(ch, f"{database}.rollup_input", ROLLUP_INPUT_COLUMNS, rows)
    first = detect_hours(cfg, T1, T1 + 3 * HOUR, run_id="first")
    s, e = int(T1.timestamp()), int((T1 + 3 * HOUR).timestamp())
    found = store.read_anomalies(ch, database, s, e)
    again = detect_hours(cfg, T1, T1 + 3 * HOUR, run_id="again")
    minutes = detect_minutes(cfg, T1, T1 + HOUR)
    window = TimeRange(s, e, "hour")
    api_rows = queries.execute(ch, database, queries.anomalies(database, "acme", window, "events"))
    return {
        "api_rows": api_rows,
        "first": first,
        "again": again,
        "found": found,
        "found_again": [r for r in store.read_anomalies(ch, database, s, e) if r[1] == "hour"],
        "minutes": minutes,
        "minute_rows": [r for r in store.read_anomalies(ch, database, s, e) if r[1] == "minute"],
        "log": dual_log,
    }


def test_the_spike_and_the_dead_page_are_found_and_nothing_else(detected):
    hours = {(r[0], r[2], r[3], r[4], r[5], r[6]) for r in detected["found"]}
    t1 = int(T1.timestamp())
    assert ("acme", t1, "events", "all", "", "spike") in hours
    assert ("acme", t1 + 3600, "events", "page", "/", "drop") in hours
    assert {(r[0], r[2]) for r in detected["found"]} <= {("acme", t1), ("acme", t1 + 3600)}
    dead_hour = {(r[4], r[5], r[6]) for r in detected["found"] if r[2] == t1 + 3600}
    assert dead_hour <= {("page", "/", "drop")}  # a dead page is not a drop of the whole tenant
    assert detected["first"].anomalies == len(detected["found"])


def test_the_api_query_reads_them_for_its_tenant(detected):
    hour_rows = [r for r in detected["found"] if r[0] == "acme" and r[3] == "events"]
    assert [(a["t"], a["dimension"], a["value"], a["kind"]) for a in detected["api_rows"] if a["grain"] == "hour"] == [
        (r[2], r[4], r[5], r[6]) for r in hour_rows
    ]


def test_a_second_run_gives_the_same_rows(detected):
    assert detected["again"].anomalies == detected["first"].anomalies
    assert detected["found_again"] == detected["found"]


def test_the_live_tail_finds_the_spike_minute_by_minute(detected):
    spiked = {r[2] for r in detected["minute_rows"] if r[0] == "acme" and r[4] == "all" and r[6] == "spike"}
    assert len(spiked) >= 50, f"{len(spiked)} of 60 spiked minutes found"
    assert all(r[0] == "acme" for r in detected["minute_rows"])


def _close(a, b, rel: float) -> bool:
    return abs(float(a) - float(b)) <= rel * max(abs(float(a)), abs(float(b)), 1.0)


def _agree_but_for_hll(exchange) -> bool:
    """Rows of the same keys with equal event counts and distinct-user estimates within 2 %: the
    two versions' uniqCombined estimates differ a little once a state leaves its exact mode (about
    a thousand users: 1325 vs 1285 and 1288 here), so do the scores computed from them."""
    key_len = {"read_hourly": 4, "read_anomalies": 7, "execute": 6}.get(exchange.caller[1])
    if key_len is None or not isinstance(exchange.embedded, list):
        return False
    a = {tuple(r[:key_len]): r[key_len:] for r in exchange.embedded}
    b = {tuple(r[:key_len]): r[key_len:] for r in exchange.current}
    if a.keys() != b.keys():
        return False
    if key_len == 4:  # (events, users)
        return all(a[k][0] == b[k][0] and _close(a[k][1], b[k][1], 0.02) for k in a)
    return all(all(_close(x, y, 0.05) for x, y in zip(a[k], b[k], strict=True)) for k in a)


def test_every_statement_agrees_on_both_versions(detected):
    log = detected["log"]
    mine = [
        e
        for e in log.exchanges
        if e.caller[0].startswith(("tidemark.anomalies", "tidemark.lambda_merge", "tidemark.serving.queries"))
    ]
    assert mine, "the detector's statements went through the dual client"
    assert not [e for e in mine if not e.equal and not _agree_but_for_hll(e)], log.report()
