"""Speed-layer throughput and freshness: a rate ladder through the real stream job.

Starts the stream (`tidemark stream` -> spark-submit, in its own process group) on a fresh
topic, checkpoint and lake under a temp directory, warms it up, then runs the generator in
realtime at each rate of a ladder for --step-seconds. For the micro-batches committed during
each step it reports, from ClickHouse (stream_batches / stream_progress):

* freshness p50/p95/p99 (commit time minus event time; see ``mixture_quantiles``),
* processed rows/s (committed rows / step wall time) and Spark's capacity (rows / batch time),
* consumer lag at step end and its trend, the drain time after the step,
* the per-phase timings of the 'batch committed' log lines (read_validate_dedup_ms, delta_ms,
  rollups_ms, clickhouse_ms) and CPU seconds per process kind: what bounds the stream.

A step is *sustained* when the lag is not growing, freshness p95 <= --max-p95 (10 s) and the
stream committed >= 90 % of what the generator actually sent. After an unsustained step the
ladder stops (unless --keep-going): the backlog would spill into the next step.

Needs the stack (`tidemark stack up`). Prints progress lines on stderr and a final JSON line:
  {"bench":"stream_throughput","steps":[...],"max_sustained_ev_s":...,"freshness_at_5k":{...}}

    python bench/stream_throughput.py [--rates 2000,5000,10000,20000] [--step-seconds 120]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tidemark.config import load  # noqa: E402

PHASES = ("read_validate_dedup_ms", "delta_ms", "rollups_ms", "clickhouse_ms")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------

def mixture_quantiles(batches: list[dict], qs=(0.5, 0.95, 0.99)) -> dict[str, float | None]:
    """Event-level freshness quantiles from per-batch (p50, p95, max), weighted by rows.

    Each batch's freshness distribution is modelled by a piecewise-linear quantile function
    through (0, max(0, 2*p50 - p95)), (0.5, p50), (0.95, p95), (1, max); the step's
    distribution is the row-weighted mixture, whose quantiles are found by bisection.
    """
    parts = []
    for b in batches:
        w = b["valid_rows"] - b["late_rows"]
        if w <= 0:
            continue
        p50, p95 = b["freshness_p50_s"], b["freshness_p95_s"]
        mx = max(b["freshness_max_s"], p95)
        parts.append((w, [(0.0, max(0.0, 2 * p50 - p95)), (0.5, p50), (0.95, p95), (1.0, mx)]))
    if not parts:
        return {f"p{round(q * 100)}": None for q in qs}
    total = sum(w for w, _ in parts)

    def cdf_one(x, pts):
        if x < pts[0][1]:
            return 0.0
        for (u0, x0), (u1, x1) in zip(pts, pts[1:]):
            if x <= x1:
                return u1 if x1 == x0 else u0 + (u1 - u0) * (x - x0) / (x1 - x0)
        return 1.0

    def cdf(x):
        return sum(w * cdf_one(x, pts) for w, pts in parts) / total

    hi = max(pts[-1][1] for _, pts in parts)
    out = {}
    for q in qs:
        lo_x, hi_x = 0.0, hi
        for _ in range(60):
            mid = (lo_x + hi_x) / 2
            if cdf(mid) >= q:
                hi_x = mid
            else:
                lo_x = mid
        out[f"p{round(q * 100)}"] = round(hi_x, 2)
    return out


def plain_quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope (units of y per second)."""
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(y for _, y in samples) / n
    den = sum((t - mx) ** 2 for t, _ in samples)
    return 0.0 if den == 0 else sum((t - mx) * (y - my) for t, y in samples) / den


# --------------------------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------------------------

def kill_group(proc: subprocess.Popen | None, first=signal.SIGTERM, timeout: float = 60) -> None:
    if proc is None:
        return
    from tidemark.stack.process import group_members

    for sig, wait_s in ((first, timeout), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is not None and not group_members(proc.pid):
                return
            time.sleep(0.2)
    proc.poll()


class CpuMeter:
    """CPU seconds by process kind (own + reaped children), sampled at step boundaries.

    The stream's processes are its descendants (pyspark daemons start their own process
    groups, so the group alone would miss the Python workers)."""

    def __init__(self, stream_pid: int, service_pids: dict[str, int]):
        self.stream_pid = stream_pid
        self.service_pids = service_pids
        self.generator_pid: int | None = None

    @staticmethod
    def _stream_kind(cmd: str, name: str) -> str:
        if name == "java" or "org.apache.spark" in cmd:
            return "spark_jvm"
        if "stream_events.py" in cmd:
            return "py_driver"
        if "python_streaming_source_runner" in cmd:
            return "py_source_planner"
        if "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
            return "py_workers"
        return "py_cli"

    def sample(self) -> dict[str, float]:
        import psutil

        procs: list[tuple[str, psutil.Process]] = []
        try:
            root = psutil.Process(self.stream_pid)
            for p in [root, *root.children(recursive=True)]:
                try:
                    procs.append((self._stream_kind(" ".join(p.cmdline()), p.name()), p))
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        roots = dict(self.service_pids)
        if self.generator_pid is not None:
            roots["generator"] = self.generator_pid
        for kind, pid in roots.items():
            try:
                root = psutil.Process(pid)
                procs += [(kind, p) for p in [root, *root.children(recursive=True)]]
            except psutil.Error:
                continue
        out: dict[str, float] = {}
        for kind, proc in procs:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            out[kind] = out.get(kind, 0.0) + t.user + t.system + t.children_user + t.children_system
        return out

    @staticmethod
    def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: round(max(0.0, b.get(k, 0.0) - a.get(k, 0.0)), 1) for k in sorted(set(a) | set(b))}


def descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


# --------------------------------------------------------------------------------------------
# the bench
# --------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.id = uuid.uuid4().hex[:8]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"tidemark-bench-stream-{self.id}-"))
        self.topic = f"bench_stream_{self.id}"
        self.env = {**os.environ, "TIDEMARK_TOPIC": self.topic,
                    "TIDEMARK_LAKE_ROOT": str(self.workdir / "lake"),
                    "TIDEMARK_CHECKPOINT_ROOT": str(self.workdir / "checkpoints"),
                    "TIDEMARK_LOG_LEVEL": "INFO", "TIDEMARK_LOG_FORMAT": "json",
                    "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")}
        if args.trigger_seconds:
            self.env["TIDEMARK_TRIGGER_SECONDS"] = str(args.trigger_seconds)
        if args.max_offsets_per_trigger:
            self.env["TIDEMARK_MAX_OFFSETS_PER_TRIGGER"] = str(args.max_offsets_per_trigger)
        saved = dict(os.environ)
        try:
            os.environ.update(self.env)
            self.cfg = load()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.stream: subprocess.Popen | None = None
        self.generator: subprocess.Popen | None = None
        self.log_path = self.workdir / "stream.log"
        self._local = threading.local()
        self._wm = None
        self._wm_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------
    def ch(self):
        from tidemark.io.clickhouse import client

        # one connection per thread: clickhouse-driver clients are not thread-safe
        if getattr(self._local, "ch", None) is None:
            self._local.ch = client(self.cfg.clickhouse)
        return self._local.ch

    def query(self, sql: str, params: dict | None = None):
        try:
            return self.ch().execute(sql, params or {})
        except Exception:
            self._local.ch = None
            return self.ch().execute(sql, params or {})

    def preflight(self) -> str | None:
        from tidemark.io.kafka_admin import broker_reachable

        if not broker_reachable(self.cfg.kafka.bootstrap_servers):
            return f"no Kafka broker answers at {self.cfg.kafka.bootstrap_servers}"
        try:
            self.query("SELECT 1")
            self.query(f"SELECT count() FROM {self.cfg.clickhouse.database}.stream_batches WHERE 0")
        except Exception as exc:  # noqa: BLE001
            return (f"ClickHouse at {self.cfg.clickhouse.address} (database {self.cfg.clickhouse.database}) "
                    f"does not answer or is not migrated: {str(exc).splitlines()[0][:200]}")
        return None

    def start_stream(self) -> None:
        from tidemark.io.kafka_admin import ensure_topic
        from tidemark.streaming import STREAM_NAME, StreamIdentity

        ensure_topic(self.cfg.kafka.bootstrap_servers, self.topic, self.cfg.kafka.partitions)
        self.ident = StreamIdentity.load_or_create(f"{self.cfg.spark.checkpoint_root}/{STREAM_NAME}")
        log = open(self.log_path, "ab")
        self.stream = subprocess.Popen([sys.executable, "-m", "tidemark.cli", "stream"], env=self.env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                       cwd=str(Path(__file__).resolve().parent.parent))
        log.close()
        say(f"stream started: pid {self.stream.pid}, topic {self.topic}, stream_id {self.ident.stream_id}, "
            f"trigger {self.cfg.spark.trigger_seconds}s, workdir {self.workdir}")

    def start_generator(self, rate: float, seconds: float, seed: int, tag: str) -> tuple[subprocess.Popen, Path]:
        manifest = self.workdir / f"manifest-{tag}.json"
        out = open(self.workdir / f"generate-{tag}.out", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "tidemark.cli", "generate", "--topic", self.topic,
                                 "--rate", str(rate), "--duration", str(seconds), "--seed", str(seed),
                                 "--no-progress", "--manifest", str(manifest)],
                                env={**self.env, "TIDEMARK_LOG_LEVEL": "WARNING"}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.generator = proc
        return proc, self.workdir / f"generate-{tag}.out"

    def check_stream_alive(self) -> None:
        if self.stream is not None and self.stream.poll() is not None:
            raise RuntimeError(f"stream exited with {self.stream.returncode}; log tail:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    # -- ClickHouse reads -------------------------------------------------------------------
    def batches(self, since: datetime | None = None) -> list[dict]:
        db = self.cfg.clickhouse.database
        rows = self.query(
            f"SELECT batch_id, committed_at, valid_rows, late_rows, rejected_rows, processing_ms, "
            f"freshness_p50_s, freshness_p95_s, freshness_max_s FROM {db}.stream_batches "
            f"WHERE stream_id = %(s)s ORDER BY batch_id", {"s": self.ident.stream_id})
        cols = ("batch_id", "committed_at", "valid_rows", "late_rows", "rejected_rows", "processing_ms",
                "freshness_p50_s", "freshness_p95_s", "freshness_max_s")
        out = [dict(zip(cols, r)) for r in rows]
        for b in out:
            b["committed_at"] = utc(b["committed_at"])
        return [b for b in out if since is None or b["committed_at"] >= since]

    def progress(self) -> list[dict]:
        db = self.cfg.clickhouse.database
        rows = self.query(
            f"SELECT batch_id, reported_at, input_rows, duration_ms, consumer_lag, end_offsets, duplicates_dropped "
            f"FROM {db}.stream_progress WHERE stream_id = %(s)s ORDER BY batch_id", {"s": self.ident.stream_id})
        cols = ("batch_id", "reported_at", "input_rows", "duration_ms", "consumer_lag", "end_offsets",
                "duplicates_dropped")
        out = [dict(zip(cols, r)) for r in rows]
        for p in out:
            p["reported_at"] = utc(p["reported_at"])
        return out

    def lag_now(self) -> int | None:
        """High watermarks now minus the offsets the stream has processed (last progress row).

        One long-lived watermark reader (fetch at the last known end): a fresh consumer would
        issue ListOffsets each time, which costs the embedded broker (tansu on s3rver) a listing
        of every object of the partition and would load the system under test."""
        from tidemark.io.kafka_source import _Watermarks

        prog = self.progress()
        offsets = {}
        if prog and prog[-1]["end_offsets"]:
            offsets = {int(k): int(v) for k, v in json.loads(prog[-1]["end_offsets"]).items()}
        with self._wm_lock:
            try:
                if self._wm is None:
                    self._wm = _Watermarks(self.cfg.kafka.bootstrap_servers, self.topic, {},
                                           client_id="tidemark-bench-lag")
                ends = {p: hi for p, (_, hi) in self._wm.get().items()}
            except Exception:  # noqa: BLE001
                if self._wm is not None:
                    self._wm.close()
                self._wm = None
                return None
        return sum(max(0, hi - offsets.get(p, 0)) for p, hi in ends.items())

    def phase_lines(self, t0: datetime, t1: datetime) -> list[dict]:
        out = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"batch committed"' not in line:
                continue
            try:
                doc = json.loads(line)
                ts = datetime.strptime(doc["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
            except (ValueError, KeyError):
                continue
            if t0 <= ts < t1:
                out.append(doc)
        return out

    # -- phases -----------------------------------------------------------------------------
    def wait_drained(self, timeout: float, what: str) -> tuple[bool, float]:
        """Wait until the lag is ~0 (at most one trigger of traffic behind)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            self.check_stream_alive()
            lag = self.lag_now()
            if lag is not None and lag == 0:
                return True, time.monotonic() - start
            time.sleep(1.0)
        return False, time.monotonic() - start

    def warmup(self) -> None:
        a = self.args
        say(f"warm-up: {a.warmup_rate:.0f} ev/s for {a.warmup_seconds:.0f}s while the JVM starts")
        proc, out = self.start_generator(a.warmup_rate, a.warmup_seconds, 7, "warmup")
        deadline = time.monotonic() + a.startup_timeout
        while proc.poll() is None:
            self.check_stream_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("warm-up generator did not finish")
            time.sleep(1)
        if proc.returncode != 0:
            raise RuntimeError(f"warm-up generator failed: {out.read_text()[-2000:]}")
        while not self.batches():
            self.check_stream_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no micro-batch committed within {a.startup_timeout:.0f}s; log tail:\n"
                                   f"{self.log_tail()}")
            time.sleep(1)
        ok, waited = self.wait_drained(max(30.0, deadline - time.monotonic()), "warm-up")
        if not ok:
            raise RuntimeError("stream did not drain the warm-up traffic")
        say(f"warm-up done: {len(self.batches())} batches committed, lag 0 (drained in {waited:.0f}s)")

    def step(self, index: int, rate: float, meter: CpuMeter) -> dict:
        a = self.args
        seconds = a.step_seconds
        say(f"step {index + 1}: {rate:.0f} ev/s for {seconds:.0f}s")
        cpu0 = meter.sample()
        t0 = datetime.now(timezone.utc)
        m0 = time.monotonic()
        proc, out = self.start_generator(rate, seconds, 1000 + index, f"step{index + 1}")
        meter.generator_pid = proc.pid
        lag_samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sampler():
            while not stop.is_set():
                lag = self.lag_now()
                if lag is not None:
                    lag_samples.append((time.monotonic() - m0, float(lag)))
                stop.wait(a.sample_seconds)

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        last_print = time.monotonic()
        cpu_gen: dict[str, float] = {}
        try:
            while proc.poll() is None:
                cpu_gen = {k: v for k, v in meter.sample().items() if k == "generator"} or cpu_gen
                self.check_stream_alive()
                if time.monotonic() - m0 > seconds + 120:
                    raise RuntimeError("generator ran 2 minutes past its duration")
                time.sleep(0.5)
                if time.monotonic() - last_print >= a.print_seconds:
                    last_print = time.monotonic()
                    bs = self.batches(since=t0)
                    recent = bs[-5:]
                    lag = lag_samples[-1][1] if lag_samples else None
                    say(f"  t+{time.monotonic() - m0:4.0f}s batches={len(bs)} rows={sum(b['valid_rows'] for b in bs)} "
                        f"fresh_p95(last5)={max((b['freshness_p95_s'] for b in recent), default=0):.1f}s "
                        f"lag={lag if lag is None else int(lag)}")
        finally:
            stop.set()
            th.join(timeout=30)
        t1 = datetime.now(timezone.utc)
        wall = time.monotonic() - m0
        cpu1 = meter.sample()
        cpu1.update({k: v for k, v in cpu_gen.items()})
        meter.generator_pid = None
        self.generator = None
        gen_text = out.read_text(errors="replace")
        gen = {}
        for line in gen_text.splitlines():
            if line.startswith("{") and '"messages_sent"' in line:
                gen = json.loads(line)
        if proc.returncode != 0 or not gen:
            raise RuntimeError(f"generator failed ({proc.returncode}): {gen_text[-2000:]}")
        lag_end = self.lag_now()
        # drain: how long until the stream caught up (not counted in the step's figures)
        drained, drain_s = self.wait_drained(a.drain_timeout, f"step {index + 1}")

        settle = min(a.settle_seconds, seconds / 4)
        since = datetime.fromtimestamp(t0.timestamp() + settle, timezone.utc)
        bs = [b for b in self.batches(since=since) if b["committed_at"] < t1]
        prog = [p for p in self.progress() if since <= p["reported_at"] < t1]
        fresh = mixture_quantiles(bs)
        committed = sum(b["valid_rows"] + b["rejected_rows"] for b in bs)
        window = max(1e-6, (t1 - since).total_seconds())
        processed_s = committed / window
        in_rows = sum(p["input_rows"] for p in prog)
        busy_s = sum(p["duration_ms"] for p in prog) / 1000
        sent_rate = gen["messages_sent"] / gen["seconds"] if gen.get("seconds") else None
        offered = min(rate, sent_rate or rate)
        second_half = [(t, y) for t, y in lag_samples if t >= wall / 2]
        growth = slope(second_half)
        lag_growing = growth > 0.05 * offered and (lag_end or 0) > 2 * offered * self.cfg.spark.trigger_seconds
        p95 = fresh["p95"]
        sustained = (bool(bs) and not lag_growing and p95 is not None and p95 <= a.max_p95
                     and processed_s >= 0.9 * offered and drained)
        lines = self.phase_lines(since, t1)
        phases = {}
        if lines:
            total_ms = sum(d.get("ms", 0) for d in lines)
            for name in (*PHASES, "ms"):
                vals = [d.get(name, 0) for d in lines]
                phases[name.replace("_ms", "") if name != "ms" else "batch"] = {
                    "mean_ms": round(sum(vals) / len(vals)), "p95_ms": round(plain_quantile(vals, 0.95)),
                    **({"share": round(sum(vals) / total_ms, 3)} if name != "ms" and total_ms else {})}
        cpu = CpuMeter.diff(cpu0, cpu1)
        result = {
            "rate_ev_s": rate,
            "seconds": round(wall, 1),
            "sent": gen["messages_sent"],
            "sent_ev_s": round(sent_rate) if sent_rate else None,
            "generator_bound": bool(sent_rate and sent_rate < 0.95 * rate),
            "batches": len(bs),
            "freshness_s": fresh,
            "freshness_batch_p95_max_s": round(max((b["freshness_p95_s"] for b in bs), default=0.0), 2),
            "freshness_max_s": round(max((b["freshness_max_s"] for b in bs), default=0.0), 2),
            "processed_rows_s": round(processed_s),
            "capacity_rows_s": round(in_rows / busy_s) if busy_s else None,
            "busy_fraction": round(busy_s / window, 2),
            "batch_rows_mean": round(in_rows / len(prog)) if prog else 0,
            "batch_ms_mean": round(busy_s * 1000 / len(prog)) if prog else 0,
            "lag_end": lag_end,
            "lag_growth_ev_s": round(growth, 1),
            "lag_max": int(max((y for _, y in lag_samples), default=0)),
            "drain_s": round(drain_s, 1) if drained else None,
            "sustained": sustained,
            "phases": phases,
            "cpu_s": cpu,
        }
        f = result["freshness_s"]
        say(f"step {index + 1} done: {rate:.0f} ev/s (sent {result['sent_ev_s']}/s) -> processed "
            f"{result['processed_rows_s']}/s, capacity {result['capacity_rows_s']}/s, busy {result['busy_fraction']:.0%}, "
            f"freshness p50/p95/p99 {f['p50']}/{f['p95']}/{f['p99']}s, lag end {lag_end} "
            f"(growth {growth:.0f}/s), drain {result['drain_s']}s -> {'SUSTAINED' if sustained else 'NOT sustained'}")
        if phases:
            say("  phases (mean ms/batch): " + ", ".join(f"{k}={v['mean_ms']}" for k, v in phases.items())
                + f"; cpu s: {cpu}")
        return result

    def cleanup(self) -> None:
        kill_group(self.generator, signal.SIGKILL, 10)
        if self._wm is not None:
            self._wm.close()
            self._wm = None
        if self.stream is not None:
            say("stopping the stream (SIGTERM to its process group)")
            # pyspark daemons run in process groups of their own: remember them to reap stragglers
            children = descendants(self.stream.pid)
            kill_group(self.stream, signal.SIGTERM, 60)
            deadline = time.monotonic() + 15
            while any(c.is_running() and c.status() != "zombie" for c in children) and time.monotonic() < deadline:
                time.sleep(0.2)
            for c in children:
                try:
                    if c.is_running() and c.status() != "zombie":
                        c.kill()
                except Exception:  # noqa: BLE001
                    pass
        try:
            from kafka.admin import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=self.cfg.kafka.bootstrap_servers)
            admin.delete_topics([self.topic])
            admin.close()
        except Exception as exc:  # noqa: BLE001
            say(f"topic {self.topic}: delete answered {type(exc).__name__} (tansu may have deleted it anyway)")
        if self.args.keep_workdir:
            say(f"kept {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="2000,5000,10000,20000", help="comma-separated ev/s ladder")
    p.add_argument("--step-seconds", type=float, default=120.0)
    p.add_argument("--warmup-seconds", type=float, default=20.0)
    p.add_argument("--warmup-rate", type=float, default=1000.0)
    p.add_argument("--startup-timeout", type=float, default=240.0, help="JVM start + first batch")
    p.add_argument("--settle-seconds", type=float, default=5.0, help="ignore this start of each step")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="wait for the lag to reach 0 after a step")
    p.add_argument("--sample-seconds", type=float, default=3.0, help="consumer-lag sampling interval")
    p.add_argument("--print-seconds", type=float, default=15.0)
    p.add_argument("--max-p95", type=float, default=10.0, help="freshness p95 bound for 'sustained'")
    p.add_argument("--trigger-seconds", type=float, help="override TIDEMARK_TRIGGER_SECONDS")
    p.add_argument("--max-offsets-per-trigger", type=int, help="override TIDEMARK_MAX_OFFSETS_PER_TRIGGER")
    p.add_argument("--keep-going", action="store_true", help="continue the ladder after an unsustained step")
    p.add_argument("--keep-workdir", action="store_true")
    p.add_argument("--profile", action="store_true",
                   help="also record py-spy flame graphs of the stream per step (needs py-spy on PATH); "
                        "per-phase timings and CPU by process kind are always reported")
    args = p.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]

    bench = Bench(args)
    problem = bench.preflight()
    if problem:
        shutil.rmtree(bench.workdir, ignore_errors=True)
        print(f"error: {problem}. Start the embedded stack with `tidemark stack up` "
              "(or point KAFKA_BOOTSTRAP_SERVERS / CLICKHOUSE_HOST at running services).", file=sys.stderr)
        return 2
    pyspy = shutil.which("py-spy") if args.profile else None
    if args.profile and not pyspy:
        say("--profile: py-spy is not installed; reporting phase timings and CPU by process kind only")

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    steps: list[dict] = []
    load1 = os.getloadavg()[0]
    try:
        bench.start_stream()
        bench.warmup()
        services = {}
        for name in ("broker", "s3", "clickhouse"):
            pid_file = bench.cfg.run_dir / f"{name}.pid"
            if pid_file.exists():
                services[name] = int(pid_file.read_text().split()[0])
        meter = CpuMeter(bench.stream.pid, services)
        for i, rate in enumerate(rates):
            spy = None
            if pyspy:
                svg = bench.workdir / f"pyspy-step{i + 1}.svg"
                spy = subprocess.Popen([pyspy, "record", "--subprocesses", "--nonblocking", "-p", str(bench.stream.pid),
                                        "-d", str(int(args.step_seconds)), "-o", str(svg)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                result = bench.step(i, rate, meter)
            finally:
                kill_group(spy, signal.SIGINT, 30)
            if spy is not None:
                result["pyspy_svg"] = str(bench.workdir / f"pyspy-step{i + 1}.svg")
                args.keep_workdir = True
            steps.append(result)
            if not result["sustained"] and not args.keep_going and i + 1 < len(rates):
                say(f"stopping the ladder: {rate:.0f} ev/s was not sustained")
                break
    except KeyboardInterrupt:
        say("interrupted")
    except Exception as exc:  # noqa: BLE001
        say(f"bench failed: {exc}")
        bench.cleanup()
        return 1
    bench.cleanup()

    sustained = [s["rate_ev_s"] for s in steps if s["sustained"]]
    at5k = next((s for s in steps if s["rate_ev_s"] == 5000), None)
    print(json.dumps({
        "bench": "stream_throughput",
        "steps": steps,
        "max_sustained_ev_s": max(sustained) if sustained else None,
        "freshness_at_5k": at5k["freshness_s"] if at5k else None,
        "trigger_seconds": bench.cfg.spark.trigger_seconds,
        "spark_master": bench.cfg.spark.master,
        "cpus": os.cpu_count(),
        "loadavg_at_start": round(load1, 2),
        "notes": "freshness = commit time - event time over on-time events; generator event times lag "
                 "their send time by 0-5 s, which is included",
    }, separators=(",", ":")))
    return 0 if steps else 1


if __name__ == "__main__":
    sys.exit(main())
