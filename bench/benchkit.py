"""What every bench needs besides its own measurement, written once.

A bench runs as ``python bench/<name>.py``, so this folder is on ``sys.path`` and it does ``import
benchkit``; importing it puts the project root there too, so ``tidemark`` imports from a fresh shell.

* `say`: a timestamped progress line on stderr (stdout is kept for the bench's one JSON line);
  `load_average`: the load line every bench prints first (a shared machine's wall-clock figures are
  not results).
* `bench_env` / `use_env`: the bench's own home, ports and ClickHouse database, forced.
* `CpuMeter`: CPU seconds by process kind from /proc, sampled, per phase.
* Process and Kafka helpers over the library's own code: `stop` (``tidemark.stack.process.stop_tree``,
  what ``tidemark stack down`` uses), `wait_consumed` (``tidemark.stream.reconcile.wait_until_consumed``),
  `delete_topics`.
* `Stack`: the bench's embedded services, started if down and stopped at the end (only what it
  started); `start_stream`: the stream job in its own process group; `cli`: ``tidemark ...``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tidemark.stack.process import ProcInfo, process_table, stop_tree  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average(when: str = "at start") -> list[float]:
    """Say the 1/5/15-minute load average and the core count; return the three figures."""
    load = [round(x, 2) for x in os.getloadavg()]
    say(f"load average {when}: {load[0]} {load[1]} {load[2]} on {os.cpu_count()} cores")
    return load


# --------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------

# Never inherited: they would point a bench at someone else's services or state.
STRIPPED_ENV = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "CLICKHOUSE_HOST",
    "CLICKHOUSE_USER",
    "CLICKHOUSE_PASSWORD",
    "CLICKHOUSE_READ_DATABASE",
    "REDIS_URL",
    "TIDEMARK_AIRFLOW",
    "TIDEMARK_TOPIC",
    "TIDEMARK_LAKE_ROOT",
    "TIDEMARK_COLD_ROOT",
    "TIDEMARK_CHECKPOINT_ROOT",
    "TIDEMARK_KAFKA_CLIENT_OPTIONS",
    "TIDEMARK_STARTING_OFFSETS",
)


def bench_env(home: str, database: str, ports: Mapping[str, int], **settings: str) -> dict[str, str]:
    """The environment a bench runs in: this one without `STRIPPED_ENV`; then its own TIDEMARK_HOME
    (``.tidemark/<home>``), ClickHouse database and ports, each movable with ``BENCH_<VARIABLE>`` (e.g.
    ``BENCH_TIDEMARK_KAFKA_PORT=19392``); then ``settings``. Forced, not defaults: a bench drops its
    database and stops the services it started, so it must never pick up a shell's TIDEMARK_HOME or
    CLICKHOUSE_DATABASE meant for the tests or the demo."""
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
    own = {"TIDEMARK_HOME": str(ROOT / ".tidemark" / home), "CLICKHOUSE_DATABASE": database}
    own.update({k: str(v) for k, v in ports.items()})
    env.update({k: os.environ.get(f"BENCH_{k}", v) for k, v in own.items()})
    env.update(settings)
    return env


def use_env(env: Mapping[str, str]) -> None:
    """Make ``env`` this process's environment (tidemark.config reads os.environ; children inherit it)."""
    from tidemark.config import settings

    os.environ.clear()
    os.environ.update(env)
    settings.cache_clear()


# --------------------------------------------------------------------------------------------
# CPU accounting
# --------------------------------------------------------------------------------------------


JIT_THREADS = ("C1 CompilerThre", "C2 CompilerThre")  # HotSpot's compiler threads (comm is cut at 15)


def thread_cpu_s(pid: int, names: tuple[str, ...]) -> float:
    """CPU seconds so far of ``pid``'s threads whose name starts with one of ``names`` (0 if it is gone).
    A JVM's JIT threads are how its warm-up shows: they compile its hot code for minutes after a start."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            if not (task / "comm").read_text().startswith(names):
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_busy_ticks() -> int:
    """Busy clock ticks of every core since boot (/proc/stat, minus idle and iowait)."""
    with open("/proc/stat") as fh:
        vals = [int(v) for v in fh.readline().split()[1:]]
    return sum(vals) - vals[3] - (vals[4] if len(vals) > 4 else 0)


@dataclass(frozen=True)
class CpuReading:
    """One look of a `CpuMeter`: cumulative CPU seconds by kind, and the machine's busy seconds."""

    t: float  # time.perf_counter()
    kinds: dict[str, float]
    machine_s: float


# classify(process table) -> {pid: kind} of the processes to count; the others are not counted.
Classify = Callable[[dict[int, ProcInfo]], dict[int, str]]


class CpuMeter:
    """CPU seconds by process kind, from utime + stime in /proc.

    Every look (`look`, or every ``every`` seconds in a thread between `start` and `stop`, or inside
    ``with``) remembers each counted process's ticks under (pid, start time), so a process that exits
    counts up to the last look that saw it, and one born after the first look counts from zero.
    Readings are cumulative: `between` two readings is a phase; `per_phase` splits a run timed by laps.
    """

    def __init__(self, classify: Classify, kinds: Iterable[str] = (), every: float = 0.5):
        self.classify = classify
        self.every = every
        self.readings: list[CpuReading] = []
        self._totals: dict[str, int] = dict.fromkeys(kinds, 0)  # ticks, in the order given
        self._last: dict[tuple[int, int], int] = {}  # (pid, start) -> ticks at the last look
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def look(self) -> CpuReading:
        with self._lock:
            first = not self.readings
            table = process_table()
            for pid, kind in self.classify(table).items():
                info = table.get(pid)
                if info is None:
                    continue
                key = (pid, info.start)
                before = self._last.get(key, info.cpu_ticks if first else 0)
                self._totals[kind] = self._totals.get(kind, 0) + max(0, info.cpu_ticks - before)
                self._last[key] = info.cpu_ticks
            reading = CpuReading(
                time.perf_counter(),
                {k: v / CLK_TCK for k, v in self._totals.items()},
                machine_busy_ticks() / CLK_TCK,
            )
            self.readings.append(reading)
            return reading

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.look()

    def start(self) -> CpuReading:
        reading = self.look()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._thread.start()
        return reading

    def stop(self) -> CpuReading:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self.look()

    def __enter__(self) -> CpuMeter:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @staticmethod
    def between(a: CpuReading, b: CpuReading) -> dict[str, float]:
        """CPU seconds by kind from ``a`` to ``b``, to 0.1 s."""
        return {k: round(b.kinds.get(k, 0.0) - a.kinds.get(k, 0.0), 1) for k in dict.fromkeys([*a.kinds, *b.kinds])}

    @staticmethod
    def machine(a: CpuReading, b: CpuReading, cpu: dict[str, float]) -> dict[str, float | None]:
        """``cpu`` (seconds by kind from ``a`` to ``b``) with ``other``, the machine's busy time that no
        kind accounts for (the box may be shared), then ``machine_busy``, ``wall_s`` and ``machine_busy_frac``."""
        busy, wall = b.machine_s - a.machine_s, b.t - a.t
        out: dict[str, float | None] = dict(cpu)
        out["other"] = round(max(0.0, busy - sum(v for k, v in cpu.items() if k != "other")), 1)
        out["machine_busy"] = round(busy, 1)
        out["wall_s"] = round(wall, 1)
        out["machine_busy_frac"] = round(busy / (wall * (os.cpu_count() or 1)), 3) if wall > 0 else None
        return out

    def at(self, moment: float) -> CpuReading:
        """The first reading at or after ``moment`` (perf_counter), else the last one."""
        return next((r for r in self.readings if r.t >= moment), self.readings[-1])

    def per_phase(self, start: float, laps: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """CPU by kind of each of ``laps`` (name -> seconds, run one after the other from ``start``)."""
        out, t = {}, start
        for name, seconds in laps.items():
            out[name] = self.between(self.at(t), self.at(t + seconds))
            t += seconds
        return out


# --------------------------------------------------------------------------------------------
# processes, Kafka, the stream
# --------------------------------------------------------------------------------------------


def stop(proc: subprocess.Popen | None, grace_s: float, what: str, sig: int = signal.SIGTERM) -> None:
    """Stop ``proc`` (started with ``start_new_session=True``) and every process below it: ``sig`` to
    its group, ``grace_s`` to exit, then SIGKILL to whatever of it is left (the library's `stop_tree`);
    the escalations are said."""
    if proc is None:
        return
    if proc.poll() is not None and not any(p.pgid == proc.pid or p.sid == proc.pid for p in process_table().values()):
        return  # it and its group are gone: its PID may be another process's by now

    def note(level: int, msg: str, **_fields) -> None:
        if level >= logging.WARNING:
            say(f"{what}: {msg}")

    stop_tree(proc.pid, sig, grace_s, name=what, note=note)
    proc.poll()


def wait_consumed(cfg, stream_id: str, topic: str, timeout_s: float, on_poll=None) -> float | None:
    """Seconds until the stream had committed every offset the topic holds now (the library's
    `wait_until_consumed`), or None (said) if it had not within ``timeout_s``. ``on_poll(behind)`` runs
    after each look that found it behind, and may raise."""
    from tidemark.stream.reconcile import wait_until_consumed

    try:
        return wait_until_consumed(cfg, stream_id, topic, timeout_s, on_poll=on_poll)
    except TimeoutError as exc:
        say(str(exc))
        return None


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    """Delete the bench's topics; a failure is said, not raised (the results stand)."""
    names = ", ".join(topics)
    try:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="tidemark-bench-admin", request_timeout_ms=30000
        )
        try:
            admin.delete_topics(topics, timeout_ms=30000)
            say(f"deleted topic {names}")
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001 - cleanup: the bench's results stand without it
        say(f"topic {names}: delete failed: {type(exc).__name__}: {str(exc)[:200]}")


# --------------------------------------------------------------------------------------------
# the bench's own stack, and the stream job
# --------------------------------------------------------------------------------------------


def cli(*argv: str, timeout: float) -> subprocess.CompletedProcess:
    """``tidemark ARGV`` in this process's environment, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tidemark.cli", *argv], capture_output=True, text=True, timeout=timeout, cwd=str(ROOT)
    )


class Stack:
    """The bench's embedded services: `up` starts (``tidemark stack up``) those that do not answer, or
    only migrates when all do; `down` stops, at the end, exactly what `up` started."""

    def __init__(self, cfg, timeout_s: float = 300.0):
        self.cfg = cfg
        self.timeout_s = timeout_s
        self.started: list[str] = []
        self.was_down = False

    def status(self) -> dict[str, bool]:
        done = cli("stack", "status", "--json", timeout=120)
        try:
            doc = json.loads(done.stdout.strip().splitlines()[-1])
            return {s["name"]: bool(s["healthy"]) for s in doc["services"]}
        except (IndexError, ValueError, KeyError):
            raise RuntimeError(f"`tidemark stack status` answered: {(done.stdout + done.stderr)[-1500:]}") from None

    def up(self) -> None:
        before = self.status()
        down = [name for name, ok in before.items() if not ok]
        if down:
            say(f"bench stack ({self.cfg.home}): {', '.join(down)} not answering; `tidemark stack up`")
            self.was_down = len(down) == len(before)
            self.started = down
            started = time.monotonic()
            done = cli("stack", "up", timeout=self.timeout_s)
            if done.returncode != 0:
                raise RuntimeError(f"`tidemark stack up` failed:\n{(done.stdout + done.stderr)[-3000:]}")
            say(f"bench stack up in {time.monotonic() - started:.0f}s (will stop {', '.join(down)} at the end)")
        else:
            done = cli("db", "migrate", timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"`tidemark db migrate` failed:\n{(done.stdout + done.stderr)[-3000:]}")
            say(f"bench stack ({self.cfg.home}) already running; left running at the end")

    def down(self) -> None:
        if not self.started:
            return
        try:
            if self.was_down:
                say("stopping the bench stack (`tidemark stack down`)")
                done = cli("stack", "down", timeout=240)
            else:  # only some were down: stop just those, leave the others as found
                say(f"stopping {', '.join(self.started)} (started by the bench)")
                code = (
                    "import sys; from tidemark.stack import services as s; "
                    f"[v.down() for v in s.services() if v.name in {self.started!r}]"
                )
                done = subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=str(ROOT)
                )
            if done.returncode != 0:
                say(f"stack down answered {done.returncode}: {(done.stdout + done.stderr)[-800:]}")
        except subprocess.TimeoutExpired:
            say("stack down did not finish within 240s")


def start_stream(cfg, log_path: Path):
    """``tidemark stream`` in its own process group (output appended to ``log_path``) on the topic
    ``cfg`` names, created first; returns (the process, its StreamIdentity)."""
    from tidemark.io.kafka_admin import ensure_topic
    from tidemark.stream.identity import StreamIdentity
    from tidemark.stream.options import STREAM_NAME

    ensure_topic(cfg.kafka.bootstrap_servers, cfg.kafka.topic, cfg.kafka.partitions)
    ident = StreamIdentity.load_or_create(f"{cfg.spark.checkpoint_root}/{STREAM_NAME}")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tidemark.cli", "stream"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(ROOT),
        )
    return proc, ident
