"""Failure drills: each fault injected into the embedded stack under generated load, then recovery
timed and the totals reconciled exactly (nothing lost, nothing doubled).

    .venv/bin/python bench/drills.py [--drills kill9,clickhouse_down,...] [--rate 5000] [--seed 7]
        [--clickhouse-down-s 120] [--load-seconds 90]

Drills (``--drills``, default all, in this order):
  kill9            kill -9 the stream's process group 5 times (``--kills``) at seeded random moments,
                   restarting it each time; recovery = kill -> the stream runs again and has
                   committed every offset the topic held then (one figure per kill).
  clickhouse_down  ClickHouse stopped for ``--clickhouse-down-s`` then started; recovery = start ->
                   caught up with the topic as it was then. The stream must survive (its sink retries).
  broker_restart   the Kafka broker stopped and started; recovery as above. The generator's producer
                   (idempotent, 120 s delivery timeout) rides it out.
  recompute_kill   after the load, `tidemark recompute` of the busiest hour is kill -9'ed as soon as
                   it has staged its version (mid-publish), then run again to completion; a reader
                   thread asks the lambda-merged hour totals all along and every answer must equal
                   the old (before) or the new (after) complete version.
  api_load         1,000 concurrent API users (``--users``) for ``--api-seconds`` during the load,
                   with bench/query_latency.py's closed-loop load: p99, errors, cache hit rate and the
                   most ClickHouse queries in flight (bounded by TIDEMARK_SERVING_MAX_INFLIGHT_QUERIES).
  schema_drift     during the load, records of tenant ``drift``: an unknown extra field (accepted),
                   then schema_version 2 (dead-lettered: unsupported_version), then user_id of the
                   wrong type (dead-lettered: wrong_type); the stream must never stop.
  disk_full        the stream's lake and checkpoints live on a ``--disk-mb`` tmpfs (root needed),
                   filled to its last 1 % until the stream fails (at most ``--disk-full-s``): it must fail
                   loudly (ENOSPC in its log, or it exits) and, space back (restarted if it exited),
                   resume cleanly; recovery = space back -> caught up.

Every drill has its own topic, lake, checkpoint and ClickHouse database (``tidemark_drill_<name>``,
dropped first), runs the generator (`tidemark generate`, manifest kept) at ``--rate`` and ends with
exact totals: the manifest against the ClickHouse minute rollups (tidemark.stream.reconcile's
stream_report) and against the Delta lake read with delta-rs (lake_report). One JSON line per drill on
stdout; progress on stderr. Each line ends with the SLO report over the drill's own window and database
(``slo``: freshness of live events, events ingested, and for api_load query latency and availability from
an SLO monitor probing the API), its chart under .tidemark/drills/reports. The stack is the bench's own
(TIDEMARK_HOME .tidemark/drills, its own ports, each movable with ``BENCH_<VARIABLE>``), started if down
and stopped at the end.
On a shared machine recovery times are inflated; the totals must hold regardless.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import benchkit
from benchkit import say

ROOT = benchkit.ROOT
PORTS = {
    "TIDEMARK_KAFKA_PORT": 19592,
    "TIDEMARK_KAFKA_CONTROLLER_PORT": 19593,
    "CLICKHOUSE_PORT": 19600,
    "CLICKHOUSE_HTTP_PORT": 18723,
    "CLICKHOUSE_INTERSERVER_PORT": 19609,
    "TIDEMARK_REDIS_PORT": 16979,
    "TIDEMARK_SERVING_PORT": 18988,
}
DRILLS = ("kill9", "clickhouse_down", "broker_restart", "schema_drift", "disk_full", "api_load", "recompute_kill")
DRIFT_TENANT = "drift"


class DrillFailed(Exception):
    """The drill could not be carried out (not a finding about the data: those are in its line)."""


def drift_manifest(manifest: dict, accepted: list[dict], rejected: dict[str, int]) -> dict:
    """The generator's manifest plus the drift records: ``accepted`` events (JSON payloads the
    contract takes) count as on-time valid events of their minute, ``rejected`` (reason -> n) as
    dead letters. Pure: the reconciliation then covers them like the generator's own."""
    from tidemark.stream.reconcile import expected_rejections

    out = dict(manifest)
    rows: dict[tuple, int] = {}
    for e in accepted:
        key = (e["tenant_id"], e["event_time"][:16], e["country"], e["device"], e["page"])
        rows[key] = rows.get(key, 0) + 1
    out["minute_counts"] = list(manifest["minute_counts"]) + [[*k, n, n] for k, n in sorted(rows.items())]
    out["on_time_events"] = manifest["on_time_events"] + len(accepted)
    out["valid_events"] = manifest["valid_events"] + len(accepted)
    merged = dict(expected_rejections(manifest))
    for reason, n in rejected.items():
        merged[reason] = merged.get(reason, 0) + n
    out["rejected_by_reason"] = merged
    return out


def drift_events(n: int, now: datetime, rnd: random.Random) -> list[dict]:
    """``n`` contract-valid page views of tenant ``drift`` at ``now`` (schema v1)."""
    stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return [
        {
            "schema_version": 1,
            "event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "tenant_id": DRIFT_TENANT,
            "event_time": stamp,
            "user_id": f"u{rnd.randrange(50)}",
            "session_id": f"s{rnd.randrange(100)}",
            "country": "DE",
            "device": "mobile",
            "page": "/drift",
            "referrer": None,
        }
        for _ in range(n)
    ]


class Run:
    """One drill: its own topic, lake, checkpoint and database; its stream and generator."""

    def __init__(self, name: str, args, base_env: dict[str, str], mount_mb: int = 0):
        self.name, self.args, self.base_env = name, args, base_env
        self.workdir = Path(tempfile.mkdtemp(prefix=f"tidemark-drill-{name}-"))
        self.mounted = False
        if mount_mb:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mount_mb}m", "tmpfs", str(self.workdir)], check=True)
            self.mounted = True
        self.topic = f"drill_{name}_{uuid.uuid4().hex[:6]}"
        env = {
            **base_env,
            # the API's readonly users may read the stack's own database only (users.xml allow_databases)
            "CLICKHOUSE_DATABASE": base_env["CLICKHOUSE_DATABASE"] if name == "api_load" else f"tidemark_drill_{name}",
            "TIDEMARK_TOPIC": self.topic,
            "TIDEMARK_LAKE_ROOT": str(self.workdir / "lake"),
            "TIDEMARK_CHECKPOINT_ROOT": str(self.workdir / "checkpoints"),
        }
        benchkit.use_env(env)
        from tidemark.config import load

        self.cfg = load()
        self.log_path = Path(tempfile.gettempdir()) / f"tidemark-drill-{name}-{self.topic}.log"
        self.stream: subprocess.Popen | None = None
        self.generator: subprocess.Popen | None = None
        self.manifest_path = self.log_path.with_suffix(".manifest.json")
        self.ident = None
        self.restarts = 0
        self.drift: tuple[list[dict], dict[str, int]] = ([], {})  # schema_drift: accepted, rejected by reason

    # -- setup -----------------------------------------------------------------------------------
    def prepare(self) -> None:
        from tidemark.io.clickhouse import client
        from tidemark.migrations import migrate

        db = self.cfg.clickhouse.database
        client(self.cfg.clickhouse, database="default").execute(f"DROP DATABASE IF EXISTS {db}")
        migrate(self.cfg)

    def start_stream(self) -> None:
        if self.stream is not None:  # an exited stream's tree may linger (its JVM): gone before the next
            benchkit.stop(self.stream, 30, "previous stream")
        self.stream, self.ident = benchkit.start_stream(self.cfg, self.log_path)

    def kill_stream(self) -> None:
        """kill -9 the stream's whole process group (driver JVM and Python), as a crash would."""
        if self.stream is None:
            return
        try:
            os.killpg(self.stream.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        benchkit.stop(self.stream, 0, "stream", signal.SIGKILL)
        self.stream = None

    def stream_alive(self) -> bool:
        return self.stream is not None and self.stream.poll() is None

    def start_generator(self, seconds: float) -> None:
        out = open(self.log_path.with_suffix(".generator.log"), "ab")
        self.generator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidemark.cli",
                "generate",
                "--rate",
                str(self.args.rate),
                "--duration",
                str(seconds),
                "--seed",
                str(self.args.seed),
                "--topic",
                self.topic,
                "--manifest",
                str(self.manifest_path),
                "--no-progress",
            ],  # fmt: skip
            env={**os.environ, "TIDEMARK_LOG_LEVEL": "WARNING"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(ROOT),
        )

    def generator_running(self) -> bool:
        return self.generator is not None and self.generator.poll() is None

    def finish_generator(self, timeout_s: float) -> dict:
        assert self.generator is not None
        try:
            code = self.generator.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise DrillFailed(f"the generator ran {timeout_s:.0f}s past its duration") from None
        if code != 0 or not self.manifest_path.exists():
            tail = self.log_path.with_suffix(".generator.log").read_text(errors="replace")[-1500:]
            raise DrillFailed(f"the generator failed ({code}): {tail}")
        self.generator = None
        return json.loads(self.manifest_path.read_text())

    # -- waiting ---------------------------------------------------------------------------------
    def wait_first_batch(self) -> float:
        """Seconds until the stream has committed a batch (Spark started, first writes done)."""
        from tidemark.io.clickhouse import client

        ch, db = client(self.cfg.clickhouse), self.cfg.clickhouse.database
        started = time.monotonic()
        sql = f"SELECT count() FROM {db}.stream_progress WHERE stream_id = %(s)s"
        while not ch.execute(sql, {"s": self.ident.stream_id})[0][0]:
            self.check_stream()
            if time.monotonic() - started > self.args.startup_timeout:
                raise DrillFailed(f"no batch committed within {self.args.startup_timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(2)
        return time.monotonic() - started

    def caught_up(self, since: float, timeout_s: float | None = None, on_poll: Callable[[int], None] | None = None):
        """Seconds from ``since`` (monotonic) until the stream has committed every offset the topic
        holds now; None (said) if not within the timeout."""

        def poll(behind: int) -> None:
            if on_poll is not None:
                on_poll(behind)
            else:
                self.check_stream()

        if (
            benchkit.wait_consumed(
                self.cfg, self.ident.stream_id, self.topic, timeout_s or self.args.drain_timeout, poll
            )
            is None
        ):
            return None
        return round(time.monotonic() - since, 1)

    def starts(self) -> int:
        """How many times the stream has logged "stream started" (its query running) so far."""
        try:
            return self.log_path.read_text(errors="replace").count('"msg": "stream started"')
        except OSError:
            return 0

    def check_stream(self) -> None:
        if self.stream is not None and self.stream.poll() is not None:
            raise DrillFailed(f"the stream exited with {self.stream.returncode}:\n{self.log_tail()}")

    def log_tail(self, n: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- the end ---------------------------------------------------------------------------------
    def totals(self, manifest: dict) -> dict:
        """Produced vs counted: ClickHouse minute rollups (stream layer) and the Delta lake."""
        from tidemark.io.clickhouse import client
        from tidemark.slo.status import record_reconciliation
        from tidemark.stream.reconcile import drill_totals, lake_report, stream_report

        report = stream_report(self.cfg, manifest, self.ident.stream_id, self.ident.epoch)
        # the ingest SLO's figure, as `tidemark reconcile` records it
        record_reconciliation(
            client(self.cfg.clickhouse),
            self.cfg.clickhouse.database,
            self.ident.stream_id,
            report.on_time_expected,
            report.on_time_published,
        )
        out = drill_totals(report, lake_report(self.cfg, manifest))
        out["clickhouse"].update(self.duplicates_dropped(out["clickhouse"].pop("duplicates_dropped")))
        return out

    def duplicates_dropped(self, from_progress: int) -> dict:
        """Duplicates dropped, by conservation: every record the stream consumed (its last committed
        Kafka offsets; the drill's topic starts empty) is a valid row, a dead letter or a duplicate, and the
        committed-batch registry counts the first two exactly once per batch. Spark's own progress
        figure (``numDroppedDuplicateRows``) is kept beside it: a progress event still queued when the
        process is killed is never recorded, so it undercounts after a crash."""
        from tidemark.io.clickhouse import client
        from tidemark.stream.identity import stream_offsets

        consumed = sum(stream_offsets(self.cfg, self.ident.stream_id, self.topic).values())
        (rows,) = client(self.cfg.clickhouse).execute(
            f"SELECT sum(valid_rows + rejected_rows) FROM {self.cfg.clickhouse.database}.stream_batches "
            f"WHERE stream_id = %(s)s",
            {"s": self.ident.stream_id},
        )[0]
        return {
            "records_consumed": consumed,
            "duplicates_dropped": consumed - int(rows or 0),
            "duplicates_dropped_in_spark_progress": from_progress,
        }

    def slo_report(self, started: datetime) -> dict:
        """`tidemark slo report` over the drill's own window and database: the fault's effect on each
        SLO (freshness from the stream's batches, ingest from the reconciliation, query latency and
        availability where the drill ran the API and its probe)."""
        from tidemark.io.clickhouse import client
        from tidemark.slo.report import report

        end = datetime.now(timezone.utc)
        window_s = int((end - started).total_seconds()) + 60
        png = self.cfg.home / "reports" / f"slo-{self.name}.png"  # beside `tidemark slo report`'s own chart
        png.parent.mkdir(parents=True, exist_ok=True)
        shown, figures = report(
            client(self.cfg.clickhouse),
            self.cfg.clickhouse.database,
            end,
            window_s,
            f"{window_s // 60} min",
            png,
            live_within_s=self.cfg.spark.allowed_lateness_s,
        )
        say("\n".join(shown))
        return {
            f.objective.name: {
                "value": None if f.value is None else round(f.value, 4),
                "good": f.good,
                "total": f.total,
                "met": f.met if f.measured else None,
                "budget_left": round(f.budget_left, 4) if f.measured else None,
            }
            for f in figures
        } | {"chart": str(png)}

    def close(self) -> None:
        benchkit.stop(self.generator, 5, "generator")
        if self.stream is not None:
            benchkit.stop(self.stream, 45, "stream")
        self.stream = self.generator = None
        try:
            benchkit.delete_topics(self.cfg.kafka.bootstrap_servers, [self.topic])
        except Exception:  # noqa: BLE001 - cleanup; said by delete_topics
            pass
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.workdir)], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# the drills: each returns its figures; `drive` adds the load, the totals and the timing around it
# --------------------------------------------------------------------------------------------


def drive(run: Run, load_s: float, fault: Callable[[Run], dict], manifest_edit=None) -> dict:
    """The stream; once it has committed its first batch (Spark up), the generator for ``load_s``;
    ``fault(run)`` after ``--settle-s`` of load; then the generator's end, the drain and the totals."""
    run.prepare()
    run.start_stream()
    started = time.monotonic()
    warm = run.wait_first_batch()
    run.start_generator(load_s)
    say(f"{run.name}: first batch after {warm:.0f}s; {run.args.rate:.0f} ev/s for {load_s:.0f}s, the fault after "
        f"{run.args.settle_s:.0f}s")  # fmt: skip
    time.sleep(run.args.settle_s)
    figures = fault(run)
    manifest = run.finish_generator(load_s + run.args.startup_timeout)
    if not run.stream_alive():
        say(f"{run.name}: the stream is down after the fault; restarting it")
        run.start_stream()
        run.restarts += 1
    drain = run.caught_up(time.monotonic())
    if drain is None:
        raise DrillFailed(f"the stream did not catch up within {run.args.drain_timeout:.0f}s:\n{run.log_tail()}")
    if manifest_edit is not None:
        manifest = manifest_edit(manifest)
    return {
        **figures,
        "stream_restarts_by_drill": run.restarts,
        "load": {"rate": run.args.rate, "seconds": load_s, "records": manifest["messages_sent"]},
        "first_batch_s": round(warm, 1),
        "drain_after_load_s": drain,
        "totals": run.totals(manifest),
        "wall_s": round(time.monotonic() - started, 1),
    }


def kill9(run: Run) -> dict:
    rnd = random.Random(run.args.seed)
    kills = []
    for i in range(run.args.kills):
        time.sleep(rnd.uniform(2.0, 20.0))  # a seeded random moment: mid-batch or between batches
        under_load = run.generator_running()
        starts = run.starts()
        t0 = time.monotonic()
        run.kill_stream()
        run.start_stream()
        while run.starts() == starts:  # up again (its query running), then caught up
            run.check_stream()
            if time.monotonic() - t0 > run.args.startup_timeout:
                raise DrillFailed(f"the stream did not start again after kill {i + 1}:\n{run.log_tail()}")
            time.sleep(1)
        recovery = run.caught_up(t0, run.args.drain_timeout)
        say(f"kill9: kill {i + 1} under load={under_load}, recovered in {recovery}s")
        kills.append({"kill": i + 1, "under_load": under_load, "recovery_s": recovery})
        if recovery is None:
            raise DrillFailed(f"the stream did not recover from kill {i + 1}:\n{run.log_tail()}")
    return {"kills": kills, "recovery_s": max(k["recovery_s"] for k in kills)}


def clickhouse_down(run: Run) -> dict:
    from tidemark.stack.services import ClickHouse

    # Restarted as the stack's own ClickHouse: its users.xml lets the API's readonly users read the stack's
    # database only (allow_databases), which a drill database in its place would lock the api_load drill out of.
    stack_db = dataclasses.replace(run.cfg.clickhouse, database=run.base_env["CLICKHOUSE_DATABASE"])
    ch = ClickHouse(dataclasses.replace(run.cfg, clickhouse=stack_db))
    ch.down()
    say(f"clickhouse_down: ClickHouse stopped for {run.args.clickhouse_down_s:.0f}s")
    time.sleep(run.args.clickhouse_down_s)
    survived = run.stream_alive()
    t0 = time.monotonic()
    ch.up()
    up_s = round(time.monotonic() - t0, 1)
    if not survived:
        run.start_stream()
        run.restarts += 1
    return {"down_s": run.args.clickhouse_down_s, "stream_survived": survived, "clickhouse_start_s": up_s,
            "recovery_s": run.caught_up(t0)}  # fmt: skip


def broker_restart(run: Run) -> dict:
    from tidemark.stack.services import Broker

    kafka = Broker(run.cfg)
    t0 = time.monotonic()
    kafka.down()
    down_s = round(time.monotonic() - t0, 1)
    kafka.up()
    up_s = round(time.monotonic() - t0, 1)
    survived = run.stream_alive()
    if not survived:
        run.start_stream()
        run.restarts += 1
    return {"stop_s": down_s, "stopped_to_started_s": up_s, "stream_survived": survived,
            "recovery_s": run.caught_up(t0)}  # fmt: skip


def schema_drift(run: Run) -> dict:
    from confluent_kafka import Producer

    rnd = random.Random(run.args.seed)
    n = run.args.drift_records
    producer = Producer({"bootstrap.servers": run.cfg.kafka.bootstrap_servers, "enable.idempotence": True})
    accepted: list[dict] = []
    phases = []
    t0 = time.monotonic()
    for phase in ("extra_field", "schema_version_2", "wrong_type"):
        events = drift_events(n, datetime.now(timezone.utc), rnd)
        for e in events:
            if phase == "extra_field":
                e["ab_test_bucket"] = "b"  # unknown to the contract: additionalProperties allows it
            elif phase == "schema_version_2":
                e["schema_version"] = 2
            else:
                e["user_id"] = 12345
            producer.produce(run.topic, json.dumps(e).encode(), key=DRIFT_TENANT.encode())
        left = producer.flush(60)
        if left:
            raise DrillFailed(f"{left} drift records not acked")
        if phase == "extra_field":
            accepted += events
        seen = run.caught_up(time.monotonic())
        phases.append({"phase": phase, "records": n, "stream_alive": run.stream_alive(), "consumed_in_s": seen})
        say(f"schema_drift: {phase}: {n} records consumed in {seen}s, stream alive {run.stream_alive()}")
    run.drift = (accepted, {"unsupported_version": n, "wrong_type": n})
    return {
        "phases": phases,
        "stream_never_stopped": all(p["stream_alive"] for p in phases) and run.stream_alive(),
        "recovery_s": round(time.monotonic() - t0, 1),
    }


def disk_full(run: Run) -> dict:
    stat = os.statvfs(run.workdir)
    free = stat.f_bavail * stat.f_frsize
    keep = stat.f_blocks * stat.f_frsize // 100  # the last 1 %
    filler = run.workdir / "filler"
    subprocess.run(["fallocate", "-l", str(max(0, free - keep)), str(filler)], check=True)
    say(f"disk_full: {run.workdir} filled to its last 1 % ({keep // 1024} KiB free) until the stream fails "
        f"(at most {run.args.disk_full_s:.0f}s)")  # fmt: skip
    full_at = time.monotonic()
    loud = exited = False
    while time.monotonic() - full_at < run.args.disk_full_s and not (loud or exited):
        time.sleep(2)
        log = run.log_path.read_text(errors="replace")
        loud = "No space left on device" in log or "ENOSPC" in log or "os error 28" in log
        exited = not run.stream_alive()
    failed_after = round(time.monotonic() - full_at, 1)
    gone = time.monotonic() + 60  # a failed query takes its JVM down slowly: let it exit or go on retrying
    while run.stream_alive() and time.monotonic() < gone:
        time.sleep(1)
    exited = not run.stream_alive()
    t0 = time.monotonic()
    filler.unlink()

    def restart_if_exited(_behind: int) -> None:
        # what the operator (or a supervisor) does once space is back
        if not run.stream_alive():
            if run.restarts >= 3:
                raise DrillFailed(f"the stream keeps failing with space back:\n{run.log_tail()}")
            say("disk_full: space is back and the stream is down; restarting it")
            run.start_stream()
            run.restarts += 1

    restart_if_exited(0)
    return {"disk_mb": run.args.disk_mb, "failed_after_s": failed_after, "failed_loudly": loud or exited,
            "error_in_log": loud, "stream_exited": exited,
            "recovery_s": run.caught_up(t0, on_poll=restart_if_exited)}  # fmt: skip


def api_load(run: Run) -> dict:
    import httpx
    import query_latency

    from tidemark.io.clickhouse import client
    from tidemark.serving.keys import create

    os.environ.update(query_latency.SETTINGS)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    db = run.cfg.clickhouse.database
    tenants: list[str] = []
    deadline = time.monotonic() + run.args.startup_timeout
    while not tenants:  # the dashboards' tenants: those whose traffic the stream has published
        if time.monotonic() > deadline:
            raise DrillFailed("no tenant's rollups published: nothing for the users to ask")
        time.sleep(2)
        rows = client(run.cfg.clickhouse).execute(f"SELECT DISTINCT tenant_id FROM {db}.minute_rollups")
        tenants = [t for (t,) in rows]
    keys = [create(run.cfg, t, "drill")[1] for t in tenants]
    url = f"http://{run.cfg.serving.host}:{run.cfg.serving.port}"
    api = subprocess.Popen(
        [sys.executable, "-m", "tidemark.cli", "serve"],
        stdout=subprocess.DEVNULL,
        stderr=open(run.log_path.with_suffix(".api.log"), "ab"),
        start_new_session=True,
        cwd=str(ROOT),
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or api.poll() is not None:
                raise DrillFailed(f"the API did not start; see {run.log_path.with_suffix('.api.log')}")
            time.sleep(0.5)
        from tidemark.slo.monitor import Monitor

        monitor = Monitor(run.cfg, url + "/health")  # availability under the load, as `serve --detach` probes
        probing = threading.Event()

        def probe() -> None:
            while not probing.wait(1.0):
                monitor.probe_once()

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        step = asyncio.run(query_latency.load(url, keys, run.args.users, run.args.api_seconds))
        probing.set()
        prober.join(10)
        monitor.write()
        inflight = int(query_latency.metrics(url).get("tidemark_clickhouse_inflight_max", 0))
    finally:
        benchkit.stop(api, 15, "API")
    bound = run.cfg.serving.max_inflight_queries
    return {**step, "clickhouse_inflight_max_one_worker": inflight, "inflight_bound": bound,
            "inflight_bounded": inflight <= bound, "recovery_s": None}  # fmt: skip


def recompute_kill(run: Run, manifest: dict) -> dict:
    """After the load: kill the recompute of the busiest hour mid-publish, re-run it, and check that a
    reader saw only complete versions."""
    from tidemark.batch import publication, registry
    from tidemark.io.clickhouse import client
    from tidemark.lambda_merge import hour_totals

    per_hour: dict[tuple[str, str], int] = {}
    for tenant, minute, *_dims, every, _on_time in manifest["minute_counts"]:
        per_hour[(tenant, minute[:13])] = per_hour.get((tenant, minute[:13]), 0) + every
    tenant, hour_label = max(per_hour, key=per_hour.get)
    hour = datetime.fromisoformat(hour_label + ":00").replace(tzinfo=timezone.utc)
    ch = client(run.cfg.clickhouse)
    db = run.cfg.clickhouse.database

    def ask():
        return hour_totals(ch, db, tenant, hour, hour + timedelta(hours=1))

    old = ask()
    answers: list = []
    stop = threading.Event()

    def reader():
        rch = client(run.cfg.clickhouse)
        while not stop.is_set():
            answers.append(hour_totals(rch, db, tenant, hour, hour + timedelta(hours=1)))
            time.sleep(0.1)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    env = {**os.environ, "TIDEMARK_LOG_LEVEL": "INFO"}
    argv = [sys.executable, "-m", "tidemark.cli", "recompute", "--hour", hour_label, "--force"]
    out = open(run.log_path.with_suffix(".recompute.log"), "ab")
    run_id = f"drill-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([*argv, "--run-id", run_id], env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=str(ROOT))  # fmt: skip
    killed_at = None
    try:
        deadline = time.monotonic() + run.args.recompute_timeout
        while proc.poll() is None and time.monotonic() < deadline:
            mine = [v.version for v in registry.versions(run.cfg, hour).values() if v.run_id == run_id]
            if mine and set(mine) & set(publication.present_versions(run.cfg, hour)):
                os.killpg(proc.pid, signal.SIGKILL)  # its rows (being) staged, not yet switched: mid-publish
                killed_at = time.monotonic()
                break
            time.sleep(0.2)
    finally:
        benchkit.stop(proc, 0, "recompute", signal.SIGKILL)
    if killed_at is None:
        stop.set()
        raise DrillFailed(f"the recompute ended ({proc.returncode}) before it staged a version")
    say(f"recompute_kill: killed the recompute of {hour_label} after it staged its version; running it again")
    done = subprocess.run([*argv, "--run-id", f"{run_id}-again"], env=env, stdout=out, stderr=subprocess.STDOUT,
                          timeout=run.args.recompute_timeout, cwd=str(ROOT))  # fmt: skip
    recovery = round(time.monotonic() - killed_at, 1)
    new = ask()
    stop.set()
    thread.join(10)
    published = registry.current(run.cfg, [hour]).get(hour)
    partial = [a for a in answers if a != old and a != new]
    return {
        "hour": hour_label,
        "tenant": tenant,
        "rerun_exit": done.returncode,
        "published_version": published.version if published else None,
        "reads": len(answers),
        "reads_old": sum(1 for a in answers if a == old),
        "reads_new": sum(1 for a in answers if a == new and a != old),
        "reads_partial": len(partial),
        "events_old": sum(r[2] for r in old),
        "events_new": sum(r[2] for r in new),
        "events_in_manifest": per_hour[(tenant, hour_label)],
        "recovery_s": recovery,
    }


def checks(name: str, out: dict) -> dict[str, bool]:
    """What a drill must show besides exact totals; status "ok" only if all hold."""
    found = {"totals_exact": bool(out["totals"]["exact"])}
    dup = out["totals"]["clickhouse"]
    found["duplicates_dropped_exactly"] = dup["duplicates_dropped"] == dup["duplicates_sent"]
    if name != "api_load":
        found["recovered"] = out.get("recovery_s") is not None
    for key in ("stream_never_stopped", "failed_loudly", "inflight_bounded"):
        if key in out:
            found[key] = bool(out[key])
    if "reads_partial" in out:
        found["no_partial_reads"] = out["reads_partial"] == 0
    return found


def run_drill(name: str, args, base_env: dict[str, str]) -> dict:
    run = Run(name, args, base_env, mount_mb=args.disk_mb if name == "disk_full" else 0)
    t0, started_at = time.monotonic(), datetime.now(timezone.utc)
    try:
        say(f"drill {name}: topic {run.topic}, database {run.cfg.clickhouse.database}, workdir {run.workdir}")
        if name == "kill9":
            out = drive(run, args.load_seconds + args.kills * 75, kill9)
        elif name == "clickhouse_down":
            out = drive(run, args.load_seconds + args.clickhouse_down_s, clickhouse_down)
        elif name == "broker_restart":
            out = drive(run, args.load_seconds, broker_restart)
        elif name == "schema_drift":
            out = drive(run, args.load_seconds, schema_drift, lambda m: drift_manifest(m, *run.drift))
        elif name == "disk_full":
            out = drive(run, args.load_seconds, disk_full)
        elif name == "api_load":
            out = drive(run, args.load_seconds + args.api_seconds, api_load)
        else:  # recompute_kill: the load first, then the fault
            out = drive(run, args.load_seconds, lambda r: {})
            out.update(recompute_kill(run, json.loads(run.manifest_path.read_text())))
        out["checks"] = checks(name, out)
        status = "ok" if all(out["checks"].values()) else "finding"
        try:
            out["slo"] = run.slo_report(started_at)
        except Exception as exc:  # noqa: BLE001 - the drill's result stands without its SLO view
            out["slo"] = {"error": f"{type(exc).__name__}: {str(exc)[-500:]}"}
    except Exception as exc:  # noqa: BLE001 - one drill's failure is its line; the next drill runs
        out, status = {"error": f"{type(exc).__name__}: {str(exc)[-3000:]}"}, "failed"
    finally:
        run.close()
    return {"drill": name, "status": status, **out, "loadavg": [round(x, 2) for x in os.getloadavg()],
            "drill_wall_s": round(time.monotonic() - t0, 1)}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drills", default=",".join(DRILLS), help=f"comma-separated, of {', '.join(DRILLS)}")
    p.add_argument("--rate", type=float, default=5000.0, help="generated load, events/s")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--load-seconds", type=float, default=90.0, help="load after the stream's first batch")
    p.add_argument("--settle-s", type=float, default=15.0, help="load before the fault")
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--clickhouse-down-s", type=float, default=120.0)
    p.add_argument("--disk-mb", type=int, default=128)
    p.add_argument("--disk-full-s", type=float, default=600.0, help="full until the stream fails, at most this")
    p.add_argument("--drift-records", type=int, default=200)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--api-seconds", type=float, default=60.0)
    p.add_argument("--startup-timeout", type=float, default=600.0)
    p.add_argument("--drain-timeout", type=float, default=600.0)
    p.add_argument("--recompute-timeout", type=float, default=900.0)
    p.add_argument("--stack-timeout", type=float, default=300.0)
    args = p.parse_args()
    names = [d.strip() for d in args.drills.split(",") if d.strip()]
    unknown = [d for d in names if d not in DRILLS]
    if unknown:
        p.error(f"unknown drills {unknown}; choose from {', '.join(DRILLS)}")
    base_env = benchkit.bench_env(
        "drills", "tidemark_drills", PORTS, TIDEMARK_STARTING_OFFSETS="earliest", TIDEMARK_LOG_LEVEL="INFO",
        TIDEMARK_LOG_FORMAT="json", SPARK_LOCAL_IP=os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        PYTHONUNBUFFERED="1",
    )  # fmt: skip
    benchkit.use_env(base_env)
    benchkit.load_average()
    from tidemark.config import load

    stack = benchkit.Stack(load(), args.stack_timeout)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    failed = False
    try:
        stack.up()
        for name in names:
            line = run_drill(name, args, base_env)
            failed |= line["status"] != "ok"
            print(json.dumps(line, separators=(",", ":"), default=str), flush=True)
    finally:
        benchkit.use_env(base_env)
        stack.down()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
