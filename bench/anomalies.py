"""Anomaly detection bench: precision and recall on injected anomalies over a simulated month.

The traffic generator simulates ``--days`` days (default 31) of a few tenants' traffic with a daily
and weekly shape (``--seasonality``) and injects, per tenant, spikes, drops and a dead page ("/") at
seeded random hours: in the scored window (the last ``--score-days`` days, which have at least three
weeks of history) and, to test the baseline's robustness, one spike per tenant in the history. The
generated events become published batch rollups (``tidemark.generator.rollups.RollupManifest``, hour
buckets) in the bench's own ClickHouse; then the detector runs hour by hour over the scored window,
as the hourly DAG does after each publish.

Scoring, per injection and per (tenant, hour):
* recall: the share of scored-window injections found: a spike (drop) by an 'all' spike (drop) row
  of that tenant in one of its hours, a dead page by a drop row of that page;
* precision: the share of flagged (tenant, hour) pairs that lie inside an injection of that tenant
  (one pair however many series flagged it: what an operator looks at); hour_recall: the share of
  injected (tenant, hour) pairs flagged;
* cost: CPU seconds per tenant-hour scored, of this process (the detector) and of the ClickHouse
  server, measured from /proc (under whatever else the machine runs: the load average is printed).

Own ClickHouse (own TIDEMARK_HOME .tidemark/bench-anomalies, ports and database, forced: it drops and
rebuilds them; see ``benchkit.bench_env``). Final JSON line: precision, recall, per kind, cost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from datetime import datetime, timedelta, timezone

import benchkit
from benchkit import say

from tidemark.config import settings
from tidemark.io.clickhouse import client, insert_rows

PORTS = {
    "CLICKHOUSE_PORT": 39500,
    "CLICKHOUSE_HTTP_PORT": 38523,
    "CLICKHOUSE_INTERSERVER_PORT": 39509,
    "TIDEMARK_REDIS_PORT": 36879,
}
END = datetime(2026, 11, 30, tzinfo=timezone.utc)  # a Monday
HOUR_S = 3600
HOUR_MS = 3_600_000
TENANTS = ("acme", "globex", "initech")


def plan_injections(rng: random.Random, score_start: datetime, history_start: datetime, per_tenant: dict):
    """Non-overlapping, hour-aligned injections per tenant: (scored ones, history ones)."""
    from tidemark.generator.injections import Injection

    def ms(t: datetime) -> int:
        return int(t.timestamp() * 1000)

    scored, history = [], []
    for tenant in TENANTS:
        taken: set[int] = set()

        def place(first: datetime, last: datetime, hours: int, taken: set[int] = taken) -> datetime:
            span = int((last - first).total_seconds() // HOUR_S) - hours
            while True:
                start = first + timedelta(hours=rng.randrange(span))
                wanted = {int(start.timestamp()) + k * HOUR_S for k in range(-2, hours + 2)}
                if not wanted & taken:
                    taken.update(wanted)
                    return start

        for kind, count in per_tenant.items():
            for _ in range(count):
                hours = rng.randint(2, 4) if kind == "dead_page" else rng.randint(1, 3)
                start = place(score_start, END, hours)
                factor = {"spike": rng.uniform(2.5, 4.0), "drop": rng.uniform(0.1, 0.4), "dead_page": 0.0}[kind]
                scored.append(Injection(kind, tenant, ms(start), ms(start + timedelta(hours=hours)), round(factor, 2)))
        start = place(history_start, score_start - timedelta(days=1), 2)
        history.append(Injection("spike", tenant, ms(start), ms(start + timedelta(hours=2)), 3.0))
    return scored, history


def simulate(cfg, args, injections) -> int:
    """Generate the month, write it as published batch rollups (hour buckets); return the events."""
    from tidemark.generator.options import TrafficOptions
    from tidemark.generator.rollups import RollupManifest
    from tidemark.generator.traffic import TrafficGenerator
    from tidemark.tables import ROLLUP_INPUT_COLUMNS

    start = END - timedelta(days=args.days)
    manifest = RollupManifest(grain_ms=HOUR_MS)
    options = TrafficOptions(
        start_ms=int(start.timestamp() * 1000),
        count=int(args.days * 86400 * args.rate),
        rate=args.rate,
        seed=args.seed,
        tenants=len(TENANTS),
        duplicate_fraction=0.0,  # no dedup here: the rollups take the valid events as they are
        malformed_fraction=0.0,
        seasonality=args.seasonality,
        injections=tuple(injections),
    )
    for _ in TrafficGenerator(options, manifest).records():
        pass
    rows = manifest.rollup_rows("batch", 1)
    ch = client(cfg.clickhouse, send_receive_timeout=600)
    db = cfg.clickhouse.database
    for i in range(0, len(rows), 200_000):
        insert_rows(ch, f"{db}.rollup_input", ROLLUP_INPUT_COLUMNS, rows[i : i + 200_000])
    now = datetime.now(timezone.utc)
    hours = [start + timedelta(hours=k) for k in range(args.days * 24)]
    registry = [(h, 1, "published", now, 1, 0, 0, 0, 0, 0, "bench-anomalies", "", "") for h in hours]
    from tidemark.batch.registry import REGISTRY_COLUMNS

    insert_rows(ch, f"{db}.published_hours", REGISTRY_COLUMNS, registry)
    return manifest.valid_events


def evaluate(found: list[tuple], injections) -> dict:
    """Precision over flagged (tenant, hour) pairs, recall over injections (see the module doc)."""
    truth_hours: set[tuple[str, int]] = set()
    hits: list[bool] = []
    for inj in injections:
        hours = set(range(inj.start_ms // 1000, inj.end_ms // 1000, HOUR_S))
        truth_hours |= {(inj.tenant, h) for h in hours}
        if inj.kind == "dead_page":
            wanted = {(inj.tenant, h, "page", inj.page, "drop") for h in hours}
        else:
            wanted = {(inj.tenant, h, "all", "", inj.kind) for h in hours}
        hits.append(any((r[0], r[2], r[4], r[5], r[6]) in wanted for r in found))
    flagged = {(r[0], r[2]) for r in found}
    kinds = sorted({i.kind for i in injections})

    def when(t: int) -> str:
        return f"{datetime.fromtimestamp(t, timezone.utc):%m-%dT%H}"

    return {
        "precision": round(len(flagged & truth_hours) / len(flagged), 3) if flagged else None,
        "recall": round(sum(hits) / len(hits), 3) if hits else None,
        "recall_by_kind": {
            k: round(
                sum(h for h, i in zip(hits, injections, strict=True) if i.kind == k)
                / sum(i.kind == k for i in injections),
                3,
            )
            for k in kinds
        },
        # the share of injected (tenant, hour) pairs flagged: a 3-hour drop found in 2 of its hours is
        # recalled above, 2/3 here
        "hour_recall": round(len(flagged & truth_hours) / len(truth_hours), 3) if truth_hours else None,
        "flagged_tenant_hours": len(flagged),
        "false_tenant_hours": sorted(f"{t} {when(h)}" for t, h in flagged - truth_hours),
        "missed": [
            f"{i.kind} {i.tenant} {when(i.start_ms // 1000)} {(i.end_ms - i.start_ms) // HOUR_MS}h x{i.factor}"
            for i, ok in zip(injections, hits, strict=True)
            if not ok
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--score-days", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1.0, help="generated records per simulated second")
    parser.add_argument("--seasonality", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the bench ClickHouse running")
    parser.add_argument(
        "--reuse", action="store_true", help="score the month a previous run (same options) left in the bench database"
    )
    args = parser.parse_args()
    benchkit.use_env(benchkit.bench_env("bench-anomalies", "tidemark_bench_anomalies", PORTS))
    load_start = benchkit.load_average()

    from tidemark import logs
    from tidemark.anomalies import store
    from tidemark.anomalies.detect import detect_hours
    from tidemark.migrations import migrate
    from tidemark.stack.process import descendants
    from tidemark.stack.services import ClickHouse

    cfg = settings()
    logs.configure(cfg)
    clickhouse = ClickHouse(cfg)
    clickhouse.up()
    try:
        if not args.reuse:
            client(cfg.clickhouse, database="default").execute(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
            migrate(cfg)
        score_start = END - timedelta(days=args.score_days)
        scored, history = plan_injections(
            random.Random(args.seed),
            score_start,
            END - timedelta(days=args.days - 1),
            {"spike": 2, "drop": 2, "dead_page": 1},
        )
        started = time.monotonic()
        if args.reuse:  # the same seed and options: the same month, already written by a previous run
            (events,) = client(cfg.clickhouse).execute(
                f"SELECT sum(events) FROM {cfg.clickhouse.database}.day_rollups WHERE dimension = 'all'"
            )[0]
        else:
            events = simulate(cfg, args, scored + history)
        say(f"simulated {events} events over {args.days} days in {time.monotonic() - started:.1f}s")

        server_pid = clickhouse.proc.pid()
        me = os.getpid()

        def classify(table):
            kinds = {me: "detector"}
            if server_pid is not None:
                kinds.update(dict.fromkeys(descendants(server_pid, table), "clickhouse"))
            return kinds

        meter = benchkit.CpuMeter(classify, ["detector", "clickhouse"], every=1.0)
        hours = [score_start + timedelta(hours=k) for k in range(args.score_days * 24)]
        before = meter.start()
        started = time.monotonic()
        for hour in hours:  # as the hourly DAG runs it: one hour at a time, after its publish
            detect_hours(cfg, hour, hour + timedelta(hours=1), run_id="bench")
        detect_s = time.monotonic() - started
        after = meter.stop()
        cpu = benchkit.CpuMeter.between(before, after)
        ch = client(cfg.clickhouse)
        found = store.read_anomalies(ch, cfg.clickhouse.database, int(score_start.timestamp()), int(END.timestamp()))
        found = [r for r in found if r[1] == "hour"]
        quality = evaluate(found, scored)
        tenant_hours = len(TENANTS) * len(hours)
        total_cpu = sum(cpu.values())
        print(
            json.dumps(
                {
                    "bench": "anomalies",
                    "tenants": len(TENANTS),
                    "days": args.days,
                    "scored_hours": len(hours),
                    "events": events,
                    "injections": len(scored),
                    "history_injections": len(history),
                    **quality,
                    "anomaly_rows": len(found),
                    "detect_wall_s": round(detect_s, 1),
                    "cpu_s_per_tenant_hour": {k: round(v / tenant_hours, 4) for k, v in cpu.items()}
                    | {"total": round(total_cpu / tenant_hours, 4)},
                    "cpu_note": "measured under shared load (other processes on the machine); see load_average",
                    "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
                },
                default=str,
            )
        )
        return 0
    finally:
        if not args.keep:
            clickhouse.down()


if __name__ == "__main__":
    raise SystemExit(main())
