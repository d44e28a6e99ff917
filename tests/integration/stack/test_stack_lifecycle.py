"""`tidemark stack up|status|down` from nothing, through the real CLI, and how services stop.

Uses its own TIDEMARK_HOME and ports (the session's ports + 100, so a run with moved ports
moves these too) so it never disturbs the session stack or another run's.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.ports import free_port
from support.processes import wait_group_gone
from support.wait import wait_until

from tidemark.stack.process import ManagedProcess, group_members, port_open, session_members

_BASE = {  # tests/conftest.py's defaults
    "TIDEMARK_KAFKA_PORT": 19192,
    "TIDEMARK_KAFKA_CONTROLLER_PORT": 19193,
    "CLICKHOUSE_PORT": 19100,
    "CLICKHOUSE_HTTP_PORT": 18223,
    "CLICKHOUSE_INTERSERVER_PORT": 19109,
    "TIDEMARK_REDIS_PORT": 16479,
}
PORTS = {name: int(os.environ.get(name) or default) + 100 for name, default in _BASE.items()}


def _env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_HOST", "REDIS_URL")}
    env.update({k: str(v) for k, v in PORTS.items()})
    env.update(TIDEMARK_HOME=str(home), CLICKHOUSE_DATABASE="tidemark_lifecycle", TIDEMARK_AIRFLOW="0", **extra)
    return env


def _cli(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tidemark.cli", "stack", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def home(tmp_path):
    yield tmp_path / "tm"
    _cli(_env(tmp_path / "tm"), "down")  # never leak processes, even on failure


def test_up_status_down_leaves_no_process(home):
    from kafka.admin import KafkaAdminClient

    env = _env(home)
    started = time.monotonic()
    up = _cli(env, "up", "--json")
    print(f"stack up (format, start, topics, migrations) in {time.monotonic() - started:.1f}s")
    assert up.returncode == 0, up.stderr
    report = json.loads(up.stdout)
    assert report["healthy"] is True
    names = {s["name"] for s in report["services"]}
    assert names == {"broker", "clickhouse", "redis"}
    pids = {s["name"]: s["pid"] for s in report["services"]}
    assert all(isinstance(p, int) and p > 0 for p in pids.values())
    assert "kafka.Kafka" in Path(f"/proc/{pids['broker']}/cmdline").read_text()

    # `up` created the topics explicitly, with the configured partition counts (broker default is not used).
    bootstrap = f"127.0.0.1:{PORTS['TIDEMARK_KAFKA_PORT']}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        topics = {
            t["name"]: len(t["partitions"]) for t in admin.describe_topics(["page_views", "page_views_dead_letter"])
        }
    finally:
        admin.close()
    assert topics == {"page_views": 4, "page_views_dead_letter": 1}

    # Idempotent: a second `up` starts nothing new.
    again = json.loads(_cli(env, "up", "--json").stdout)
    assert {s["name"]: s["pid"] for s in again["services"]} == pids

    status = _cli(env, "status", "--json")
    assert status.returncode == 0
    assert all(s["healthy"] for s in json.loads(status.stdout)["services"])

    # An unhealthy service makes `status` fail, and says which.
    os.kill(pids["redis"], signal.SIGKILL)
    wait_group_gone(pids["redis"])
    bad = _cli(env, "status", "--json")
    assert bad.returncode != 0
    by_name = {s["name"]: s for s in json.loads(bad.stdout)["services"]}
    assert by_name["redis"]["healthy"] is False and by_name["broker"]["healthy"] is True

    # The broker down: `status` says so (health is a metadata request, so a stopped JVM is never "healthy").
    os.kill(pids["broker"], signal.SIGKILL)
    wait_group_gone(pids["broker"])
    bad = _cli(env, "status", "--json")
    assert bad.returncode != 0
    by_name = {s["name"]: s for s in json.loads(bad.stdout)["services"]}
    assert by_name["broker"]["healthy"] is False and by_name["broker"]["detail"] == "not running"
    assert by_name["clickhouse"]["healthy"] is True

    down = _cli(env, "down", "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["stopped"] == ["clickhouse"]  # the two killed ones had nothing left
    for name, pid in pids.items():
        assert group_members(pid) == [] and session_members(pid) == [], f"{name} left processes behind"
    for port in PORTS.values():
        if port != PORTS["CLICKHOUSE_INTERSERVER_PORT"]:
            assert not port_open("127.0.0.1", port), f"port {port} still open after down"
    assert not list((home / "run").glob("*.pid"))


def test_broker_stops_cleanly_and_restarts_on_the_same_log(home):
    """`down` stops the JVM with SIGTERM alone (a controlled shutdown), and the next `up` reuses the
    formatted log directory rather than formatting a new cluster."""
    env = _env(home)
    assert _cli(env, "up").returncode == 0
    meta = (home / "kafka" / "data" / "meta.properties").read_text()
    pid = int((home / "run" / "broker.pid").read_text())

    started = time.monotonic()
    down = _cli(env, "down", "--json")
    stopped_in = time.monotonic() - started
    assert down.returncode == 0, down.stderr
    assert "broker" in json.loads(down.stdout)["stopped"]
    assert group_members(pid) == [] and session_members(pid) == []
    log = (home / "logs" / "broker.log").read_text()
    assert "stopped after SIGTERM" in log and "SIGKILL" not in log, log[-2000:]
    print(f"stack down (stream, redis, clickhouse, broker) in {stopped_in:.1f}s")

    assert _cli(env, "up").returncode == 0
    assert (home / "kafka" / "data" / "meta.properties").read_text() == meta  # same cluster id


@pytest.mark.parametrize("variable", ["TIDEMARK_KAFKA_PORT", "TIDEMARK_KAFKA_CONTROLLER_PORT"])
def test_taken_port_gives_one_clear_error(home, variable):
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", PORTS[variable]))
        squatter.listen()
        result = _cli(_env(home), "up")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {PORTS[variable]} is taken" in lines[0] and variable in lines[0]


def test_missing_binary_gives_one_clear_error(home, tmp_path):
    # A PATH with python but without java / clickhouse / redis.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    result = _cli(_env(home, PATH=str(bin_dir)), "up")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "binary was not found" in lines[0] and "make setup" in lines[0]


def test_missing_kafka_jars_give_one_clear_error(home, tmp_path):
    result = _cli(_env(home, TIDEMARK_KAFKA_JARS_DIR=str(tmp_path / "no-jars")), "up")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tidemark stack up: broker:") and "make setup" in lines[0]


# A process tree that resists: the leader and its child ignore SIGINT and SIGTERM, and a grandchild
# leaves the process group (setpgid) so killpg alone would orphan it.
_STUBBORN = textwrap.dedent("""
    import os, signal, subprocess, sys
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if len(sys.argv) == 1:
        subprocess.Popen([sys.executable, __file__, "child"])
    elif sys.argv[1] == "child":
        subprocess.Popen([sys.executable, __file__, "escaped"], preexec_fn=lambda: os.setpgid(0, 0))
    while True:
        signal.pause()  # until a signal it does not ignore (SIGKILL) ends it
""")


def test_stop_escalates_to_sigkill_and_leaves_no_orphan(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(_STUBBORN)
    proc = ManagedProcess("stubborn", tmp_path / "stubborn.pid", tmp_path / "stubborn.log", signature=str(script))
    pid = proc.start([sys.executable, str(script)])
    wait_until(lambda: len(session_members(pid)) >= 3, 20, "the leader, its child and grandchild", interval_s=0.1)
    family = session_members(pid)
    assert len(family) == 3 and len(group_members(pid)) == 2  # one of them left the group

    started = time.monotonic()
    assert proc.stop(signal.SIGINT, timeout=1.0, escalate=[(signal.SIGTERM, 1.0)]) is True
    elapsed = time.monotonic() - started

    report = proc.last_stop
    assert report.signals == ["SIGINT", "SIGTERM", "SIGKILL"] and report.ended_by == "SIGKILL"
    assert report.survivors == []
    assert elapsed < 1.0 + 1.0 + 5.0 + 1.0  # bounded: the graces plus the SIGKILL wait
    assert all(not Path(f"/proc/{p}").exists() or "Z" in Path(f"/proc/{p}/stat").read_text().split()[2] for p in family)
    log = (tmp_path / "stubborn.log").read_text()
    assert "sending SIGTERM" in log and "sending SIGKILL" in log and "stopped after SIGKILL" in log
    assert not proc.pid_file.exists()
    assert proc.stop() is False  # nothing left to stop


def test_stop_finds_the_children_of_a_dead_leader(tmp_path):
    """A leader that died (crash, OOM kill) leaves its children running, maybe holding its ports:
    `stop` still finds them by session and stops them, and `up` would do so before starting anew."""
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent("""
        import signal, subprocess, sys
        if len(sys.argv) == 1:
            subprocess.Popen([sys.executable, __file__, "child"])
        while True:
            signal.pause()  # until a signal ends it
    """)
    )
    proc = ManagedProcess("parent", tmp_path / "parent.pid", tmp_path / "parent.log", signature=str(script))
    pid = proc.start([sys.executable, str(script)])
    wait_until(lambda: len(session_members(pid)) >= 2, 20, "the leader and its child", interval_s=0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert proc.pid() is None
    (child,) = proc.orphans()
    assert proc.stop() is True
    assert proc.last_stop.ended_by == "SIGTERM" and session_members(pid) == []
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    assert proc.orphans() == [] and proc.stop() is False


def test_airflow_stops_on_sigint_even_if_its_launcher_ignored_sigint(tmp_path, monkeypatch):
    """The regression behind `airflow standalone` stops that took > 60 s: a launcher that ignores SIGINT
    (any background job of a non-interactive shell) passed the ignored disposition on, so the supervisor
    never exited on SIGINT and waited for SIGKILL. Idle, SIGINT alone must stop everything in seconds."""
    from tidemark.config import load
    from tidemark.stack.airflow import Airflow

    airflow_ports = {
        "TIDEMARK_AIRFLOW_PORT": free_port(),
        "TIDEMARK_AIRFLOW_WORKER_LOG_PORT": free_port(),
        "TIDEMARK_AIRFLOW_TRIGGER_LOG_PORT": free_port(),
    }
    for name, port in airflow_ports.items():
        monkeypatch.setenv(name, str(port))
    monkeypatch.setenv("TIDEMARK_HOME", str(tmp_path / "home"))
    svc = Airflow(load())
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `pytest ... &` in a script does
    sigint_ignored = None
    try:
        started = time.monotonic()
        svc.up()
        print(f"airflow standalone healthy after {time.monotonic() - started:.1f}s")
        # The regression itself, without a clock: the supervisor must not inherit the ignored SIGINT.
        sigint_ignored = _ignores(svc.proc.pid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
        pid = svc.proc.pid()
        assert svc.down() is True
    report = svc.proc.last_stop
    print(f"airflow standalone stopped: {report.signals} in {report.seconds:.1f}s")
    assert pid is not None and sigint_ignored is False
    assert group_members(pid) == [] and session_members(pid) == []
    # SIGINT first; escalation may follow on a loaded machine (the stop is bounded either way),
    # but nothing may survive it.
    assert report.signals[0] == "SIGINT" and report.survivors == [], svc.proc.log_tail(40)
    for port in airflow_ports.values():
        assert not port_open("127.0.0.1", port), f"port {port} still open after down"


def _ignores(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has ``sig`` set to SIG_IGN (the SigIgn mask in /proc/PID/status)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    raise AssertionError(f"no SigIgn line for pid {pid}")
