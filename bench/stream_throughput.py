"""Speed-layer throughput and freshness: a rate ladder through the real stream job, measured.

What every bench shares (its own environment, CPU accounting over /proc, stopping a process tree,
waiting until the stream has consumed the topic) is in ``bench/benchkit.py``, over the library's own
code; this file keeps the measurement: the generator child, the ladder, and what it reads from the
stream's log and tables.

What runs
  Its own stack and state, never the demo's or the tests': TIDEMARK_HOME ``.tidemark/bench``, ClickHouse
  database ``tidemark_bench``, ports 19292/19293 (Kafka client/controller), 19300/18423/19309 (ClickHouse
  native/HTTP/interserver), 16679 (Redis); each can be moved with ``BENCH_<VARIABLE>`` (e.g.
  ``BENCH_TIDEMARK_KAFKA_PORT=19392``). If a service of that stack does not answer, the bench runs
  ``tidemark stack up`` under that home and stops, at the end, what it started (``tidemark stack down``
  with the same environment). A fresh topic, lake and checkpoint live under a temp directory; the topic
  is deleted at the end, the bench database is kept for inspection unless ``--clean``.
  The stream is ``tidemark stream`` (spark-submit, Spark's ``kafka`` source, delta-spark) in its own
  process group with TIDEMARK_LOG_LEVEL=INFO. A warm-up sends ``--warmup-rate`` until
  ``--warmup-batches`` data batches have committed after the first one (Spark start, first Delta and
  ClickHouse writes), then goes on until the stream JVM's JIT threads use under ``--warmup-jit-cores``
  (0.35) over ``--warmup-jit-window`` seconds, at most ``--warmup-jit-seconds`` (480; HotSpot compiles
  Spark's hot code for minutes after a start, a cost a long-running stream does not pay; what the
  warm-up reached is in ``config.warmup``), and lets the stream catch up. Then each step of the ladder
  runs the generator (tidemark.generator on librdkafka) paced in real time at the step's rate for
  ``--step-seconds``, and waits until the stream has committed everything in the topic (the drain) before the next step.

What is measured, per step
  * sent: events the broker acked / the generator's own send wall time (first record handed to the
    producer to last ack; ``timings`` of tidemark.generator.produce).
  * processed: records of the micro-batches committed inside the measurement window / the window's
    length (commit instants from the stream's "batch committed" log lines, ms precision). Records =
    valid + rejected rows of ``stream_batches`` plus the duplicates the batch dropped
    (``stream_progress``), i.e. the same unit as the Kafka records sent; over the step and its drain
    they are cross-checked against the Kafka offsets the stream committed. The measurement window is
    [send start + ``--settle-seconds`` (at most a quarter of the step), send end]: the settle time
    skips the pipeline's fill-up, so a steady stream is not penalised for the events still in flight
    at the end. Batch granularity makes this exact to about one batch's rows at each end of the window.
    ``capacity_ev_s`` (records per second of batch time) says how fast the stream goes while busy.
  * consumer lag: sampled every ``--sample-seconds`` as the topic's end offsets (ListOffsets) minus the
    offsets of the stream's last committed batch (``stream_progress.end_offsets``); its least-squares
    slope over the measurement window says whether the backlog grows.
  * drain: seconds from the generator's last ack until the stream has committed every offset the topic
    held then (as ``tidemark.stream.reconcile.wait_until_consumed`` does).
  * freshness p50/p95/p99/max: event-level, from the per-batch histograms (``stream_batches.freshness_ms``
    / ``freshness_events``, 100 ms steps, event time to the batch's commit) of every batch committed
    from the step's start through the end of its drain, via ``quantilesExactWeighted``: measured, not
    modelled. The generator runs with ``--ontime-max-lateness-ms`` 0 by default (on-time events carry
    event time = send time, and the pacer is aligned to the wall clock so send time is the real send
    instant): freshness is then the pipeline's own producer-to-queryable latency. Pass e.g. 5000 to
    include a simulated 0-5 s client delay, as `tidemark generate` does by default.
  * CPU seconds by process during the step, from /proc/<pid>/stat utime+stime deltas: ``broker`` (the
    bench's kafka.Kafka JVM), ``spark_jvm`` (the stream's spark-submit java), ``py_driver``
    (stream_events.py: foreachBatch, ClickHouse writes), ``py_workers`` (pyspark.daemon/worker
    descendants of the stream), ``clickhouse`` (the bench's clickhouse-server), ``generator`` (its own
    getrusage at exit, librdkafka threads included), ``bench`` (this monitor), ``other`` (everything else
    on the machine: the box is shared) and ``machine_busy`` (/proc/stat), from ``benchkit.CpuMeter``
    sampling every ``--sample-seconds``: processes that exit between two samples lose at most one
    sampling interval of CPU. ``spark_jit`` is the part of ``spark_jvm`` its JIT compiler threads used
    (/proc/<pid>/task/*/comm "C1/C2 CompilerThre"): HotSpot compiling, not Spark working.
  * phases: mean ms per batch of read_validate_dedup / delta / rollups / clickhouse, and ``codegen`` /
    ``codegen_classes``: Janino's compile time and classes generated during the batch (the "batch
    committed" log lines) and Spark's own overhead (stream_progress triggerExecution minus foreachBatch),
    over the batches of the measurement window: with the CPU split, what bounds the stream.

How "sustained" is decided (the criterion is also in the JSON)
  sent_ev_s >= 0.95 x target AND processed_ev_s >= 0.95 x target over the measurement window, AND the
  lag slope <= ``--max-lag-slope`` x target (events/s per s: the backlog does not grow), AND the drain
  finished within ``--drain-timeout``, AND the step lasted >= ``--min-sustain-seconds`` (120 s by
  default: a short step proves nothing). After a step the stream could not keep up with (processed or
  lag check failed, or no drain) the ladder stops, unless ``--keep-going``.

Goals (in "goals"): freshness p95 <= 5 s at 5000 ev/s (judged on the 5000 ev/s step, which must be
sustained), and >= 20000 ev/s sustained with freshness p95 <= 10 s.

Progress lines go to stderr about every ``--print-seconds``; the result is one JSON line on stdout:
  {"bench":"stream_throughput","steps":[{...}],"max_sustained_ev_s":...,"goals":{...},"bounds":"...",
   "criterion":{...},"env":{...}}
Ctrl-C / SIGTERM stop the generator and the stream (its whole process tree), delete the topic, stop
what the bench started, and still print the JSON of the finished steps (exit 130).

    .venv/bin/python bench/stream_throughput.py [--rates 5000,10000,20000] [--step-seconds 120]
    .venv/bin/python bench/stream_throughput.py --rate-5k-check        # just the 5000 ev/s step
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import benchkit
from benchkit import say

from tidemark.stack.process import ProcInfo, cmdline, descendants

PROJECT = benchkit.ROOT
# The bench's own stack: distinct from the demo's (19092..) and the tests' (19192..).
PORTS = {
    "TIDEMARK_KAFKA_PORT": 19292,
    "TIDEMARK_KAFKA_CONTROLLER_PORT": 19293,
    "CLICKHOUSE_PORT": 19300,
    "CLICKHOUSE_HTTP_PORT": 18423,
    "CLICKHOUSE_INTERSERVER_PORT": 19309,
    "TIDEMARK_REDIS_PORT": 16679,
}

PHASES = ("read_validate_dedup_ms", "delta_ms", "rollups_ms", "clickhouse_ms", "codegen_ms", "codegen_classes")
CPU_KINDS = (
    "broker",
    "spark_jvm",
    "py_driver",
    "py_workers",
    "stream_other",
    "clickhouse",
    "generator",
    "bench",
    "other",
)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def slope(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t, y) samples, y units per second."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    my = sum(y for _, y in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    return None if den == 0 else sum((t - mt) * (y - my) for t, y in samples) / den


class Interrupted(BaseException):
    """SIGINT/SIGTERM: unwind to the cleanup."""


def stream_kind(cmd: str) -> str:
    """The kind of a process of the stream's tree, by its command line."""
    if "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
        return "py_workers"
    if "stream_events.py" in cmd and "java" not in cmd.split(" ", 1)[0]:
        return "py_driver"
    if cmd.split(" ", 1)[0].endswith("java"):
        return "spark_jvm"
    return "stream_other"


# --------------------------------------------------------------------------------------------
# the generator, run as a child of this script (so its send/ack timings and CPU can be reported)
# --------------------------------------------------------------------------------------------


def generator_child(spec: dict) -> int:
    """``--generator-child SPEC``: tidemark.generator.produce.run, realtime, printing one JSON line with
    messages sent, the producer's send/ack timings, the send interval in epoch seconds and its CPU."""
    import logging

    from tidemark.config import settings
    from tidemark.generator import produce

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    info: dict = {}

    class WallClockPacer(produce._Pacer):
        """The generator's pacer, aligned to the wall clock: record i leaves at its own timestamp (the
        stock pacer starts its clock after setup, so every record would leave up to ~1 s after its
        timestamp and freshness would include that offset)."""

        def __init__(self, start_ms, rate, sleep=time.sleep):
            super().__init__(start_ms, rate, sleep)
            behind = time.time() - start_ms / 1000.0
            self.wall0 = time.monotonic() - behind
            info["clock_offset_s"] = round(behind, 3)
            info["send_start_epoch"] = time.time()

    produce._Pacer = WallClockPacer
    stock_resolve = produce.resolve

    def resolve_now(options, partitions, cfg):
        """Start the simulated clock when the plan is made, after the producer's setup (the stock
        default floors "now" to the second, a fixed 0-1 s offset between timestamps and sends)."""
        options.start_time = datetime.now(timezone.utc)
        return stock_resolve(options, partitions, cfg)

    produce.resolve = resolve_now
    timings: dict = {}
    options = produce.GenerateOptions(
        rate=spec["rate"],
        duration=spec["seconds"],
        seed=spec["seed"],
        topic=spec["topic"],
        start_time=datetime.now(timezone.utc),
        realtime=True,
        progress=False,
        timings=timings,
        ontime_max_lateness_ms=spec["ontime_max_lateness_ms"],
    )
    manifest = produce.run(options, settings())
    t = os.times()
    start = info.get("send_start_epoch")
    print(
        json.dumps(
            {
                "messages_sent": manifest["messages_sent"],
                "valid_events": manifest["valid_events"],
                "late_events": manifest["late_events"],
                "duplicates_sent": manifest["duplicates_sent"],
                "malformed": sum(manifest["malformed"].values()),
                "send_seconds": timings.get("send_seconds"),
                "ack_seconds": timings.get("ack_seconds"),
                "records": timings.get("records"),
                "clock_offset_s": info.get("clock_offset_s"),
                "send_start_epoch": start,
                "send_end_epoch": start + timings["send_seconds"] if start and "send_seconds" in timings else None,
                "ack_end_epoch": start + timings["ack_seconds"] if start and "ack_seconds" in timings else None,
                "cpu_s": round(t.user + t.system, 2),
            }
        ),
        flush=True,
    )
    return 0


# --------------------------------------------------------------------------------------------
# the bench
# --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.id = uuid.uuid4().hex[:8]
        self.topic = f"bench_stream_{self.id}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"tidemark-bench-stream-{self.id}-"))
        env = benchkit.bench_env(
            "bench",
            "tidemark_bench",
            PORTS,
            TIDEMARK_TOPIC=self.topic,
            TIDEMARK_LAKE_ROOT=str(self.workdir / "lake"),
            TIDEMARK_CHECKPOINT_ROOT=str(self.workdir / "checkpoints"),
            TIDEMARK_STARTING_OFFSETS="earliest",
            TIDEMARK_LOG_LEVEL="INFO",
            TIDEMARK_LOG_FORMAT="json",
            SPARK_LOCAL_IP=os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
            PYTHONUNBUFFERED="1",
        )
        if args.trigger_seconds:
            env["TIDEMARK_TRIGGER_SECONDS"] = str(args.trigger_seconds)
        if args.max_offsets_per_trigger:
            env["TIDEMARK_MAX_OFFSETS_PER_TRIGGER"] = str(args.max_offsets_per_trigger)
        # This process runs in the bench's environment too: tidemark.config reads os.environ.
        benchkit.use_env(env)
        from tidemark.config import load

        self.cfg = load()
        self.db = self.cfg.clickhouse.database
        self.stream: subprocess.Popen | None = None
        self.jit_warmup: dict = {}  # what the warm-up's JIT wait reached (warm_jit)
        self.generator: subprocess.Popen | None = None
        self.log_path = self.workdir / "stream.log"
        self._log_pos = 0
        self._log_tail = b""
        self.committed: dict[int, dict] = {}  # batch id -> its "batch committed" log line (+ "epoch")
        self._ch = None
        self.stack = benchkit.Stack(self.cfg, args.stack_timeout)
        self.ident = None
        self.broker_mark = str(self.cfg.home / "kafka" / "server.properties")
        self.clickhouse_mark = str(self.cfg.home / "clickhouse" / "config.xml")
        self._service_kind: dict[tuple[int, int], str | None] = {}  # (pid, start) -> kind, or None: not counted
        self.meter = benchkit.CpuMeter(self.classify, CPU_KINDS, every=args.sample_seconds)

    # -- ClickHouse / Kafka -------------------------------------------------------------------
    def query(self, sql: str, params: dict | None = None):
        from tidemark.io.clickhouse import client

        for attempt in (1, 2):
            try:
                if self._ch is None:
                    self._ch = client(self.cfg.clickhouse, connect_timeout=5, send_receive_timeout=30)
                return self._ch.execute(sql, params or {})
            except Exception:
                self._ch = None
                if attempt == 2:
                    raise

    # (imported here, not at the top: the generator child runs this file too, and its CPU is measured)
    def end_offsets(self) -> dict[int, int]:
        from tidemark.io.kafka_admin import end_offsets

        return end_offsets(self.cfg.kafka.bootstrap_servers, self.topic)

    def committed_offsets(self) -> dict[int, int]:
        """{partition: offset} of the stream's last committed batch (stream_progress)."""
        from tidemark.stream.identity import stream_offsets

        return stream_offsets(self.cfg, self.ident.stream_id, self.topic)

    def last_batch_id(self) -> int:
        rows = self.query(
            f"SELECT max(batch_id), count() FROM {self.db}.stream_batches WHERE stream_id = %(s)s",
            {"s": self.ident.stream_id},
        )
        return int(rows[0][0]) if rows and rows[0][1] else -1

    def batch_rows(self, lo: int, hi: int) -> dict[int, dict]:
        """stream_batches + stream_progress of batches lo < id <= hi."""
        p = {"s": self.ident.stream_id, "lo": lo, "hi": hi}
        out = {}
        for bid, valid, late, rejected, processing_ms in self.query(
            f"SELECT batch_id, valid_rows, late_rows, rejected_rows, processing_ms FROM {self.db}.stream_batches "
            f"WHERE stream_id = %(s)s AND batch_id > %(lo)s AND batch_id <= %(hi)s",
            p,
        ):
            out[int(bid)] = {
                "valid": valid,
                "late": late,
                "rejected": rejected,
                "processing_ms": processing_ms,
                "dups": 0,
                "input_rows": None,
                "trigger_ms": None,
            }
        for bid, dups, input_rows, duration_ms in self.query(
            f"SELECT batch_id, duplicates_dropped, input_rows, duration_ms FROM {self.db}.stream_progress "
            f"WHERE stream_id = %(s)s AND batch_id > %(lo)s AND batch_id <= %(hi)s",
            p,
        ):
            if int(bid) in out:
                out[int(bid)].update(dups=dups, input_rows=input_rows, trigger_ms=duration_ms)
        return out

    def freshness(self, lo: int, hi: int) -> dict:
        """Event-level freshness over batches lo < id <= hi, from their histograms (measured)."""
        ((q, mx, events, batches),) = self.query(
            f"SELECT quantilesExactWeighted(0.5, 0.95, 0.99)(f, n), max(f), sum(n), uniqExact(batch_id) "
            f"FROM {self.db}.stream_batches ARRAY JOIN freshness_ms AS f, freshness_events AS n "
            f"WHERE stream_id = %(s)s AND batch_id > %(lo)s AND batch_id <= %(hi)s AND n > 0",
            {"s": self.ident.stream_id, "lo": lo, "hi": hi},
        )
        if not events:
            return {"p50": None, "p95": None, "p99": None, "max": None, "events": 0, "batches": 0}
        return {
            "p50": round(q[0] / 1000, 2),
            "p95": round(q[1] / 1000, 2),
            "p99": round(q[2] / 1000, 2),
            "max": round(mx / 1000, 2),
            "events": int(events),
            "batches": int(batches),
        }

    def read_log(self) -> None:
        """Pick up new "batch committed" lines of the stream log (incrementally)."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_pos)
                chunk = fh.read()
        except OSError:
            return
        self._log_pos += len(chunk)
        lines = (self._log_tail + chunk).split(b"\n")
        self._log_tail = lines.pop()
        for raw in lines:
            if b'"batch committed"' not in raw:
                continue
            try:
                doc = json.loads(raw)
                doc["epoch"] = (
                    datetime.strptime(doc["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
                )
                self.committed[int(doc["batch_id"])] = doc
            except (ValueError, KeyError, TypeError):
                continue

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- processes ------------------------------------------------------------------------------
    def jit_s(self) -> float:
        """CPU seconds so far of the stream JVM's JIT compiler threads (a part of ``spark_jvm``)."""
        stream = self.stream
        if stream is None:
            return 0.0
        jvms = [pid for pid in descendants(stream.pid) if stream_kind(cmdline(pid)) == "spark_jvm"]
        return sum(benchkit.thread_cpu_s(pid, benchkit.JIT_THREADS) for pid in jvms)

    def classify(self, table: dict[int, ProcInfo]) -> dict[int, str]:
        """The CPU kind of each process to count: the stream's tree by command line (read again each
        time: its launcher exec()s into java), the bench's broker and ClickHouse, and this monitor."""
        stream = self.stream  # cleanup may clear it while the meter's thread looks
        kinds = {pid: stream_kind(cmdline(pid)) for pid in descendants(stream.pid, table)} if stream else {}
        for pid, info in table.items():
            if pid in kinds:
                continue
            key = (pid, info.start)
            if key not in self._service_kind:
                cmd = cmdline(pid)
                self._service_kind[key] = (
                    "broker"
                    if "kafka.Kafka" in cmd and self.broker_mark in cmd
                    else "clickhouse"
                    if "clickhouse" in cmd and self.clickhouse_mark in cmd
                    else "bench"
                    if pid == os.getpid()
                    else None
                )
            kind = self._service_kind[key]
            if kind:
                kinds[pid] = kind
        return kinds

    def cpu(self, a: benchkit.CpuReading, b: benchkit.CpuReading, generator_cpu_s: float | None = None) -> dict:
        """CPU seconds by kind from ``a`` to ``b``, the generator's from its own getrusage."""
        cpu = self.meter.between(a, b)
        if generator_cpu_s is not None:
            cpu["generator"] = round(generator_cpu_s, 1)
        return self.meter.machine(a, b, cpu)

    def start_stream(self) -> None:
        self.stream, self.ident = benchkit.start_stream(self.cfg, self.log_path)
        self.meter.start()
        say(
            f"stream started: pid {self.stream.pid}, topic {self.topic} ({self.cfg.kafka.partitions} partitions), "
            f"stream_id {self.ident.stream_id}, trigger {self.cfg.spark.trigger_seconds}s, "
            f"maxOffsetsPerTrigger {self.cfg.spark.max_offsets_per_trigger}, workdir {self.workdir}"
        )

    def check_stream(self) -> None:
        if self.stream is not None and self.stream.poll() is not None:
            raise RuntimeError(f"the stream exited with {self.stream.returncode}; log tail:\n{self.log_tail()}")

    def start_generator(self, rate: float, seconds: float, seed: int, tag: str) -> tuple[subprocess.Popen, Path]:
        spec = {
            "rate": rate,
            "seconds": seconds,
            "seed": seed,
            "topic": self.topic,
            "ontime_max_lateness_ms": self.args.ontime_max_lateness_ms,
        }
        out_path = self.workdir / f"generator-{tag}.out"
        with open(out_path, "wb") as out:
            self.generator = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--generator-child", json.dumps(spec)],
                env={**os.environ, "TIDEMARK_LOG_LEVEL": "WARNING"},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=str(PROJECT),
            )
        return self.generator, out_path

    def finish_generator(self, proc: subprocess.Popen, out_path: Path) -> dict:
        self.generator = None
        text = out_path.read_text(errors="replace")
        doc = next(
            (
                json.loads(line)
                for line in reversed(text.splitlines())
                if line.startswith("{") and '"messages_sent"' in line
            ),
            None,
        )
        if proc.returncode != 0 or doc is None:
            raise RuntimeError(f"generator failed ({proc.returncode}): {text[-2000:]}")
        return doc

    # -- waiting --------------------------------------------------------------------------------
    def wait_consumed(self, timeout: float, what: str) -> tuple[bool, float | None]:
        """Until the stream has committed every offset the topic holds now. Returns (done, epoch when
        seen done)."""
        next_print = time.monotonic() + self.args.print_seconds

        def on_poll(behind: int) -> None:
            nonlocal next_print
            self.check_stream()
            if time.monotonic() >= next_print:
                next_print += self.args.print_seconds
                self.read_log()
                say(f"  {what}: {behind:,} records behind (last batch {max(self.committed, default='-')})")

        self.check_stream()
        waited = benchkit.wait_consumed(self.cfg, self.ident.stream_id, self.topic, timeout, on_poll)
        return (True, time.time()) if waited is not None else (False, None)

    def data_batches(self) -> list[int]:
        self.read_log()
        return sorted(b for b, d in self.committed.items() if (d.get("valid") or 0) + (d.get("rejected") or 0) > 0)

    def warmup(self) -> None:
        """Traffic at --warmup-rate until --warmup-batches data batches have committed after the first one
        (Spark start, the first batch's Delta/ClickHouse setup, JIT), then drain it all."""
        a = self.args
        say(
            f"warm-up: {a.warmup_rate:.0f} ev/s until {a.warmup_batches} data batches after the first have "
            f"committed (at most {a.startup_timeout:.0f}s)"
        )
        started = time.monotonic()
        deadline = started + a.startup_timeout
        proc, _out = self.start_generator(a.warmup_rate, a.startup_timeout + a.warmup_jit_seconds + 60, 7, "warmup")
        next_print = started + a.print_seconds
        try:
            while len(self.data_batches()) < a.warmup_batches + 1:
                self.check_stream()
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"the warm-up generator exited ({proc.returncode}): {_out.read_text(errors='replace')[-1500:]}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"fewer than {a.warmup_batches + 1} data batches within "
                        f"{a.startup_timeout:.0f}s; log tail:\n{self.log_tail()}"
                    )
                if time.monotonic() >= next_print:
                    next_print += a.print_seconds
                    data = self.data_batches()
                    last = self.committed[data[-1]] if data else None
                    say(
                        f"  warm-up t+{time.monotonic() - started:4.0f}s: {len(data)} data batches"
                        + (
                            f", last #{last['batch_id']} {last.get('ms')} ms for {last.get('valid')} rows"
                            if last
                            else ""
                        )
                    )
                time.sleep(1)
            self.warm_jit(started, proc)
        finally:
            benchkit.stop(proc, 10, "warm-up generator")
            self.generator = None
        ok, _ = self.wait_consumed(max(30.0, deadline - time.monotonic()), "warm-up drain")
        if not ok:
            raise RuntimeError(f"the stream did not catch up with the warm-up traffic; log tail:\n{self.log_tail()}")
        data = self.data_batches()
        say(
            f"warm-up done in {time.monotonic() - started:.0f}s: {len(data)} data batches ("
            + ", ".join(f"{self.committed[b].get('ms')} ms" for b in data[-4:])
            + " for the last ones), caught up"
        )

    def warm_jit(self, started: float, generator: subprocess.Popen) -> None:
        """Keep the warm-up traffic on until HotSpot has compiled what the stream runs. Its JIT threads
        use 0.6 cores at minute 3 after a start at 1,000 ev/s on 2 cores, 0.5 at minute 5 and level off
        at 0.3-0.4 from minute 8 (measured here): the fall is start-up cost, which a stream running for
        days does not pay; the level is paid for good (Spark generates new code for every micro-batch:
        the batch timestamp and version are literals in it; see ``codegen_ms`` in the batch log line).
        Waits until they use under --warmup-jit-cores over --warmup-jit-window seconds, at most
        --warmup-jit-seconds; the figures reached are kept in the result either way, and every step
        reports its own ``spark_jit``."""
        a = self.args
        until = time.monotonic() + a.warmup_jit_seconds
        self.jit_warmup = {"settled": False, "windows": []}
        while time.monotonic() < until:
            before, t = self.jit_s(), time.monotonic()
            while time.monotonic() - t < a.warmup_jit_window:
                self.check_stream()
                if generator.poll() is not None:
                    raise RuntimeError(f"the warm-up generator exited ({generator.returncode}) before the JIT settled")
                time.sleep(1)
            cores = (self.jit_s() - before) / (time.monotonic() - t)
            self.jit_warmup["windows"].append(round(cores, 2))
            say(f"  warm-up t+{time.monotonic() - started:4.0f}s: JIT threads at {cores:.2f} cores")
            if cores < a.warmup_jit_cores:
                self.jit_warmup["settled"] = True
                break
        self.jit_warmup["seconds"] = round(time.monotonic() - started, 1)

    # -- one step -------------------------------------------------------------------------------
    def step(self, index: int, rate: float) -> dict:
        a = self.args
        seconds = a.step_seconds
        say(f"step {index + 1}: {rate:.0f} ev/s for {seconds:.0f}s")
        self.read_log()
        base_ends = self.end_offsets()
        b0 = self.last_batch_id()
        base_committed = sum(self.committed_offsets().values())
        c0, jit0 = self.meter.look(), self.jit_s()
        t0, e0 = time.monotonic(), time.time()
        proc, out = self.start_generator(rate, seconds, 1000 + index, f"step{index + 1}")
        lag_samples: list[tuple[float, int]] = []  # (epoch, lag)
        next_print = t0 + a.print_seconds
        deadline = t0 + seconds + a.generator_grace
        while proc.poll() is None:
            tick = time.monotonic()
            self.check_stream()
            if tick > deadline:
                raise RuntimeError(f"the generator ran {a.generator_grace:.0f}s past its {seconds:.0f}s")
            ends = self.end_offsets()
            done = self.committed_offsets()
            lag = sum(max(0, off - done.get(p, 0)) for p, off in ends.items())
            lag_samples.append((time.time(), lag))
            if tick >= next_print:
                next_print += a.print_seconds
                self.read_log()
                last = self.committed.get(max(self.committed)) if self.committed else None
                sent = sum(ends.values()) - sum(base_ends.values())
                el = time.monotonic() - t0
                say(
                    f"  t+{el:4.0f}s sent {sent:>9,} ({sent / el:,.0f}/s)  committed "
                    f"{sum(done.values()) - base_committed:>9,}  lag {lag:>8,}  last batch "
                    + (f"#{last['batch_id']} {last.get('ms')} ms, {last.get('valid')} rows" if last else "-")
                )
            time.sleep(max(0.0, a.sample_seconds - (time.monotonic() - tick)))
        t1 = time.monotonic()
        gen = self.finish_generator(proc, out)
        c1, jit1 = self.meter.look(), self.jit_s()
        cpu = self.cpu(c0, c1, generator_cpu_s=gen.get("cpu_s"))
        cpu["spark_jit"] = round(jit1 - jit0, 1)  # of spark_jvm: HotSpot compiling, not Spark working
        b1 = self.last_batch_id()
        # drain: the stream commits everything the topic holds now (every record was acked)
        target = self.end_offsets()
        d0 = self.meter.look()
        drained, caught_up = self.wait_consumed(a.drain_timeout, f"step {index + 1} drain")
        cpu_drain = self.cpu(d0, self.meter.look())
        b2 = self.last_batch_id()
        self.read_log()

        send_start = gen.get("send_start_epoch") or e0
        send_end = gen.get("send_end_epoch") or (e0 + (t1 - t0))
        ack_end = gen.get("ack_end_epoch") or send_end
        settle = min(a.settle_seconds, seconds / 4)
        w0, w1 = send_start + settle, send_end

        # sent
        sent_ev_s = gen["messages_sent"] / gen["ack_seconds"] if gen.get("ack_seconds") else None

        # processed: records of the batches whose commit falls in (w0, w1], over the window's length
        rows = self.batch_rows(b0, b2)

        def records(bids):
            return sum(rows[b]["valid"] + rows[b]["rejected"] + rows[b]["dups"] for b in bids if b in rows)

        in_window = sorted(bid for bid, doc in self.committed.items() if bid > b0 and w0 < doc["epoch"] <= w1)
        window_s = w1 - w0
        processed_records = records(in_window)
        processed_ev_s = processed_records / window_s if window_s > 0 else None
        # phase timings: the window's batches, or (fewer than 2 there) every batch of the step and its drain
        phases: dict = {}
        scope = in_window if len(in_window) >= 2 else sorted(b for b in self.committed if b0 < b <= b2)
        if scope:
            phases["scope"] = "window" if scope is in_window else "step_and_drain"
            docs = [self.committed[b] for b in scope]
            batch_ms = [d.get("ms", 0) for d in docs]
            for name in PHASES:
                phases[name.removesuffix("_ms")] = round(sum(d.get(name, 0) for d in docs) / len(docs))
            phases["foreach_batch"] = round(sum(batch_ms) / len(docs))
            trig = [rows[b]["trigger_ms"] for b in scope if b in rows and rows[b]["trigger_ms"] is not None]
            if trig:
                phases["trigger"] = round(sum(trig) / len(trig))
                phases["spark_overhead"] = max(0, phases["trigger"] - phases["foreach_batch"])
                # what the stream does per second of batch time, at this batch size
                phases["capacity_ev_s"] = round(records(scope) / (sum(trig) / 1000)) if sum(trig) else None
            phases["batches"] = len(docs)
            phases["rows_per_batch"] = round(sum(d.get("valid", 0) + d.get("rejected", 0) for d in docs) / len(docs))
        # cross-check: Kafka records committed over the whole step + drain (offsets) vs rows + dropped duplicates
        records_all = sum(r["valid"] + r["rejected"] + r["dups"] for r in rows.values())
        input_all = sum(r["input_rows"] or 0 for r in rows.values())

        # lag over the window
        window_lag = [(t - w0, float(y)) for t, y in lag_samples if w0 <= t <= w1]
        lag_slope = slope(window_lag)
        fresh = self.freshness(b0, b2)

        checks = {
            "sent": sent_ev_s is not None and sent_ev_s >= a.min_ratio * rate,
            "processed": processed_ev_s is not None and processed_ev_s >= a.min_ratio * rate,
            "lag_not_growing": lag_slope is not None and lag_slope <= a.max_lag_slope * rate,
            "drained": drained,
            "long_enough": seconds >= a.min_sustain_seconds,
        }
        result = {
            "target_ev_s": rate,
            "step_s": seconds,
            "started_at": iso(e0),
            "sustained": all(checks.values()),
            "checks": checks,
            "sent": {
                "events": gen["messages_sent"],
                "ev_s": round(sent_ev_s) if sent_ev_s else None,
                "ratio": round(sent_ev_s / rate, 3) if sent_ev_s else None,
                "send_s": round(gen["send_seconds"], 2) if gen.get("send_seconds") else None,
                "ack_s": round(gen["ack_seconds"], 2) if gen.get("ack_seconds") else None,
                "clock_offset_s": gen.get("clock_offset_s"),
                "valid": gen.get("valid_events"),
                "late": gen.get("late_events"),
                "duplicates": gen.get("duplicates_sent"),
                "malformed": gen.get("malformed"),
            },
            "processed": {
                "ev_s": round(processed_ev_s) if processed_ev_s is not None else None,
                "ratio": round(processed_ev_s / rate, 3) if processed_ev_s is not None else None,
                "records": processed_records,
                "window_s": round(window_s, 1) if window_s else None,
                "window": [iso(w0), iso(w1)],
                "step_and_drain": {
                    "records": records_all,
                    "kafka_records_read": input_all,
                    "ev_s": round(records_all / (caught_up - send_start))
                    if drained and caught_up and caught_up > send_start
                    else None,
                    "kafka_offsets_committed": sum(target.values()) - sum(base_ends.values()) if drained else None,
                },
            },
            "lag": {
                "slope_ev_s_per_s": round(lag_slope, 1) if lag_slope is not None else None,
                "max": max((y for _, y in lag_samples), default=None),
                "mean": round(sum(y for _, y in window_lag) / len(window_lag)) if window_lag else None,
                "at_send_end": lag_samples[-1][1] if lag_samples else None,
                "samples": [[round(t - send_start, 1), y] for t, y in lag_samples],
            },
            "drain_s": round(caught_up - ack_end, 1) if drained and caught_up else None,
            "freshness_s": fresh,
            "phases_ms": phases,
            "cpu_s": cpu,
            "cpu_s_drain": cpu_drain,
            "batches": {"step": max(0, b1 - b0), "drain": max(0, b2 - b1)},
        }
        result["bound"] = describe_bound(result)
        f = fresh
        say(
            f"step {index + 1} done: target {rate:.0f} ev/s, sent {result['sent']['ev_s']}/s, processed "
            f"{result['processed']['ev_s']}/s, lag slope {result['lag']['slope_ev_s_per_s']}/s, drain "
            f"{result['drain_s']}s, freshness p50/p95/p99 {f['p50']}/{f['p95']}/{f['p99']}s "
            f"-> {'SUSTAINED' if result['sustained'] else 'not sustained'} "
            f"({', '.join(k for k, v in checks.items() if not v) or 'all checks pass'})"
        )
        say(f"  {result['bound']}")
        return result

    # -- cleanup ----------------------------------------------------------------------------------
    def cleanup(self) -> None:
        self.meter.stop()
        benchkit.stop(self.generator, 5, "generator")
        self.generator = None
        if self.stream is not None:
            say("stopping the stream (SIGTERM to its process group; SIGKILL to what is left after 45s)")
            benchkit.stop(self.stream, 45, "stream")
            self.stream = None
        benchkit.delete_topics(self.cfg.kafka.bootstrap_servers, [self.topic])
        if self.args.clean:
            try:
                self.query(f"DROP DATABASE IF EXISTS {self.db}")
                say(f"dropped database {self.db}")
            except Exception as exc:  # noqa: BLE001
                say(f"drop database {self.db} failed: {exc}")
        elif self.ident is not None:
            say(
                f"bench rows kept in ClickHouse {self.cfg.clickhouse.address} database {self.db}, "
                f"stream_id {self.ident.stream_id}"
            )
        if self.log_path.exists():
            keep = self.cfg.log_dir / f"bench-stream-{self.id}.log"
            try:
                keep.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.log_path, keep)
                say(f"stream log kept at {keep}")
            except OSError:
                pass
        if self.args.keep_workdir:
            say(f"kept {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.stack.down()


def describe_bound(step: dict) -> str:
    """One line: how busy the machine was, who used the CPU, and the slowest batch phase."""
    cpu = step["cpu_s"]
    procs = {k: cpu.get(k, 0.0) for k in CPU_KINDS}
    used = sum(procs.values()) or 1.0
    top = sorted(procs.items(), key=lambda kv: -kv[1])[:3]
    parts = [
        f"{step['target_ev_s']:.0f} ev/s: machine {cpu.get('machine_busy_frac') or 0:.0%} busy "
        f"({cpu.get('machine_busy')} CPU-s in {cpu.get('wall_s')}s), "
        + ", ".join(f"{k} {v:.0f}s ({v / used:.0%})" for k, v in top)
    ]
    ph = step.get("phases_ms") or {}
    named = {k: ph[k] for k in ("read_validate_dedup", "delta", "rollups", "clickhouse", "spark_overhead") if k in ph}
    if named:
        k, v = max(named.items(), key=lambda kv: kv[1])
        parts.append(
            f"slowest phase {k} {v} ms of {ph.get('trigger', ph.get('foreach_batch'))} ms/batch"
            + (
                f" ({ph['batches']} batches of {ph['rows_per_batch']} rows; {ph['capacity_ev_s']} records "
                "per second of batch time)"
                if ph.get("capacity_ev_s")
                else ""
            )
        )
    return "; ".join(parts)


def versions(cfg) -> dict:
    import importlib.metadata as md

    def pkg(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    def jar(directory, prefix):
        found = sorted(Path(directory).glob(f"{prefix}*.jar"))
        return found[-1].name.removeprefix(prefix).removesuffix(".jar") if found else None

    env = {
        "pyspark": pkg("pyspark"),
        "delta_spark": pkg("delta-spark"),
        "delta_jar": next((p.name for p in sorted(Path(cfg.spark.jars_dir).glob("delta-spark_*.jar"))), None),
        "kafka": jar(cfg.kafka.jars_dir, "kafka_2.13-"),
        "spark_kafka_clients": jar(cfg.spark.jars_dir, "kafka-clients-"),
        "confluent_kafka": pkg("confluent-kafka"),
        "python": sys.version.split()[0],
        "cores": os.cpu_count(),
        "spark_master": cfg.spark.master,
        "loadavg_at_start": benchkit.load_average(),
    }
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        env["java"] = (java.stderr or java.stdout).splitlines()[0] if (java.stderr or java.stdout) else None
    except (OSError, subprocess.TimeoutExpired):
        env["java"] = None
    return env


def goals(steps: list[dict]) -> dict:
    at5k = next((s for s in steps if s["target_ev_s"] == 5000), None)
    p95_5k = at5k["freshness_s"]["p95"] if at5k else None
    big = [s for s in steps if s["target_ev_s"] >= 20000]
    ok20 = [s for s in big if s["sustained"] and s["freshness_s"]["p95"] is not None and s["freshness_s"]["p95"] <= 10]
    return {
        "freshness_p95_le_5s_at_5k": {
            "goal": "freshness p95 <= 5 s at 5000 ev/s (the 5000 ev/s step, which must be sustained)",
            "p95_s": p95_5k,
            "sustained": at5k["sustained"] if at5k else None,
            "met": (at5k["sustained"] and p95_5k is not None and p95_5k <= 5.0) if at5k else None,
        },
        "sustained_20k_p95_le_10s": {
            "goal": ">= 20000 ev/s sustained with freshness p95 <= 10 s",
            "steps": [
                {"target_ev_s": s["target_ev_s"], "sustained": s["sustained"], "p95_s": s["freshness_s"]["p95"]}
                for s in big
            ],
            "met": bool(ok20) if big else None,
        },
    }


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--generator-child":
        return generator_child(json.loads(sys.argv[2]))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="5000,10000,20000", help="comma-separated ev/s ladder")
    p.add_argument("--rate-5k-check", action="store_true", help="just the 5000 ev/s step (same as --rates 5000)")
    p.add_argument("--step-seconds", type=float, default=120.0)
    p.add_argument(
        "--settle-seconds",
        type=float,
        default=10.0,
        help="skip this start of each step's sending in the processed/lag window (at most step/4)",
    )
    p.add_argument("--min-ratio", type=float, default=0.95, help="sent and processed >= this x target")
    p.add_argument(
        "--max-lag-slope",
        type=float,
        default=0.02,
        help="lag growth allowed, as a fraction of the target rate (events/s per s)",
    )
    p.add_argument("--min-sustain-seconds", type=float, default=120.0, help="shorter steps are never 'sustained'")
    p.add_argument(
        "--warmup-batches",
        type=int,
        default=3,
        help="warm up until this many data batches have committed after the first one",
    )
    p.add_argument("--warmup-rate", type=float, default=1000.0)
    p.add_argument(
        "--warmup-jit-cores",
        type=float,
        default=0.35,
        help="after the warm-up batches, keep warming until the JVM's JIT threads use fewer cores than this",
    )
    p.add_argument("--warmup-jit-window", type=float, default=30.0, help="seconds per JIT measurement")
    p.add_argument(
        "--warmup-jit-seconds", type=float, default=480.0, help="stop waiting for the JIT after this (0: no wait)"
    )
    p.add_argument("--startup-timeout", type=float, default=420.0, help="Spark start + warm-up drain")
    p.add_argument("--drain-timeout", type=float, default=180.0, help="wait for the stream to catch up after a step")
    p.add_argument("--generator-grace", type=float, default=120.0, help="generator overrun allowed past its duration")
    p.add_argument("--stack-timeout", type=float, default=300.0, help="`tidemark stack up` must finish within this")
    p.add_argument("--sample-seconds", type=float, default=2.0, help="lag and CPU sampling interval")
    p.add_argument("--print-seconds", type=float, default=5.0)
    p.add_argument(
        "--ontime-max-lateness-ms",
        type=int,
        default=0,
        help="generator: on-time events' event time lags send time by up to this (default 0: "
        "freshness is the pipeline's own latency)",
    )
    p.add_argument("--trigger-seconds", type=float, help="override TIDEMARK_TRIGGER_SECONDS")
    p.add_argument("--max-offsets-per-trigger", type=int, help="override TIDEMARK_MAX_OFFSETS_PER_TRIGGER")
    p.add_argument("--keep-going", action="store_true", help="continue the ladder after a step the stream lost")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temp lake/checkpoint/logs")
    p.add_argument("--clean", action="store_true", help="drop the bench ClickHouse database at the end")
    args = p.parse_args()
    rates = [5000.0] if args.rate_5k_check else [float(r) for r in args.rates.split(",") if r.strip()]

    started = time.monotonic()
    bench = Bench(args)
    cleaning = []

    def on_signal(signum, _frame):
        if cleaning:
            say(f"signal {signum} during cleanup: ignored (cleanup is bounded)")
            return
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    steps: list[dict] = []
    status, failure = "ok", None
    env = {}
    try:
        bench.stack.up()
        env = versions(bench.cfg)
        try:
            env["clickhouse"] = bench.query("SELECT version()")[0][0]
        except Exception:  # noqa: BLE001
            env["clickhouse"] = None
        bench.start_stream()
        bench.warmup()
        for i, rate in enumerate(rates):
            result = bench.step(i, rate)
            steps.append(result)
            c = result["checks"]
            lost = not (c["processed"] and c["lag_not_growing"])
            if not c["drained"] or (lost and not args.keep_going and i + 1 < len(rates)):
                say(f"stopping the ladder: the stream did not keep up with {rate:.0f} ev/s")
                break
    except Interrupted as exc:
        status, failure = "interrupted", str(exc)
        say(f"interrupted ({exc}); cleaning up")
    except Exception as exc:  # noqa: BLE001
        status, failure = "failed", f"{type(exc).__name__}: {exc}"
        say(f"bench failed: {failure}")
    finally:
        cleaning.append(True)
        bench.cleanup()

    sustained = [s["target_ev_s"] for s in steps if s["sustained"]]
    lost = next((s for s in steps if not (s["checks"]["processed"] and s["checks"]["lag_not_growing"])), None)
    if lost:
        bounds = "stream could not keep up at " + lost["bound"]
    elif steps:
        bounds = "kept up at every step; at the top one, " + steps[-1]["bound"]
    else:
        bounds = None
    a = args
    print(
        json.dumps(
            {
                "bench": "stream_throughput",
                "status": status,
                **({"error": failure[:3000]} if failure else {}),
                "steps": steps,
                "max_sustained_ev_s": max(sustained) if sustained else None,
                "goals": goals(steps),
                "bounds": bounds,
                "criterion": {
                    "sustained": (
                        f"sent_ev_s >= {a.min_ratio} x target AND processed_ev_s >= {a.min_ratio} x target over "
                        f"[send start + {min(a.settle_seconds, a.step_seconds / 4):g} s, send end] AND lag slope "
                        f"<= {a.max_lag_slope} x target per s over that window AND drained within "
                        f"{a.drain_timeout:g} s AND step >= {a.min_sustain_seconds:g} s"
                    ),
                    "sent_ev_s": "events acked by the broker / generator send wall time (first send to last ack)",
                    "processed_ev_s": "records (valid + rejected rows of stream_batches + duplicates dropped) of the "
                    "batches committed in the window / the window's length",
                    "lag": "topic end offsets minus the stream's last committed offsets, sampled every "
                    f"{a.sample_seconds:g} s",
                    "freshness": "quantilesExactWeighted over the freshness histograms of every batch committed from "
                    "step start to drain end (event time -> batch commit, 100 ms steps)",
                    "event_time": (
                        f"on-time events' event time = send time - U[0, {a.ontime_max_lateness_ms}] ms; "
                        "pacer aligned to the wall clock"
                    ),
                },
                "config": {
                    "rates": rates,
                    "step_seconds": a.step_seconds,
                    "warmup": {
                        "rate": a.warmup_rate,
                        "data_batches_after_first": a.warmup_batches,
                        "jit_cores_below": a.warmup_jit_cores,
                        **bench.jit_warmup,
                    },
                    "trigger_seconds": bench.cfg.spark.trigger_seconds,
                    "max_offsets_per_trigger": bench.cfg.spark.max_offsets_per_trigger,
                    "partitions": bench.cfg.kafka.partitions,
                    "home": str(bench.cfg.home),
                    "database": bench.db,
                    "clickhouse": bench.cfg.clickhouse.address,
                    "kafka": bench.cfg.kafka.bootstrap_servers,
                    "topic": bench.topic,
                    "stream_id": bench.ident.stream_id if bench.ident else None,
                    "stack_started_by_bench": bench.stack.started,
                },
                "env": env,
                "wall_s": round(time.monotonic() - started, 1),
            },
            separators=(",", ":"),
        ),
        flush=True,
    )
    return {"ok": 0, "interrupted": 130}.get(status, 1)


if __name__ == "__main__":
    sys.exit(main())
