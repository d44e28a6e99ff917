"""Tiering: storage and file counts before and after one daily run, and its wall time.

Builds a multi-day synthetic dataset (default 40 days x 24 hours x 250 events, i.e. more than
TIDEMARK_LAKE_HOT_DAYS=35 and TIDEMARK_HOT_DAYS=7) the way the pipeline leaves it:
* events_raw written by delta-rs in 4 appends, so every hour partition holds 4 small files (what
  the stream leaves per micro-batch cadence);
* rollups in ClickHouse through rollup_input (so the materialized views fill minute, hour and day
  tables): streaming rows for every hour, and for every other hour a superseded and a current
  batch version with registry rows (published two and three hours after the hour).
Then times one tiering run (``tidemark.tiering.run.run`` with the Spark steps in-process; the
session start is reported apart) and prints the tiers before and after.

Own ClickHouse (own TIDEMARK_HOME .tidemark/bench-tiering, ports and database, forced: it drops
and rebuilds them; see ``benchkit.bench_env``) and a lake under that home. Final JSON line:
  {"bench":"tiering","events":..,"run_s":..,"tiers":{tier:{"before":{..},"after":{..}}},"steps":{..}}

    python bench/tiering.py [--days 40] [--events-per-hour 250] [--appends 4] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import benchkit
from benchkit import say

from tidemark.config import settings
from tidemark.io.clickhouse import client, insert_rows

PORTS = {
    "CLICKHOUSE_PORT": 39400,
    "CLICKHOUSE_HTTP_PORT": 38423,
    "CLICKHOUSE_INTERSERVER_PORT": 39409,
    "TIDEMARK_REDIS_PORT": 36779,
}

TENANTS = ("acme", "globex", "initech", "umbrella")
COUNTRIES = ("US", "DE", "FR", "GB", "BR", "IN", "JP")
DEVICES = ("desktop", "mobile", "tablet")
EPOCH = 777


def environment() -> dict[str, str]:
    """The bench's own environment; the lake (hot and cold) under its home, dropped and rebuilt too."""
    env = benchkit.bench_env("bench-tiering", "tidemark_bench_tiering", PORTS, TIDEMARK_LOG_LEVEL="INFO")
    lake = str(Path(env["TIDEMARK_HOME"]) / "lake")
    # No API reads the bench's database: the hot step drops without waiting for one to read the horizon.
    return {**env, "TIDEMARK_LAKE_ROOT": lake, "TIDEMARK_COLD_ROOT": lake, "TIDEMARK_HOT_HORIZON_GRACE_S": "0"}


def build_lake(cfg, end: datetime, days: int, per_hour: int, appends: int):
    """Raw events for every hour of ``days`` days before ``end``; returns them as a pyarrow Table."""
    import numpy as np
    import pyarrow as pa
    from deltalake import write_deltalake

    from tidemark.tables import table

    schema = table("events_raw").arrow()
    rng = np.random.default_rng(7)
    hours = days * 24
    n = hours * per_hour
    start_us = int((end - timedelta(days=days)).timestamp() * 1e6)
    hour_idx = np.repeat(np.arange(hours), per_hour)
    t_us = start_us + hour_idx * 3_600_000_000 + rng.integers(0, 3_600_000_000, n)
    ts = pa.array(t_us, type=pa.timestamp("us", tz="UTC"))
    dates = pa.array((t_us // 86_400_000_000).astype("int32"), type=pa.date32())
    cols = {
        "event_id": pa.array([f"{i:032x}" for i in range(n)]),
        "tenant_id": pa.array(np.array(TENANTS)[rng.integers(0, len(TENANTS), n)]),
        "event_time": ts,
        "user_id": pa.array([f"u{u}" for u in rng.integers(0, 5000, n)]),
        "session_id": pa.array(["s"] * n),
        "country": pa.array(np.array(COUNTRIES)[rng.integers(0, 7, n)]),
        "device": pa.array(np.array(DEVICES)[rng.integers(0, 3, n)]),
        "page": pa.array([f"/p{p}" for p in rng.integers(0, 30, n)]),
        "referrer": pa.nulls(n, pa.string()),
        "schema_version": pa.array(np.ones(n, dtype="int32")),
        "is_late": pa.array(np.zeros(n, dtype=bool)),
        "kafka_topic": pa.array(["page_views"] * n),
        "kafka_partition": pa.array(np.zeros(n, dtype="int32")),
        "kafka_offset": pa.array(np.arange(n, dtype="int64")),
        "kafka_timestamp": ts,
        "ingest_time": ts,
        "batch_version": pa.array(np.zeros(n, dtype="int64")),
        "event_date": dates,
        "event_hour": pa.array(((t_us // 3_600_000_000) % 24).astype("int32")),
    }
    events = pa.table(cols).cast(schema)
    for k in range(appends):  # each append adds one file per hour partition
        write_deltalake(
            cfg.lake.events_raw,
            events.take(np.arange(k, n, appends)),
            mode="append",
            partition_by=["event_date", "event_hour"],
        )
    return events


def build_rollups(cfg, events) -> None:
    from tidemark.batch.registry import REGISTRY_COLUMNS
    from tidemark.stream.sink import register_loader
    from tidemark.tables import ROLLUP_INPUT_COLUMNS

    ch = client(cfg.clickhouse, send_receive_timeout=600)
    db = cfg.clickhouse.database
    register_loader(ch, db, "bench-tiering", EPOCH, 0)
    cols = events.select(["tenant_id", "event_time", "country", "device", "page", "user_id"]).to_pydict()
    groups: dict[tuple, list] = defaultdict(list)
    for t, when, c, d, p, u in zip(*cols.values(), strict=True):
        groups[(t, when.replace(second=0, microsecond=0), c, d, p)].append(u)
    by_hour: dict[datetime, list] = defaultdict(list)
    for key, users in groups.items():
        by_hour[key[1].replace(minute=0)].append((key, users))
    rows, registry = [], []
    for n, (hour, items) in enumerate(sorted(by_hour.items())):
        rows += [("stream", EPOCH * 1_000_000_000, *k, len(u), u) for k, u in items]
        if n % 2 == 0:
            for version, lag in ((10_000 + n, 2), (20_000 + n, 3)):
                rows += [("batch", version, *k, len(u), u) for k, u in items]
                at = hour + timedelta(hours=lag)
                registry.append(
                    (hour, version, "published", at, int(at.timestamp() * 1e6), lag, 0, 0, 0, 0, "bench", "", "")
                )
        if len(rows) > 200_000:
            insert_rows(ch, f"{db}.rollup_input", ROLLUP_INPUT_COLUMNS, rows)
            rows = []
    insert_rows(ch, f"{db}.rollup_input", ROLLUP_INPUT_COLUMNS, rows)
    insert_rows(ch, f"{db}.published_hours", REGISTRY_COLUMNS, registry)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--events-per-hour", type=int, default=250)
    parser.add_argument("--appends", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="leave the bench ClickHouse running")
    args = parser.parse_args()
    benchkit.use_env(environment())
    benchkit.load_average()

    from tidemark import logs
    from tidemark.migrations import migrate
    from tidemark.spark import session
    from tidemark.stack.services import ClickHouse
    from tidemark.tiering.options import RunOptions, default_interval_end
    from tidemark.tiering.run import run, spark_steps

    cfg = settings()
    logs.configure(cfg)
    end = default_interval_end()
    clickhouse = ClickHouse(cfg)
    clickhouse.up()
    try:
        client(cfg.clickhouse, database="default").execute(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
        migrate(cfg)
        shutil.rmtree(cfg.lake.root, ignore_errors=True)
        started = time.monotonic()
        events = build_lake(cfg, end, args.days, args.events_per_hour, args.appends)
        build_rollups(cfg, events)
        say(f"built {events.num_rows} events over {args.days} days in {time.monotonic() - started:.1f}s")
        started = time.monotonic()
        spark = session("tidemark-bench-tiering", cfg)
        spark_start_s = time.monotonic() - started
        try:
            started = time.monotonic()
            rep = run(cfg, RunOptions(end, run_id="bench-tiering"), spark_runner=lambda o: spark_steps(spark, cfg, o))
            run_s = time.monotonic() - started
        finally:
            spark.stop()
        say("\n".join(rep.lines()))
        tiers = rep.tier_totals()
        total = {
            phase: {k: sum(t[phase][k] for t in tiers.values()) for k in ("bytes", "files", "small_files")}
            for phase in ("before", "after")
        }
        print(
            json.dumps(
                {
                    "bench": "tiering",
                    "events": events.num_rows,
                    "days": args.days,
                    "interval_end": end.isoformat(),
                    "spark_start_s": round(spark_start_s, 1),
                    "run_s": round(run_s, 1),
                    "total": total,
                    "tiers": tiers,
                    "steps": rep.steps,
                    "alerts": rep.alerts,
                },
                default=str,
            )
        )
        return 0
    finally:
        if not args.keep:
            clickhouse.down()


if __name__ == "__main__":
    sys.exit(main())
