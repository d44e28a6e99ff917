"""Dashboard query latency of the serving API over stage-2-shaped rollups built inside ClickHouse.

    .venv/bin/python bench/query_latency.py [--days 90] [--sketch-cap 200] [--users 200] [--users-high 1000]
        [--seconds 60] [--workers N]

Runs on its own ClickHouse + Redis (own TIDEMARK_HOME .tidemark/bench-serving, own ports and database
tidemark_bench_serving, forced: see ``benchkit.bench_env``), started and stopped here; the API runs as a
`tidemark serve` subprocess.

Data (INSERT ... SELECT from numbers(), nothing generated in Python):
* 20 tenants of Zipf-distributed sizes totalling 100 M events/day, over --days days, into the hour grain
  and the long-range (day) grain; hours older than 6 h published by the batch layer (registry rows), the
  last 6 h streaming rows, plus minute rows for those 6 h (realtime visitors);
* dimensions: 5 countries, 3 devices, 8 pages (+ 'all') per tenant-hour;
* SCALED DOWN: distinct-user sketches. A uniqCombined state at full size is ~98 KB; at this grain and
  scale they would be tens of GB, more than a 2-core box builds in minutes. Each (tenant, value)
  gets 4 template states of min(users, --sketch-cap) distinct ids, rotated over the hours: their size
  and merge cost are real for that cap, their distinct counts across hours are not (accuracy is
  tested in tests/integration/serving/test_unique_users.py).

Measures (p50/p99): the 7-day dashboard (its 6 API calls in parallel, as the page makes them), uncached
(empty cache) and cached; the 90-day dashboard uncached; the same 7-day question on a raw-event table
(1/--raw-div of the biggest tenant's events, extrapolated linearly) against the rollup query; and
--users simulated users for --seconds s (closed loop, 0.5-1.5 s think time): p99, errors, hit rate
(from each response's X-Cache: the API runs --workers processes, each with its own /metrics), the
most ClickHouse queries in flight (of one worker); then the same with --users-high users. The load
average (before, and after each step) and the API processes' CPU seconds per phase are printed: a
loaded machine's wall-clock figures are not results. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

import benchkit
import httpx

from tidemark.config import settings
from tidemark.io.clickhouse import client, insert_rows
from tidemark.stack.process import ProcInfo, descendants

ROOT = benchkit.ROOT
PORTS = {
    "CLICKHOUSE_PORT": 39200,
    "CLICKHOUSE_HTTP_PORT": 38323,
    "CLICKHOUSE_INTERSERVER_PORT": 39209,
    "TIDEMARK_REDIS_PORT": 36579,
    "TIDEMARK_SERVING_PORT": 38188,
}
SETTINGS = {
    "TIDEMARK_SERVING_RATE_PER_S": "1000000",
    "TIDEMARK_SERVING_BURST": "1000000",
    "TIDEMARK_SERVING_CLIENT_RATE_PER_S": "1000000",  # its 200 users all come from 127.0.0.1
    "TIDEMARK_SERVING_CLIENT_BURST": "1000000",
    "TIDEMARK_LOG_LEVEL": "WARNING",
}

TENANTS = 20
EVENTS_PER_DAY = 100_000_000
VALUES = {
    "all": [("", 1.0)],
    "country": list(zip(["US", "DE", "IN", "BR", "FR"], [0.4, 0.2, 0.15, 0.15, 0.1], strict=True)),
    "device": list(zip(["mobile", "desktop", "tablet"], [0.55, 0.4, 0.05], strict=True)),
    "page": list(
        zip(
            ["/", "/pricing", "/docs", "/blog", "/signup", "/login", "/about", "/careers"],
            [0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03],
            strict=True,
        )
    ),
}
LIVE_HOURS = 6


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else None


def build(ch, db, days: int, sketch_cap: int, raw_div: int) -> dict:
    weights = [1 / (k + 1) ** 1.1 for k in range(TENANTS)]
    per_day = [EVENTS_PER_DAY * w / sum(weights) for w in weights]
    specs = []
    for k in range(TENANTS):
        ev_hour = per_day[k] / 24
        for dim, values in VALUES.items():
            for value, share in values:
                n = max(1, min(sketch_cap, int(ev_hour / 8 * share)))
                specs.append((f"t{k:02d}", dim, value, share, ev_hour, n))
    ch.execute(f"DROP TABLE IF EXISTS {db}.bench_specs")
    ch.execute(
        f"CREATE TABLE {db}.bench_specs (tenant_id String, dimension String, value String, share Float64, "
        f"events_hour Float64, n UInt32) ENGINE = Memory"
    )
    insert_rows(ch, f"{db}.bench_specs", ("tenant_id", "dimension", "value", "share", "events_hour", "n"), specs)
    ch.execute(f"DROP TABLE IF EXISTS {db}.bench_templates")
    ch.execute(
        f"CREATE TABLE {db}.bench_templates ENGINE = Memory AS SELECT tenant_id, dimension, value, share, "
        f"events_hour, toUInt32(p.1) AS variant, uniqCombinedState(u) AS users, uniqCombinedState(15)(u) AS users15 "
        f"FROM (SELECT tenant_id, dimension, value, share, events_hour, "
        f"arrayJoin(arrayMap(x -> (x % 4, x), range(n * 4))) AS p, "
        f"concat(tenant_id, '-', toString(intDiv(p.2, 4) + 100000 * (p.1))) AS u FROM {db}.bench_specs) "
        f"GROUP BY tenant_id, dimension, value, share, events_hour, variant"
    )
    now_hour = int(time.time()) // 3600 * 3600
    first = now_hour - (days * 24 - 1) * 3600
    hours = days * 24
    live_from = now_hour - (LIVE_HOURS - 1) * 3600
    # Hours stream on the left, in small blocks; the templates (a few MB) are the joined right side.
    # (A CROSS JOIN with the states on the left copies every state once per hour before filtering.)
    # Small insert blocks too: a deserialized state takes far more memory than its bytes on disk.
    small = {"max_block_size": 16, "min_insert_block_size_rows": 16384, "min_insert_block_size_bytes": 64 << 20}
    hours_side = f"(SELECT number AS h, toUInt32(number % 4) AS variant FROM numbers({hours}))"
    layer = f"if({first} + h * 3600 >= {live_from}, 'stream', 'batch')"
    version = f"if({first} + h * 3600 >= {live_from}, toUInt64(1), toUInt64(1000000 + h))"
    events = (
        f"toUInt64(round(events_hour * share * (1 + 0.5 * sin((toHour(toDateTime({first} + h * 3600)) - 6) "
        f"* 3.14159 / 12))))"
    )
    started = time.monotonic()
    ch.execute(
        f"INSERT INTO {db}.hour_rollups SELECT tenant_id, dimension, toDateTime({first} + h * 3600), "
        f"{layer}, {version}, value, {events}, users FROM {hours_side} ALL INNER JOIN "
        f"{db}.bench_templates USING variant",
        settings=small,
    )
    ch.execute(
        f"INSERT INTO {db}.day_rollups SELECT tenant_id, dimension, toDate(toDateTime({first} + h * 3600)), "
        f"toDateTime({first} + h * 3600), {layer}, {version}, value, {events}, users15 FROM {hours_side} "
        f"ALL INNER JOIN {db}.bench_templates USING variant",
        settings=small,
    )
    ch.execute(
        f"INSERT INTO {db}.minute_rollups SELECT tenant_id, toDateTime({live_from} + h * 60), 'stream', "
        f"1, 'US', 'mobile', '/', toUInt64(round(events_hour / 60)), users "
        f"FROM (SELECT number AS h, toUInt32(number % 4) AS variant FROM numbers({LIVE_HOURS * 60})) "
        f"ALL INNER JOIN (SELECT * FROM {db}.bench_templates WHERE dimension = 'all') USING variant",
        settings=small,
    )
    from datetime import datetime, timezone

    from tidemark.batch.registry import REGISTRY_COLUMNS

    now = datetime.now(timezone.utc)
    insert_rows(
        ch,
        f"{db}.published_hours",
        REGISTRY_COLUMNS,
        [
            (
                datetime.fromtimestamp(first + h * 3600, timezone.utc),
                1_000_000 + h,
                "published",
                now,
                h,
                0,
                0,
                0,
                0,
                0,
                "bench",
                "",
                "",
            )
            for h in range(hours)
            if first + h * 3600 < live_from
        ],
    )
    # The live hours' streaming rows (version 1) count only for a current stream identity.
    from tidemark.stream.sink import register_loader

    register_loader(ch, db, "bench-loader", 0, 1)
    build_s = time.monotonic() - started
    # The raw-event comparison: the biggest tenant's last 7 days at 1/raw_div.
    raw_rows = int(per_day[0] * 7 / raw_div)
    ch.execute(f"DROP TABLE IF EXISTS {db}.bench_raw_events")
    ch.execute(
        f"CREATE TABLE {db}.bench_raw_events (tenant_id String, event_time DateTime('UTC'), user_id String, "
        f"country String, device String, page String) ENGINE = MergeTree PARTITION BY toYYYYMMDD(event_time) "
        f"ORDER BY (tenant_id, event_time)"
    )
    ch.execute(
        f"INSERT INTO {db}.bench_raw_events SELECT 't00', toDateTime({now_hour + 3600} - 7 * 86400 + "
        f"intDiv(number * 604800, {raw_rows})), concat('u', toString(cityHash64(number) % 2000000)), "
        f"['US','DE','IN','BR','FR'][number % 5 + 1], ['mobile','desktop','tablet'][number % 3 + 1], "
        f"concat('/p', toString(number % 8)) FROM numbers({raw_rows})"
    )
    ch.execute(f"OPTIMIZE TABLE {db}.bench_raw_events FINAL")
    (hour_bytes,) = ch.execute(
        "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = %(d)s "
        "AND table IN ('hour_rollups', 'day_rollups')",
        {"d": db},
    )[0]
    return {
        "tenants": TENANTS,
        "events_per_day": EVENTS_PER_DAY,
        "days": days,
        "dimension_values": 17,
        "sketch_cap_users_per_value_hour": sketch_cap,
        "rollup_build_s": round(build_s, 1),
        "rollup_bytes": int(hour_bytes),
        "raw_rows": raw_rows,
        "raw_scale": f"1/{raw_div} of t00's 7 days",
    }


DASHBOARD = [
    ("/api/v1/timeseries", {"metric": "events", "compare": "true"}),
    ("/api/v1/timeseries", {"metric": "users", "compare": "true"}),
    ("/api/v1/totals", {"compare": "true"}),
    ("/api/v1/top", {"dimension": "page", "limit": "10"}),
    ("/api/v1/top", {"dimension": "country", "limit": "8"}),
    ("/api/v1/top", {"dimension": "device", "limit": "5"}),
]


async def dashboard(http, key, range_: str) -> tuple[float, list[int]]:
    started = time.perf_counter()
    responses = await asyncio.gather(
        *(http.get(p, params={**q, "range": range_}, headers={"X-API-Key": key}) for p, q in DASHBOARD)
    )
    return (time.perf_counter() - started) * 1000, [r.status_code for r in responses]


async def single_views(url, keys, redis, range_: str, samples: int) -> dict:
    uncached, cached, single = [], [], []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for i in range(samples):
            key = keys[i % len(keys)]
            for k in redis.scan_iter("tm:q:*"):
                redis.delete(k)
            ms, codes = await dashboard(http, key, range_)
            assert set(codes) == {200}, codes
            uncached.append(ms)
            ms, codes = await dashboard(http, key, range_)
            cached.append(ms)
            for path, params in DASHBOARD:  # one cached request at a time: the API's own cost
                started = time.perf_counter()
                await http.get(path, params={**params, "range": range_}, headers={"X-API-Key": key})
                single.append((time.perf_counter() - started) * 1000)
    return {
        "uncached_p50_ms": round(pct(uncached, 50), 1),
        "uncached_p99_ms": round(pct(uncached, 99), 1),
        "cached_p50_ms": round(pct(cached, 50), 2),
        "cached_p99_ms": round(pct(cached, 99), 2),
        "cached_request_p50_ms": round(pct(single, 50), 2),
        "cached_request_p99_ms": round(pct(single, 99), 2),
    }


async def load(url, keys, users: int, seconds: float) -> dict:
    latencies, errors, total = [], 0, 0
    how: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    weights = [1 / (k + 1) ** 1.1 for k in range(len(keys))]
    ranges, range_weights = ["1h", "24h", "7d", "30d", "90d"], [15, 40, 30, 10, 5]

    async def user(rnd: random.Random, http):
        nonlocal errors, total
        await asyncio.sleep(rnd.random())
        while time.monotonic() < deadline:
            key = rnd.choices(keys, weights)[0]
            path, params = rnd.choice(DASHBOARD + [("/api/v1/realtime", {})])
            if path != "/api/v1/realtime":
                params = {**params, "range": rnd.choices(ranges, range_weights)[0]}
            started = time.perf_counter()
            try:
                r = await http.get(path, params=params, headers={"X-API-Key": key})
                ok = r.status_code == 200
                if ok:
                    cache = r.headers.get("x-cache", "none")
                    how[cache] = how.get(cache, 0) + 1
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            total += 1
            errors += 0 if ok else 1
            await asyncio.sleep(rnd.uniform(0.5, 1.5))

    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        await asyncio.gather(*(user(random.Random(i), http) for i in range(users)))
    answered = sum(how.values())
    return {
        "users": users,
        "seconds": seconds,
        "requests": total,
        "p50_ms": round(pct(latencies, 50), 1),
        "p99_ms": round(pct(latencies, 99), 1),
        "errors": errors,
        "error_rate": round(errors / max(1, total), 5),
        "x_cache": how,
        # served without recomputing: hit, stale (refreshed behind), wait (another request's recompute)
        "cache_hit_rate": round(1 - how.get("miss", 0) / max(1, answered), 4),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def api_meter(pid: int) -> benchkit.CpuMeter:
    """CPU seconds of the API process and its workers."""

    def classify(table: dict[int, ProcInfo]) -> dict[int, str]:
        return dict.fromkeys(descendants(pid, table), "api")

    return benchkit.CpuMeter(classify, ["api"], every=1.0)


def metrics(url) -> dict:
    out = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def raw_vs_rollups(ch, db, raw_div: int, runs: int = 5) -> dict:
    end = (int(time.time()) // 3600 + 1) * 3600
    start = end - 7 * 86400
    raw_sql = (
        f"SELECT toStartOfHour(event_time) h, count(), uniqCombined(user_id) FROM {db}.bench_raw_events "
        f"WHERE tenant_id = 't00' AND event_time >= toDateTime({start}) AND event_time < toDateTime({end}) GROUP BY h"
    )
    from tidemark.serving import queries
    from tidemark.serving.ranges import TimeRange

    plan = queries.time_series(db, "t00", TimeRange(start, end, "hour"), "users", queries.Filters(), False)
    raw, rolled = [], []
    for _ in range(runs):
        t = time.perf_counter()
        ch.execute(raw_sql)
        raw.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        queries.execute(ch, db, plan)
        rolled.append((time.perf_counter() - t) * 1000)
    raw_p50, rolled_p50 = statistics.median(raw), statistics.median(rolled)
    return {
        "raw_scaled_p50_ms": round(raw_p50, 1),
        "raw_full_scale_estimate_ms": round(raw_p50 * raw_div, 1),
        "rollup_p50_ms": round(rolled_p50, 1),
        "speedup_measured": round(raw_p50 / rolled_p50, 1),
        "speedup_full_scale": round(raw_p50 * raw_div / rolled_p50, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--sketch-cap", type=int, default=200)
    parser.add_argument("--raw-div", type=int, default=50)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--users-high", type=int, default=1000, help="the second load step (0: skip)")
    parser.add_argument("--workers", type=int, default=0, help="API processes (0: the server's default)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--keep", action="store_true", help="leave the bench stack running")
    args = parser.parse_args()
    benchkit.use_env(benchkit.bench_env("bench-serving", "tidemark_bench_serving", PORTS, **SETTINGS))
    # 1,000 concurrent connections need more than the common 1,024 descriptors (the API inherits this).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    if args.workers:
        os.environ["TIDEMARK_SERVING_WORKERS"] = str(args.workers)
    loadavg_before = benchkit.load_average("before")

    import redis as redis_lib

    from tidemark.migrations import migrate
    from tidemark.serving.keys import create
    from tidemark.stack.services import ClickHouse, Redis

    cfg = settings()
    db = cfg.clickhouse.database
    services = [ClickHouse(cfg), Redis(cfg)]
    for svc in services:
        svc.up()
    api = None
    meter = None
    try:
        admin = client(cfg.clickhouse, database="default", send_receive_timeout=600)
        admin.execute(f"DROP DATABASE IF EXISTS {db}")
        migrate(cfg)
        ch = client(cfg.clickhouse, send_receive_timeout=600)
        scale = build(ch, db, args.days, args.sketch_cap, args.raw_div)
        print(f"built: {json.dumps(scale)}", file=sys.stderr)
        keys = [create(cfg, f"t{k:02d}", "bench")[1] for k in range(TENANTS)]
        url = f"http://{cfg.serving.host}:{cfg.serving.port}"
        api = subprocess.Popen(
            [sys.executable, "-m", "tidemark.cli", "serve"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=open(cfg.home / "bench-api.log", "ab"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start; see {cfg.home / 'bench-api.log'}")
            time.sleep(0.3)
        red = redis_lib.Redis.from_url(cfg.redis.url)
        big = keys[:5]  # the biggest tenants: the worst dashboards
        asyncio.run(dashboard(httpx.AsyncClient(base_url=url, timeout=60), keys[0], "24h"))  # warm connections
        meter = api_meter(api.pid)
        cpu = {"start": meter.start()}
        seven = asyncio.run(single_views(url, big, red, "7d", args.samples))
        cpu["dashboard_7d"] = meter.look()
        ninety = asyncio.run(single_views(url, big, red, "90d", max(10, args.samples // 2)))
        cpu["dashboard_90d"] = meter.look()
        raw = raw_vs_rollups(ch, db, args.raw_div)
        cpu["raw_vs_rollups"] = meter.look()
        steps = {}
        for users in [args.users] + ([args.users_high] if args.users_high else []):
            step = asyncio.run(load(url, keys, users, args.seconds))
            after = metrics(url)
            step["max_clickhouse_inflight_one_worker"] = int(after.get("tidemark_clickhouse_inflight_max", 0))
            steps[users] = step
            cpu[f"load_{users}_users"] = meter.look()
            print(f"load step: {json.dumps(step)}", file=sys.stderr)
        # CPU seconds the API processes spent in each phase (cumulative figures -> per phase)
        names = list(cpu)
        api_cpu = {n: meter.between(cpu[names[i - 1]], cpu[n])["api"] for i, n in enumerate(names) if i}
        concurrent = steps[args.users]
        high = steps.get(args.users_high)
        result = {
            "bench": "query_latency",
            "scale": scale,
            "cores": os.cpu_count(),
            "api_workers": int(os.environ.get("TIDEMARK_SERVING_WORKERS") or cfg.serving.workers),
            "loadavg_before": loadavg_before,
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "api_cpu_s": api_cpu,
            "dashboard_7d": seven,
            "dashboard_90d": ninety,
            "raw_vs_rollups_7d": raw,
            "concurrent": concurrent,
            "concurrent_high": high,
            "goals": {
                "7d_uncached_p99_le_100ms": seven["uncached_p99_ms"] <= 100,
                "7d_cached_request_p99_le_5ms": seven["cached_request_p99_ms"] <= 5,
                "90d_uncached_p99_le_250ms": ninety["uncached_p99_ms"] <= 250,
                "raw_ratio_ge_50x": raw["speedup_full_scale"] >= 50,
                "concurrent_p99_le_250ms_0_errors": concurrent["p99_ms"] <= 250 and concurrent["errors"] == 0,
                "concurrent_hit_rate_ge_90pct": concurrent["cache_hit_rate"] >= 0.9,
                "high_p99_le_1s_0_errors": high is not None and high["p99_ms"] <= 1000 and high["errors"] == 0,
            },
        }
        print(json.dumps(result))
        return 0
    finally:
        if meter is not None:
            meter.stop()
        benchkit.stop(api, 15, "API")
        if not args.keep:
            for svc in reversed(services):
                svc.down()


if __name__ == "__main__":
    sys.exit(main())
