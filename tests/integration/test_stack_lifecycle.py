"""`tidemark stack up|status|down` from nothing, through the real CLI.

Uses its own TIDEMARK_HOME and ports so it never disturbs the session stack.
"""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tidemark.stack.process import group_members, port_open

pytestmark = pytest.mark.integration

PORTS = {
    "TIDEMARK_KAFKA_PORT": 19292,
    "CLICKHOUSE_PORT": 19300,
    "CLICKHOUSE_HTTP_PORT": 18323,
    "CLICKHOUSE_INTERSERVER_PORT": 19309,
    "TIDEMARK_REDIS_PORT": 16579,
    "TIDEMARK_S3_PORT": 14769,
}


def _env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_HOST", "REDIS_URL")}
    env.update({k: str(v) for k, v in PORTS.items()})
    env.update(TIDEMARK_HOME=str(home), CLICKHOUSE_DATABASE="tidemark_lifecycle", **extra)
    return env


def _cli(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tidemark.cli", "stack", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def home(tmp_path):
    yield tmp_path / "tm"
    _cli(_env(tmp_path / "tm"), "down")  # never leak processes, even on failure


def test_up_status_down_leaves_no_process(home):
    env = _env(home)
    up = _cli(env, "up", "--json")
    assert up.returncode == 0, up.stderr
    report = json.loads(up.stdout)
    assert report["healthy"] is True
    names = {s["name"] for s in report["services"]}
    assert names == {"s3", "broker", "clickhouse", "redis"}
    pids = {s["name"]: s["pid"] for s in report["services"]}
    assert all(isinstance(p, int) and p > 0 for p in pids.values())

    # Idempotent: a second `up` starts nothing new.
    again = json.loads(_cli(env, "up", "--json").stdout)
    assert {s["name"]: s["pid"] for s in again["services"]} == pids

    status = _cli(env, "status", "--json")
    assert status.returncode == 0
    assert all(s["healthy"] for s in json.loads(status.stdout)["services"])

    # An unhealthy service makes `status` fail, and says which.
    os.kill(pids["redis"], signal.SIGKILL)
    _wait_gone(pids["redis"])
    bad = _cli(env, "status", "--json")
    assert bad.returncode != 0
    by_name = {s["name"]: s for s in json.loads(bad.stdout)["services"]}
    assert by_name["redis"]["healthy"] is False and by_name["broker"]["healthy"] is True

    down = _cli(env, "down", "--json")
    assert down.returncode == 0, down.stderr
    for name, pid in pids.items():
        assert group_members(pid) == [], f"{name} left processes behind"
    for port in PORTS.values():
        if port != PORTS["CLICKHOUSE_INTERSERVER_PORT"]:
            assert not port_open("127.0.0.1", port), f"port {port} still open after down"
    assert not list((home / "run").glob("*.pid"))


def test_taken_port_gives_one_clear_error(home):
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", PORTS["TIDEMARK_S3_PORT"]))
        squatter.listen()
        result = _cli(_env(home), "up")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {PORTS['TIDEMARK_S3_PORT']} is taken" in lines[0]


def test_missing_binary_gives_one_clear_error(home, tmp_path):
    # A PATH with python but without node / clickhouse / redis.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    result = _cli(_env(home, PATH=str(bin_dir)), "up")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "binary was not found" in lines[0] and "make setup" in lines[0]


def _wait_gone(pid: int, timeout: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and group_members(pid):
        time.sleep(0.05)
