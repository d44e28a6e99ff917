"""Batch layer: time the hourly recompute of one busy hour, and ClickHouse doing the same work.

A standalone script (`python bench/recompute_hour.py`) whose data builder and stream-shaped landing
exist only for this measurement; the CPU accounting is ``bench/benchkit.py``'s, shared with the other benches.

1. Builds one event hour of N rows (default 4.2M) vectorised with numpy/pyarrow, with realistic
   shape: 5 tenants (skewed), ~200k users (heavy-tailed activity, country and device per user,
   contract countries weighted), 4 devices, ~300 pages per tenant (Zipf), referrers, 2 % late
   arrivals, ~1 % duplicate event_ids (re-sends 1-60 s later, half to another partition), Kafka
   partition/offset/timestamp, ingest time and batch version as the stream would land them.
2. Lands it in a Delta table (the events_raw schema from tidemark.tables, partitioned by
   event_date/event_hour) **the way the stream does** (``--layout stream``, the default): one
   micro-batch per ``--batch-seconds`` of arrival (ingest time; default the stream's trigger),
   each writing one parquet file per write task (``--write-tasks``, default the stream's
   TIDEMARK_LAKE_WRITE_TASKS: 1, the Kafka partitions coalesced) and event hour, as the stream's
   append does. Late events land in the micro-batches of their arrival, so the hour's 2 % late tail
   alone is thousands of tiny files: a 4.2M-event hour is ~5k files (~20k with one file per Kafka
   partition, ``--write-tasks 4``, the stream's layout before the coalesce). The files are
   written with pyarrow and committed with delta-rs, ``--batches-per-commit`` micro-batches per
   commit (default 30, one per minute of stream) only so that building the table takes a minute,
   not a quarter of an hour: a reader of the snapshot sees the same files either way, and its log
   replay starts from a checkpoint (every 100 commits here, every 10 for delta-spark) either way.
   ``--layout compacted`` writes the hour as large files instead (what an OPTIMIZE would leave).
3. Times ``tidemark.batch.recompute.recompute(spark, cfg, hour, publish_now=True)`` end to end
   (Spark session start excluded and reported apart; ``recompute_to_publish_s`` stops at the switch,
   before the Data Docs the run writes after it), with its phases, and CPU seconds per phase
   and process kind (driver Python, Spark JVM, Spark's Python workers, ClickHouse), sampled from /proc.
4. Loads the same raw hour into a ClickHouse MergeTree table (HTTP, CSV chunks) and times
   ClickHouse's own dedup + aggregate into ``rollup_input`` (the same materialized views the
   recompute stages through), under a throw-away version that is deleted afterwards. Loading is
   reported apart (``clickhouse_load_s``): the comparison (``ratio``) is the recompute's end to
   end time against ClickHouse's dedup + aggregate alone (``clickhouse_aggregate_s``), i.e. a
   ClickHouse that already holds the raw rows, as the lake holds them for Spark.

Needs ClickHouse: it uses the configured one if it answers, else starts the embedded one (as
``tidemark stack up`` would, ClickHouse only, migrated) and stops it at the end. Final line:
  {"bench":"recompute_hour","events":..,"delta_files":..,"recompute_s":..,"recompute_to_publish_s":..,"phases":{...},
   "phase_cpu_s":{...},"clickhouse_load_s":..,"clickhouse_aggregate_s":..,"ratio":..}

    python bench/recompute_hour.py [--events 4200000] [--hour 2026-01-05T10] [--layout stream]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import benchkit
from benchkit import say

# Contract constants shared with the traffic generator (one source for countries, devices, pages).
from tidemark.generator.catalog import (
    COUNTRY_WEIGHTS,
    DEVICE_CUM,
    FIXED_PAGES,
    PAGE_SECTIONS,
    PAGE_SLUGS,
    REFERRERS,
    TENANT_NAMES,
)
from tidemark.stack.process import ProcInfo, cmdline, descendants

HOUR_US = 3_600_000_000
TENANT_SHARES = (0.38, 0.24, 0.17, 0.12, 0.09)


def cpu_meter(ch_pid: int | None) -> benchkit.CpuMeter:
    """CPU seconds by kind: this Python (driver side: collecting and inserting rollups, GE), the Spark
    JVM, its Python workers, and the ClickHouse server (when its PID is known); sampled every 0.5 s, so
    phases reported only as wall-clock laps (RunSummary.seconds) can be given their CPU afterwards,
    without instrumenting the recompute."""
    me = os.getpid()

    def classify(table: dict[int, ProcInfo]) -> dict[int, str]:
        kinds = {
            pid: "spark_jvm" if cmdline(pid).split(" ", 1)[0].endswith("java") else "py_workers"
            for pid in descendants(me, table)
            if pid != me
        }
        kinds[me] = "driver_py"
        if ch_pid in table:
            kinds[ch_pid] = "clickhouse"
        return kinds

    kinds = sorted(["driver_py", "py_workers", "spark_jvm"] + (["clickhouse"] if ch_pid else []))
    return benchkit.CpuMeter(classify, kinds, every=0.5)


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds / 1e6:.2f}M rows/s" if seconds > 0 else "-"


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def _fixed_width_strings(chars, width: int):
    """(n, width) uint8 ASCII matrix -> pyarrow string array, without Python objects."""
    import numpy as np
    import pyarrow as pa

    n = chars.shape[0]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars).tobytes()))


_HEX = b"0123456789abcdef"


def uuid4_strings(rng, n: int):
    import numpy as np

    hexd = np.frombuffer(_HEX, dtype=np.uint8)
    nib = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    nib[:, 12] = 4  # version 4
    nib[:, 16] = 8 + (nib[:, 16] & 3)  # RFC 4122 variant
    out = np.empty((n, 36), dtype=np.uint8)
    out[:, [8, 13, 18, 23]] = ord("-")
    cols = [i for i in range(36) if i not in (8, 13, 18, 23)]
    out[:, cols] = hexd[nib]
    return _fixed_width_strings(out, 36)


def hex_strings(values, prefix: bytes):
    """uint64 array -> 'prefix' + 16 hex digits."""
    import numpy as np

    hexd = np.frombuffer(_HEX, dtype=np.uint8)
    v = values.astype(np.uint64)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nib = ((v[:, None] >> shifts[None, :]) & np.uint64(15)).astype(np.uint8)
    out = np.empty((len(v), len(prefix) + 16), dtype=np.uint8)
    out[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    out[:, len(prefix) :] = hexd[nib]
    return _fixed_width_strings(out, len(prefix) + 16)


def build_hour(
    n: int,
    hour: datetime,
    *,
    seed: int = 42,
    users: int = 200_000,
    pages_per_tenant: int = 300,
    dup_fraction: float = 0.01,
    late_fraction: float = 0.02,
    partitions: int = 4,
):
    """One event hour as a pyarrow Table with the events_raw schema."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from tidemark.quality import contract_value_sets
    from tidemark.tables import table

    rng = np.random.default_rng(seed)
    schema = table("events_raw").arrow()
    n_dup = int(round(n * dup_fraction))
    n_uni = n - n_dup
    tenants = np.array(TENANT_NAMES[: len(TENANT_SHARES)], dtype=object)

    # users: tenant, heavy-tailed activity, country and device per user
    user_tenant = rng.choice(len(TENANT_SHARES), size=users, p=np.array(TENANT_SHARES) / sum(TENANT_SHARES))
    activity = rng.lognormal(0.0, 1.3, size=users)
    user_ids = hex_strings(rng.integers(0, 2**63, size=users, dtype=np.int64).astype(np.uint64), b"u-")
    devices, countries = contract_value_sets()
    known = dict(COUNTRY_WEIGHTS)
    cw = np.array([known.get(c, 0.02) for c in countries])
    user_country = rng.choice(len(countries), size=users, p=cw / cw.sum())
    dev_p = np.diff([0.0] + [c for c, _ in DEVICE_CUM])
    dev_names = [d for _, d in DEVICE_CUM]
    user_device = rng.choice(len(dev_names), size=users, p=dev_p / dev_p.sum())
    user_partition = rng.integers(0, partitions, size=users)

    # pages: ~300 per tenant, Zipf popularity, "/" first
    prng = np.random.default_rng(seed + 1)
    page_names: list[str] = []
    sec_w = np.array([w for _, w in PAGE_SECTIONS], dtype=float)
    for _t in range(len(tenants)):
        pages = list(FIXED_PAGES)
        seen = set(pages)
        while len(pages) < pages_per_tenant:
            tpl = PAGE_SECTIONS[prng.choice(len(PAGE_SECTIONS), p=sec_w / sec_w.sum())][0]
            page = tpl.format(n=int(prng.integers(1, 10_000)), slug=PAGE_SLUGS[prng.integers(len(PAGE_SLUGS))])
            if page not in seen:
                seen.add(page)
                pages.append(page)
        page_names += pages
    zipf = 1.0 / np.arange(1, pages_per_tenant + 1) ** 1.05

    # unique events
    u = rng.choice(users, size=n_uni, p=activity / activity.sum())
    t_idx = user_tenant[u]
    page_idx = t_idx * pages_per_tenant + rng.choice(pages_per_tenant, size=n_uni, p=zipf / zipf.sum())
    hour_us = int(hour.timestamp()) * 1_000_000
    event_us = np.sort(hour_us + rng.integers(0, HOUR_US, size=n_uni, dtype=np.int64))
    late = rng.random(n_uni) < late_fraction
    delay = np.where(
        late, rng.integers(15 * 60_000_000, 2 * 3_600_000_000, size=n_uni), rng.integers(0, 5_000_000, size=n_uni)
    )
    kafka_us = event_us + delay
    part = user_partition[u]
    session_key = (u.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (
        ((event_us - hour_us) // (30 * 60_000_000)).astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
    )
    ref_idx = rng.integers(0, len(REFERRERS), size=n_uni)
    ref_null = rng.random(n_uni) < 0.4
    event_ids = uuid4_strings(rng, n_uni)

    # duplicates: re-sends of on-time events 1-60 s later, half of them to the next partition
    on_time = np.flatnonzero(~late)
    dup_src = np.sort(rng.choice(on_time, size=min(n_dup, len(on_time)), replace=False))
    take = np.concatenate([np.arange(n_uni), dup_src])
    dup_kafka = kafka_us[dup_src] + rng.integers(1_000_000, 60_000_000, size=len(dup_src))
    dup_part = np.where(rng.random(len(dup_src)) < 0.5, (part[dup_src] + 1) % partitions, part[dup_src])
    kafka_all = np.concatenate([kafka_us, dup_kafka])
    part_all = np.concatenate([part, dup_part])

    # Kafka offsets: per partition, in arrival order; ingest and batch version as the stream lands them
    order = np.argsort(kafka_all, kind="stable")
    offsets = np.empty(len(take), dtype=np.int64)
    sorted_part = part_all[order]
    for p in range(partitions):
        sel = order[sorted_part == p]
        offsets[sel] = 1_000_000 + np.arange(len(sel), dtype=np.int64)
    ingest_us = kafka_all + rng.integers(500_000, 3_000_000, size=len(take))
    batch_version = 1234567 * 1_000_000_000 + (ingest_us - hour_us) // 2_000_000

    idx = pa.array(take)
    ts = pa.timestamp("us", tz="UTC")
    referrer = pa.array(np.array(REFERRERS, dtype=object)).take(pa.array(ref_idx)).take(idx)
    referrer = pc.if_else(pa.array(ref_null).take(idx), pa.scalar(None, pa.string()), referrer)
    cols = {
        "event_id": event_ids.take(idx),
        "tenant_id": pa.array(tenants).take(pa.array(t_idx)).take(idx),
        "event_time": pa.array(event_us, ts).take(idx),
        "user_id": user_ids.take(pa.array(u)).take(idx),
        "session_id": hex_strings(session_key, b"s-").take(idx),
        "country": pa.array(list(countries)).take(pa.array(user_country[u])).take(idx),
        "device": pa.array(dev_names).take(pa.array(user_device[u])).take(idx),
        "page": pa.array(page_names).take(pa.array(page_idx)).take(idx),
        "referrer": referrer,
        "schema_version": pa.array(np.ones(len(take), dtype=np.int32)),
        "is_late": pa.array(late).take(idx),
        "kafka_topic": pa.array(["page_views"]).take(pa.array(np.zeros(len(take), dtype=np.int32))),
        "kafka_partition": pa.array(part_all.astype(np.int32)),
        "kafka_offset": pa.array(offsets),
        "kafka_timestamp": pa.array(kafka_all, ts),
        "ingest_time": pa.array(ingest_us, ts),
        "batch_version": pa.array(batch_version.astype(np.int64)),
        "event_date": pa.array([hour.date()] * 1, pa.date32()).take(pa.array(np.zeros(len(take), dtype=np.int32))),
        "event_hour": pa.array(np.full(len(take), hour.hour, dtype=np.int32)),
    }
    tbl = pa.Table.from_arrays([cols[f.name].cast(f.type) for f in schema], schema=schema)
    return tbl.take(pa.array(order))  # land in arrival order, as the stream would


# --------------------------------------------------------------------------------------------
# landing the hour in Delta
# --------------------------------------------------------------------------------------------


def land_as_stream(
    tbl, path: str, hour: datetime, *, batch_seconds: float, batches_per_commit: int, write_tasks: int, partitions: int
) -> dict:
    """One parquet file per (micro-batch, write task), micro-batches cut by ingest time, committed
    ``batches_per_commit`` micro-batches at a time. The stream coalesces its ``partitions`` Kafka
    partitions into ``write_tasks`` (TIDEMARK_LAKE_WRITE_TASKS) for the append, so a task writes the
    partitions of its group. Returns the layout (files, micro-batches, commits)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable
    from deltalake.transaction import AddAction

    from tidemark.tables import table

    schema = table("events_raw").arrow()
    partition_by = list(table("events_raw").partition_by)
    ingest = tbl["ingest_time"].cast(pa.int64()).to_numpy()
    batch = (ingest - ingest.min()) // int(batch_seconds * 1_000_000)
    task = tbl["kafka_partition"].to_numpy().astype(np.int64) * min(write_tasks, partitions) // partitions
    key = batch * 1024 + task
    order = np.argsort(key, kind="stable")
    data = tbl.take(pa.array(order)).drop_columns(partition_by)
    key, batch = key[order], batch[order]
    cuts = np.flatnonzero(np.diff(key)) + 1
    starts, ends = np.concatenate([[0], cuts]), np.concatenate([cuts, [len(key)]])

    DeltaTable.create(path, schema=schema, partition_by=partition_by, name="events_raw")
    dt = DeltaTable(path)
    values = {"event_date": f"{hour:%Y-%m-%d}", "event_hour": str(hour.hour)}
    part_dir = f"event_date={values['event_date']}/event_hour={values['event_hour']}"
    Path(path, part_dir).mkdir(parents=True, exist_ok=True)
    pending: list = []
    first_batch, commits = int(batch[0]), 0
    for start, end in zip(starts, ends, strict=True):
        if pending and batch[start] - first_batch >= batches_per_commit:
            dt.create_write_transaction(pending, mode="append", schema=schema, partition_by=partition_by)
            pending, first_batch, commits = [], int(batch[start]), commits + 1
        rel = f"{part_dir}/part-{uuid.uuid4()}.c000.snappy.parquet"
        pq.write_table(data.slice(start, end - start), f"{path}/{rel}", compression="snappy")
        # delta-rs checks nothing in a low-level commit: exact size, decoded path, string partition values.
        pending.append(
            AddAction(
                rel,
                os.path.getsize(f"{path}/{rel}"),
                values,
                int(time.time() * 1000),
                True,
                json.dumps({"numRecords": int(end - start)}),
            )
        )
    if pending:
        dt.create_write_transaction(pending, mode="append", schema=schema, partition_by=partition_by)
        commits += 1
    return {"delta_files": len(starts), "micro_batches": len(np.unique(batch)), "delta_commits": commits}


def land_compacted(tbl, path: str, target_file_mb: int) -> dict:
    from deltalake import write_deltalake

    write_deltalake(
        path,
        tbl,
        partition_by=["event_date", "event_hour"],
        mode="overwrite",
        name="events_raw",
        target_file_size=target_file_mb << 20,
    )
    return {"delta_files": len(list(Path(path).rglob("*.parquet"))), "delta_commits": 1}


# --------------------------------------------------------------------------------------------
# ClickHouse
# --------------------------------------------------------------------------------------------


def ensure_clickhouse(cfg):
    """The configured ClickHouse if it answers and is migrated; else the embedded one, started here
    (ClickHouse only: the recompute needs nothing else). Returns the service to stop, or None."""
    from tidemark.io.clickhouse import client
    from tidemark.migrations import migrate

    try:
        client(cfg.clickhouse, connect_timeout=2).execute(
            f"SELECT count() FROM {cfg.clickhouse.database}.published_hours WHERE 0"
        )
        return None
    except Exception as exc:
        if cfg.clickhouse.external:
            raise RuntimeError(
                f"ClickHouse at {cfg.clickhouse.address} (database {cfg.clickhouse.database}) does "
                f"not answer or is not migrated: {str(exc).splitlines()[0][:200]}"
            ) from exc
    from tidemark.stack.services import ClickHouse

    service = ClickHouse(cfg)
    started = service.proc.pid() is None
    say(f"starting the embedded ClickHouse at {cfg.clickhouse.address} (home {cfg.home})")
    service.up()
    migrate(cfg)
    return service if started else None


CH_COLUMNS = (
    "event_id String, tenant_id String, event_time DateTime('UTC'), user_id String, session_id String, "
    "country String, device String, page String, referrer String, is_late UInt8, "
    "kafka_partition Int32, kafka_offset Int64, kafka_timestamp Int64"
)


def ch_http(cfg, query: str, body: bytes | None = None, timeout: float = 600) -> str:
    c = cfg.clickhouse
    params = {"query": query, "database": c.database, "user": c.user}
    if c.password:
        params["password"] = c.password
    url = f"http://{c.host}:{c.http_port}/?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, data=body if body is not None else b"", method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read().decode()


def load_clickhouse(cfg, tbl, name: str, chunk_rows: int = 500_000) -> float:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    ch_http(cfg, f"DROP TABLE IF EXISTS {name}")
    ch_http(cfg, f"CREATE TABLE {name} ({CH_COLUMNS}) ENGINE = MergeTree ORDER BY (tenant_id, event_time)")
    sub = tbl.select(
        [
            "event_id",
            "tenant_id",
            "event_time",
            "user_id",
            "session_id",
            "country",
            "device",
            "page",
            "referrer",
            "is_late",
            "kafka_partition",
            "kafka_offset",
            "kafka_timestamp",
        ]
    )
    sub = sub.set_column(2, "event_time", pc.divide(sub["event_time"].cast(pa.int64()), 1_000_000))
    sub = sub.set_column(8, "referrer", pc.fill_null(sub["referrer"], ""))
    sub = sub.set_column(9, "is_late", sub["is_late"].cast(pa.uint8()))
    sub = sub.set_column(12, "kafka_timestamp", sub["kafka_timestamp"].cast(pa.int64()))
    t0 = time.perf_counter()
    done = 0
    for start in range(0, sub.num_rows, chunk_rows):
        part = sub.slice(start, chunk_rows)
        buf = io.BytesIO()
        pacsv.write_csv(part, buf, pacsv.WriteOptions(include_header=False))
        ch_http(cfg, f"INSERT INTO {name} FORMAT CSV", buf.getvalue())
        done += part.num_rows
        say(f"  clickhouse load: {done:,}/{sub.num_rows:,} rows ({rate(done, time.perf_counter() - t0)})")
    return time.perf_counter() - t0


def clickhouse_rollup(cfg, raw: str, version: int) -> tuple[float, int, int]:
    """Dedup (first arrival per (tenant_id, event_id)) + minute rollups into rollup_input, as the recompute does."""
    from tidemark.io.clickhouse import client

    ch = client(cfg.clickhouse, send_receive_timeout=900)
    db = cfg.clickhouse.database
    sql = (
        f"INSERT INTO {db}.rollup_input (layer, version, tenant_id, minute, country, device, page, events, user_ids) "
        f"SELECT 'batch', {int(version)}, tenant_id, toStartOfMinute(event_time) AS minute, country, device, page, "
        f"count() AS events, groupUniqArray(user_id) AS user_ids "
        f"FROM (SELECT tenant_id, event_time, country, device, page, user_id FROM {db}.{raw} "
        f"      ORDER BY tenant_id, event_id, kafka_timestamp, kafka_partition, kafka_offset "
        f"      LIMIT 1 BY tenant_id, event_id) "
        f"GROUP BY tenant_id, minute, country, device, page"
    )
    t0 = time.perf_counter()
    ch.execute(sql)
    seconds = time.perf_counter() - t0
    ((rows, events),) = ch.execute(
        f"SELECT count(), sum(events) FROM (SELECT minute, tenant_id, country, device, page, sum(events) AS events "
        f"FROM {db}.minute_rollups WHERE layer = 'batch' AND version = %(v)s "
        f"GROUP BY minute, tenant_id, country, device, page)",
        {"v": version},
    )
    return seconds, rows, events


def drop_version(cfg, version: int) -> None:
    from tidemark.io.clickhouse import client

    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    for t in ("minute_rollups", "hour_rollups"):
        ch.execute(f"ALTER TABLE {db}.{t} DELETE WHERE layer = 'batch' AND version = %(v)s", {"v": version})


# --------------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=4_200_000, help="rows in the hour, duplicates included")
    p.add_argument("--hour", default="2026-01-05T10", help="event hour (UTC), e.g. 2026-01-05T10")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--duplicate-fraction", type=float, default=0.01)
    p.add_argument(
        "--layout",
        choices=("stream", "compacted"),
        default="stream",
        help="stream: small files per micro-batch and Kafka partition (default); compacted: large files",
    )
    p.add_argument(
        "--batch-seconds",
        type=float,
        default=None,
        help="stream layout: arrival time per micro-batch (default: the stream's trigger interval)",
    )
    p.add_argument(
        "--write-tasks",
        type=int,
        default=None,
        help="stream layout: files per micro-batch (default: the stream's TIDEMARK_LAKE_WRITE_TASKS)",
    )
    p.add_argument("--batches-per-commit", type=int, default=30, help="stream layout: micro-batches per Delta commit")
    p.add_argument("--target-file-mb", type=int, default=64, help="compacted layout: Delta data file size target")
    p.add_argument("--runs", type=int, default=1, help="recompute runs (2nd+ are warm, with force=True)")
    p.add_argument("--skip-clickhouse", action="store_true", help="skip ClickHouse's own dedup + aggregate")
    p.add_argument("--keep", action="store_true", help="keep the temp lake and the ClickHouse raw table")
    args = p.parse_args()

    from tidemark.hours import parse_hour

    hour = parse_hour(args.hour)
    if hour.tzinfo is None:
        hour = hour.replace(tzinfo=timezone.utc)
    workdir = Path(tempfile.mkdtemp(prefix="tidemark-bench-recompute-"))
    # The recompute (and the quality gates, which read the process settings) must see the temp lake.
    os.environ["TIDEMARK_LAKE_ROOT"] = str(workdir / "lake")
    from tidemark.config import load, settings

    settings.cache_clear()
    cfg = load()
    try:
        ch_service = ensure_clickhouse(cfg)
    except Exception as exc:  # noqa: BLE001
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"error: {exc}. Start it, or unset CLICKHOUSE_HOST to use the embedded one.", file=sys.stderr)
        return 2

    result: dict = {"bench": "recompute_hour", "events": args.events, "hour": hour.isoformat(), "layout": args.layout}
    raw_table = f"bench_raw_{uuid.uuid4().hex[:8]}"
    ch_version = None
    spark = None
    try:
        # 1. data
        t0 = time.perf_counter()
        tbl = build_hour(
            args.events,
            hour,
            seed=args.seed,
            users=args.users,
            dup_fraction=args.duplicate_fraction,
            partitions=cfg.kafka.partitions,
        )
        gen_s = time.perf_counter() - t0
        say(
            f"generated {tbl.num_rows:,} rows in {gen_s:.1f}s ({rate(tbl.num_rows, gen_s)}), "
            f"{tbl.nbytes / 2**20:.0f} MiB in memory"
        )

        # 2. Delta
        t0 = time.perf_counter()
        if args.layout == "stream":
            batch_s = args.batch_seconds or cfg.spark.trigger_seconds
            layout = land_as_stream(
                tbl,
                cfg.lake.events_raw,
                hour,
                batch_seconds=batch_s,
                batches_per_commit=args.batches_per_commit,
                write_tasks=args.write_tasks or cfg.spark.lake_write_tasks,
                partitions=cfg.kafka.partitions,
            )
            layout["write_tasks"] = args.write_tasks or cfg.spark.lake_write_tasks
            layout["batch_seconds"] = batch_s
        else:
            layout = land_compacted(tbl, cfg.lake.events_raw, args.target_file_mb)
        write_s = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in Path(cfg.lake.events_raw).rglob("*.parquet")) / 2**20
        say(f"landed Delta {cfg.lake.events_raw} ({args.layout}): {layout}, {size_mb:.0f} MiB in {write_s:.1f}s")
        result.update(
            generate_s=round(gen_s, 2), delta_write_s=round(write_s, 2), **layout, delta_mib=round(size_mb, 1)
        )

        # 3. Spark recompute
        from tidemark.batch.recompute import recompute
        from tidemark.spark import session

        t0 = time.perf_counter()
        spark = session("tidemark-bench-recompute", cfg)
        result["spark_start_s"] = round(time.perf_counter() - t0, 2)
        say(f"spark session up in {result['spark_start_s']}s ({cfg.spark.master}); recomputing {hour.isoformat()}")
        ch_pid = None
        pid_file = cfg.run_dir / "clickhouse.pid"
        if not cfg.clickhouse.external and pid_file.exists():
            ch_pid = int(pid_file.read_text().split()[0])
        # The box may be shared: the load around the run says how far wall-clock times can be trusted.
        result["loadavg_1m_before"] = benchkit.load_average("before the recompute")[0]
        runs = []
        for i in range(args.runs):
            with cpu_meter(ch_pid) as meter:
                t0 = time.perf_counter()
                summary = recompute(spark, cfg, hour, publish_now=True, force=i > 0)
                total = time.perf_counter() - t0
            cpu = meter.between(meter.at(t0), meter.readings[-1])
            phases = dict(summary.seconds)
            # The recompute times its publish and its Data Docs (written after the switch) itself;
            # whatever is left (an older recompute: the whole publish) goes under the next name.
            phases["other" if "publish" in phases else "publish"] = round(max(0.0, total - sum(phases.values())), 3)
            runs.append(
                {
                    "seconds": round(total, 2),
                    # end to end up to the switch: the Data Docs are written after it, off the critical path
                    "seconds_to_publish": round(total - phases.get("data_docs", 0.0), 2),
                    "phases": phases,
                    "status": summary.status,
                    "raw_rows": summary.raw_rows,
                    "dedup_rows": summary.dedup_rows,
                    "dropped_rows": summary.dropped_rows,
                    "rollup_rows": summary.rollup_rows,
                    "late_rows": summary.late_rows,
                    "passed": summary.passed,
                    "reason": summary.reason,
                    "cpu_s": cpu,
                    "phase_cpu_s": meter.per_phase(t0, phases),
                }
            )
            say(
                f"recompute run {i + 1}: {total:.1f}s ({rate(summary.raw_rows, total)}), status {summary.status}, "
                f"dedup {summary.dedup_rows:,}, rollup rows {summary.rollup_rows:,}; phases {phases}; cpu s {cpu}"
            )
        result["loadavg_1m_after"] = benchkit.load_average("after the recompute")[0]
        spark.stop()
        spark = None
        first = runs[0]
        result.update(
            recompute_s=first["seconds"],
            recompute_to_publish_s=first["seconds_to_publish"],
            phases=first["phases"],
            phase_cpu_s=first["phase_cpu_s"],
            cpu_s=first["cpu_s"],
            recompute={k: v for k, v in first.items() if k not in ("seconds", "phases", "cpu_s", "phase_cpu_s")},
        )
        if len(runs) > 1:
            result["recompute_warm_s"] = runs[-1]["seconds"]
            result["phases_warm"] = runs[-1]["phases"]

        # 4. ClickHouse: load (apart), then its own dedup + aggregate (the comparison)
        if not args.skip_clickhouse:
            say(f"loading the raw hour into ClickHouse {cfg.clickhouse.database}.{raw_table}")
            load_s = load_clickhouse(cfg, tbl, raw_table)
            ch_version = int.from_bytes(os.urandom(6), "big") | (1 << 62)  # never a publish version (< 2^60)
            say("ClickHouse: dedup (LIMIT 1 BY tenant_id, event_id) + minute rollups INSERT ... SELECT")
            ch_meter = cpu_meter(ch_pid)
            c0 = ch_meter.look()
            ch_s, ch_rows, ch_events = clickhouse_rollup(cfg, raw_table, ch_version)
            result["clickhouse_cpu_s"] = ch_meter.between(c0, ch_meter.look()).get("clickhouse")
            say(
                f"ClickHouse: {ch_s:.1f}s ({rate(tbl.num_rows, ch_s)}), {ch_rows:,} rollup rows, {ch_events:,} events "
                f"(Spark: {first['rollup_rows']:,} rows, {first['dedup_rows'] - first['dropped_rows']:,} events)"
            )
            core = first["phases"].get("read_dedup", 0) + first["phases"].get("rollups_stage", 0)
            result.update(
                clickhouse_load_s=round(load_s, 2),
                clickhouse_aggregate_s=round(ch_s, 2),
                clickhouse_rollup_rows=ch_rows,
                clickhouse_events=ch_events,
                ratio=round(first["seconds"] / ch_s, 2) if ch_s else None,
                ratio_dedup_rollup_only=round(core / ch_s, 2) if ch_s else None,
                results_match=(
                    first["raw_rows"] == tbl.num_rows
                    and ch_rows == first["rollup_rows"]
                    and ch_events == first["dedup_rows"] - first["dropped_rows"]
                ),
            )
    except Exception as exc:  # noqa: BLE001
        say(f"bench failed: {type(exc).__name__}: {exc}")
        result["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
    finally:
        if spark is not None:
            spark.stop()
        if ch_version is not None:
            try:
                drop_version(cfg, ch_version)
            except Exception as exc:  # noqa: BLE001
                say(f"could not delete ClickHouse rows of version {ch_version}: {exc}")
        if not args.keep:
            try:
                ch_http(cfg, f"DROP TABLE IF EXISTS {raw_table}")
            except Exception:  # noqa: BLE001
                pass
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"kept {workdir} and {cfg.clickhouse.database}.{raw_table}")
        if ch_service is not None:
            say("stopping the ClickHouse this bench started")
            ch_service.down()
    print(json.dumps(result, separators=(",", ":"), default=str))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
