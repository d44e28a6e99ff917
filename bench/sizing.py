"""Production sizing for 1 M, 100 M and 10 B events/day, computed from measured costs.

Cheap by default: it reads numbers and does arithmetic (docs/production.md quotes its table).

Inputs, newest first:
  1. bench results saved as ``bench/results/<bench>.json`` (the final JSON line of a bench, e.g.
     ``python bench/stream_throughput.py | tail -1 > bench/results/stream_throughput.json``):
     stream_throughput (stream JVM CPU per step, fitted to fixed cores + CPU-s per 1,000 events),
     recompute_hour (Spark JVM CPU-s of one recomputed hour / its events), storage (``--measure``);
  2. otherwise the measured figures below, each with its source.
``--measure`` measures storage here (a few seconds of one core): realistic traffic from
tidemark.generator, events_raw as Parquet through delta-rs, rollups through the real migrations and
materialized views in a current ClickHouse (chdb 26.9), and writes bench/results/storage.json.

Prices, node sizes and traffic shape are assumptions, stated in ASSUMPTIONS; change them there.

    python bench/sizing.py [--measure] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
STAGES = {"1 M/day": 1e6, "100 M/day": 1e8, "10 B/day": 1e10}
TARGET_COST_PER_EVENT = 0.001  # the product's target, USD


@dataclass
class Measured:
    """Costs per event, each with where it comes from."""

    # stream and recompute: bench/stream_throughput.py and bench/recompute_hour.py on 2026-12-07 (2 cores)
    stream_fixed_cores: float = 1.15
    stream_fixed_src: str = "stream_throughput 2026-12-07: Spark JVM 139.8 CPU-s in 122 s at 976 ev/s processed"
    stream_cpu_s_per_1k: float = 0.088
    stream_cpu_src: str = "stream_throughput 2026-12-07: Spark JVM 86.7 CPU-s in 62 s at 15,815 ev/s (saturated)"
    recompute_cpu_s_per_1k: float = 110.8 / 4200
    recompute_src: str = "recompute_hour 2026-12-08: a 4.2 M-event hour (5,327 files), Spark JVM 110.8 CPU-s"
    clickhouse_cpu_s_per_1k: float = 2 * 4.9 / 4200
    clickhouse_cpu_src: str = "batch/staging.py: ClickHouse inserts a 4.2 M-event hour in 4.9 CPU-s; x2 (stream, batch)"
    # storage: `python bench/sizing.py --measure` on 2026-12-04 (300 k events from tidemark.generator,
    # 200 tenants, 1 k ev/s; ClickHouse = chdb 26.9.2.1, tables merged; 0.46 minute rows per event)
    kafka_bytes_per_event: float = 306.7
    lake_bytes_per_event: float = 83.0
    minute_bytes_per_event: float = 11.3
    hour_bytes_per_event: float = 11.0
    day_bytes_per_event: float = 9.5
    storage_src: str = "bench/sizing.py --measure, 2026-12-04: 300 k events, 200 tenants, chdb 26.9"


ASSUMPTIONS = {
    "peak_to_mean": 2.0,  # traffic peaks at twice the daily mean; cores and partitions are sized for the peak
    "kafka_retention_days": 7,
    "kafka_replication": 3,
    "partition_ev_s": 5_000,  # events/s one Kafka partition (and one stream task) takes comfortably
    "broker_mb_s": 40,  # ingress per broker, replication included
    "broker_disk_tb": 4,
    "ch_replicas": (2, 2, 3),  # per stage
    "ch_node_cores": (4, 16, 32),
    "ch_node_ssd_tb": 2.0,  # usable hot SSD per node (half of 4 TB: merges need room)
    "warm_retention_days": 395,  # hour/day rollups are kept 13 months (tiering never deletes them)
    "cold_lake_retention_days": 395,
    "recompute_factor": 1.25,  # hours recomputed again (late data, dirty hours)
    "recompute_window_s": 900,  # an hour's recompute finishes within 15 minutes
    "active_tenants": (10, 1_000, 20_000),
    "cache_entries_per_tenant": 200,
    "cache_entry_kb": 8,
    "usd_core_hour": 0.04,
    "usd_ssd_gb_month": 0.08,
    "usd_object_gb_month": 0.023,
    "usd_redis_gb_month": 12.0,
    "kafka_broker_cores": 4,
}


def _latest(name: str) -> dict | None:
    files = sorted(RESULTS.glob(f"{name}*.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(files):
        try:
            return json.loads(path.read_text().strip().splitlines()[-1]) | {"_file": str(path)}
        except (ValueError, IndexError):
            continue
    return None


def _all(name: str) -> list[tuple[dict, str]]:
    out = []
    for path in sorted(RESULTS.glob(f"{name}*.json")):
        try:
            out.append((json.loads(path.read_text().strip().splitlines()[-1]), path.name))
        except (ValueError, IndexError):
            continue
    return out


def measured() -> Measured:
    m = Measured()
    # Every saved stream run counts (a ladder to 5 k and one to 20 k are two files). A stream burns a
    # floor of CPU at any rate (the fixed work of a micro-batch per trigger), and at saturation each
    # event costs what the busiest step spent per event processed: cores = max(floor, peak x cost).
    steps = [
        (s["processed"]["ev_s"], s["cpu_s"]["spark_jvm"] / s["cpu_s"]["wall_s"], path)
        for run, path in _all("stream_throughput")
        for s in run.get("steps", [])
        if s.get("cpu_s", {}).get("wall_s") and s.get("processed", {}).get("ev_s")
    ]
    if steps:
        slowest, busiest = min(steps), max(steps)
        m.stream_fixed_cores = slowest[1]
        m.stream_fixed_src = f"{slowest[2]}: Spark JVM cores at {slowest[0]:,.0f} ev/s processed"
        m.stream_cpu_s_per_1k = busiest[1] / busiest[0] * 1000
        m.stream_cpu_src = f"{busiest[2]}: Spark JVM CPU-s per 1,000 events at {busiest[0]:,.0f} ev/s processed"
    recompute = _latest("recompute_hour")
    if recompute and isinstance(recompute.get("cpu_s"), dict) and recompute.get("events"):
        m.recompute_cpu_s_per_1k = recompute["cpu_s"].get("spark_jvm", 0) / recompute["events"] * 1000
        m.recompute_src = f"{Path(recompute['_file']).name}: Spark JVM CPU-s / events"
    storage = _latest("storage")
    if storage:
        for key in ("kafka", "lake", "minute", "hour", "day"):
            setattr(m, f"{key}_bytes_per_event", storage[f"{key}_bytes_per_event"])
        source = Path(storage["_file"]).name
        m.storage_src = f"{source} ({storage['events']:,} events, measured {storage['measured_at']})"
    return m


def size(m: Measured, per_day: float, stage: int, cfg) -> dict:
    a = ASSUMPTIONS
    mean = per_day / 86400
    peak = mean * a["peak_to_mean"]
    hot_days, lake_hot_days = cfg.tiering.hot_days, cfg.tiering.lake_hot_days
    # Spark
    stream_cores = max(m.stream_fixed_cores, peak * m.stream_cpu_s_per_1k / 1000)
    hour_cpu = per_day / 24 * m.recompute_cpu_s_per_1k / 1000 * a["recompute_factor"]
    batch_cores = max(1.0, hour_cpu / a["recompute_window_s"])
    # Kafka
    partitions = max(6, math.ceil(peak / a["partition_ev_s"]))
    kafka_disk_gb = per_day * m.kafka_bytes_per_event * a["kafka_retention_days"] * a["kafka_replication"] / 1e9
    ingress_mb_s = peak * m.kafka_bytes_per_event * a["kafka_replication"] / 1e6
    brokers = max(3, math.ceil(ingress_mb_s / a["broker_mb_s"]), math.ceil(kafka_disk_gb / 1000 / a["broker_disk_tb"]))
    partitions = math.ceil(partitions / brokers) * brokers
    # ClickHouse: hot SSD = minute rollups (hot_days) + warm rollups until they move (lake_hot_days)
    warm_per_event = m.hour_bytes_per_event + m.day_bytes_per_event
    hot_gb = per_day * (m.minute_bytes_per_event * hot_days + warm_per_event * lake_hot_days) / 1e9
    cold_ch_gb = per_day * warm_per_event * max(0, a["warm_retention_days"] - lake_hot_days) / 1e9
    replicas = a["ch_replicas"][stage]
    shards = max(1, math.ceil(hot_gb / 1000 / a["ch_node_ssd_tb"]))
    ch_cpu_cores = mean * m.clickhouse_cpu_s_per_1k / 1000
    # Lake (object storage)
    lake_hot_gb = per_day * m.lake_bytes_per_event * lake_hot_days / 1e9
    lake_cold_gb = per_day * m.lake_bytes_per_event * (a["cold_lake_retention_days"] - lake_hot_days) / 1e9
    # Redis: the serving cache
    redis_gb = a["active_tenants"][stage] * a["cache_entries_per_tenant"] * a["cache_entry_kb"] * 2 / 1e6
    # Money, per month (730 h)
    cores = math.ceil(stream_cores) + math.ceil(batch_cores)
    cores += shards * replicas * a["ch_node_cores"][stage] + brokers * a["kafka_broker_cores"]
    ssd_gb = hot_gb * replicas + kafka_disk_gb
    object_gb = lake_hot_gb + lake_cold_gb + cold_ch_gb * replicas
    month = (
        cores * 730 * a["usd_core_hour"]
        + ssd_gb * a["usd_ssd_gb_month"]
        + object_gb * a["usd_object_gb_month"]
        + max(redis_gb, 1) * a["usd_redis_gb_month"]
    )
    per_event = month / (per_day * 30.4)
    return {
        "events_per_day": per_day,
        "mean_ev_s": round(mean, 1),
        "peak_ev_s": round(peak, 1),
        "spark_stream_cores": round(stream_cores, 1),
        "spark_batch_cores": round(batch_cores, 1),
        "kafka_partitions": partitions,
        "kafka_brokers": brokers,
        "kafka_disk_gb_per_broker": round(kafka_disk_gb / brokers, 1),
        "clickhouse_shards": shards,
        "clickhouse_replicas": replicas,
        "clickhouse_ingest_cores": round(ch_cpu_cores, 2),
        "clickhouse_hot_ssd_gb_per_replica": round(hot_gb, 1),
        "clickhouse_cold_volume_gb_per_replica": round(cold_ch_gb, 1),
        "lake_hot_gb": round(lake_hot_gb, 1),
        "lake_cold_gb": round(lake_cold_gb, 1),
        "redis_gb": round(max(redis_gb, 0.1), 2),
        "usd_month": round(month),
        "usd_per_event": per_event,
        "vs_target": f"{per_event / TARGET_COST_PER_EVENT:.2%} of ${TARGET_COST_PER_EVENT}",
    }


def table(rows: dict[str, dict]) -> str:
    labels = [
        ("peak_ev_s", "peak events/s"),
        ("spark_stream_cores", "Spark stream cores (peak)"),
        ("spark_batch_cores", "Spark batch cores (hour in 15 min)"),
        ("kafka_partitions", "Kafka partitions"),
        ("kafka_brokers", "Kafka brokers"),
        ("kafka_disk_gb_per_broker", "Kafka disk per broker, GB"),
        ("clickhouse_shards", "ClickHouse shards"),
        ("clickhouse_replicas", "ClickHouse replicas per shard"),
        ("clickhouse_ingest_cores", "ClickHouse ingest cores"),
        ("clickhouse_hot_ssd_gb_per_replica", "ClickHouse hot SSD per replica, GB"),
        ("clickhouse_cold_volume_gb_per_replica", "ClickHouse cold volume per replica, GB"),
        ("lake_hot_gb", "Delta events_raw (hot), GB"),
        ("lake_cold_gb", "Delta events_cold, GB"),
        ("redis_gb", "Redis memory, GB"),
        ("usd_month", "cost per month, USD"),
        ("usd_per_event", "cost per event, USD"),
        ("vs_target", "vs the $0.001 target"),
    ]
    out = ["| | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
    for key, text in labels:
        cells = []
        for r in rows.values():
            v = r[key]
            cells.append(f"{v:.2e}" if key == "usd_per_event" else f"{v:,}" if isinstance(v, int | float) else str(v))
        out.append(f"| {text} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# -- --measure ----------------------------------------------------------------------------------


def measure_storage(n_events: int = 300_000, rate: float = 1000.0, tenants: int = 200) -> dict:
    """Bytes per event in Kafka, the lake (Parquet by delta-rs, one file per hour partition: what
    OPTIMIZE leaves) and each rollup table (current ClickHouse, merged), on generated traffic.
    200 tenants share 1 k ev/s: sparse tenant-minutes, so more rollup rows per event than big
    tenants give (conservative for the larger stages)."""
    import dataclasses
    from collections import defaultdict
    from datetime import datetime, timezone

    import pyarrow as pa
    from deltalake import write_deltalake

    from tidemark.config import load
    from tidemark.contract import parse_event_time
    from tidemark.generator.options import TrafficOptions
    from tidemark.generator.traffic import TrafficGenerator
    from tidemark.io.clickhouse import client, insert_rows
    from tidemark.migrations import migrate
    from tidemark.tables import ROLLUP_INPUT_COLUMNS, table

    start_ms = int(datetime(2026, 11, 25, tzinfo=timezone.utc).timestamp() * 1000)
    opts = TrafficOptions(
        start_ms=start_ms,
        count=n_events,
        rate=rate,
        tenants=tenants,
        late_fraction=0.0,
        duplicate_fraction=0.0,
        malformed_fraction=0.0,
    )
    kafka_bytes, rows, groups = 0, [], defaultdict(list)
    for i, rec in enumerate(TrafficGenerator(opts).records()):
        kafka_bytes += len(rec.key) + len(rec.value) + 20  # + record framing inside a batch
        doc = json.loads(rec.value)
        t = parse_event_time(doc["event_time"])
        ts = datetime.fromtimestamp(rec.timestamp_ms / 1000, timezone.utc)
        row = (doc["event_id"], doc["tenant_id"], t, doc["user_id"], doc["session_id"], doc["country"])
        row += (doc["device"], doc["page"], doc.get("referrer"), 1, False, "page_views", rec.partition, i, ts, ts)
        rows.append(row + (1, t.date(), t.hour))
        minute = t.replace(second=0, microsecond=0)
        groups[(doc["tenant_id"], minute, doc["country"], doc["device"], doc["page"])].append(doc["user_id"])
    work = Path(tempfile.mkdtemp(prefix="tidemark-sizing-"))
    schema = table("events_raw")
    arrow = schema.arrow()
    data = pa.Table.from_pylist([dict(zip(arrow.names, r, strict=True)) for r in rows], schema=arrow)
    write_deltalake(str(work / "events_raw"), data, partition_by=list(schema.partition_by))
    lake_bytes = sum(p.stat().st_size for p in (work / "events_raw").rglob("*.parquet"))

    base = load()
    cfg = dataclasses.replace(
        base, clickhouse=dataclasses.replace(base.clickhouse, host=f"chdb:{work / 'chdb'}", database="sizing")
    )
    migrate(cfg)
    ch = client(cfg.clickhouse)
    inputs = [("stream", 1, *k, len(v), sorted(set(v))) for k, v in groups.items()]
    for i in range(0, len(inputs), 50_000):
        insert_rows(ch, "sizing.rollup_input", ROLLUP_INPUT_COLUMNS, inputs[i : i + 50_000])
    per_table = {}
    for t in ("minute_rollups", "hour_rollups", "day_rollups"):
        ch.execute(f"OPTIMIZE TABLE sizing.{t} FINAL")
        ((b, r),) = ch.execute(
            "SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE database = 'sizing' AND table = %(t)s "
            "AND active",
            {"t": t},
        )
        per_table[t] = (int(b), int(r))
    return {
        "bench": "storage",
        "measured_at": time.strftime("%Y-%m-%d"),
        "events": n_events,
        "rate_ev_s": rate,
        "tenants": tenants,
        "kafka_bytes_per_event": round(kafka_bytes / n_events, 1),
        "lake_bytes_per_event": round(lake_bytes / n_events, 1),
        **{f"{t.split('_')[0]}_bytes_per_event": round(b / n_events, 1) for t, (b, _) in per_table.items()},
        "rollup_rows_per_event": {t: round(r / n_events, 3) for t, (_, r) in per_table.items()},
        "engine": "chdb " + str(ch.execute("SELECT version()")[0][0]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="measure storage per event first (writes results)")
    parser.add_argument("--json", action="store_true", help="the final JSON line only")
    args = parser.parse_args()
    if args.measure:
        result = measure_storage()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "storage.json").write_text(json.dumps(result) + "\n")
        print(json.dumps(result), file=sys.stderr)
    from tidemark.config import load

    cfg = load()
    m = measured()
    rows = {label: size(m, per_day, i, cfg) for i, (label, per_day) in enumerate(STAGES.items())}
    if not args.json:
        print(table(rows))
        print("\nInputs (per 1,000 events unless stated):")
        for key, value in asdict(m).items():
            print(f"  {key}: {value if isinstance(value, str) else round(value, 4)}")
        print(f"  tiering: hot_days={cfg.tiering.hot_days}, lake_hot_days={cfg.tiering.lake_hot_days}")
        print("Assumptions: " + ", ".join(f"{k}={v}" for k, v in ASSUMPTIONS.items()))
    print(json.dumps({"bench": "sizing", "inputs": asdict(m), "assumptions": ASSUMPTIONS, "stages": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
