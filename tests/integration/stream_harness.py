"""Helpers for speed-layer tests: run the real generator and the real stream job
(through spark-submit, in its own process group) against the session stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tidemark.config import Settings, load
from tidemark.stack.process import group_members
from tidemark.stream.identity import StreamIdentity
from tidemark.stream.options import STREAM_NAME
from tidemark.stream.reconcile import StreamReport, stream_report


@dataclass
class StreamRun:
    """One isolated pipeline: its own topic, lake and checkpoint, sharing the session's services."""

    workdir: Path
    topic: str

    @classmethod
    def create(cls, tmp_path: Path, name: str) -> StreamRun:
        return cls(tmp_path, f"{name}_{uuid.uuid4().hex[:8]}")

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TIDEMARK_TOPIC": self.topic,
            "TIDEMARK_LAKE_ROOT": str(self.workdir / "lake"),
            "TIDEMARK_CHECKPOINT_ROOT": str(self.workdir / "checkpoints"),
            "TIDEMARK_LOG_LEVEL": "INFO",
            "TIDEMARK_TRIGGER_SECONDS": "1",
        }

    @property
    def cfg(self) -> Settings:
        saved = dict(os.environ)
        try:
            os.environ.update(self.env)
            return load()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    @property
    def identity(self) -> StreamIdentity:
        return StreamIdentity.load_or_create(f"{self.workdir / 'checkpoints'}/{STREAM_NAME}")

    def generate(self, *args: str) -> dict:
        manifest = self.workdir / f"manifest-{uuid.uuid4().hex[:6]}.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tidemark.cli",
                "generate",
                "--topic",
                self.topic,
                "--no-progress",
                "--manifest",
                str(manifest),
                *args,
            ],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        return json.loads(manifest.read_text())

    def start_stream(self, *args: str, extra_env: dict | None = None) -> subprocess.Popen:
        log = open(self.workdir / "stream.log", "ab")
        return subprocess.Popen(
            [sys.executable, "-m", "tidemark.cli", "stream", *args],
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run_available_now(self, *args: str, timeout: float = 600, extra_env: dict | None = None) -> None:
        proc = self.start_stream("--available-now", *args, extra_env=extra_env)
        try:
            rc = proc.wait(timeout=timeout)
        finally:
            kill_group(proc, signal.SIGKILL)
        assert rc == 0, f"stream exited {rc}; log:\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "stream.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def report(self, manifest: dict) -> StreamReport:
        ident = self.identity
        return stream_report(self.cfg, manifest, ident.stream_id, ident.epoch)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the job's whole process group (CLI, spark-submit JVM, Python driver and workers) and reap it."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}")


def committed_batches(cfg: Settings, stream_id: str) -> int:
    from tidemark.io.clickhouse import client

    return client(cfg.clickhouse).execute(
        f"SELECT count() FROM {cfg.clickhouse.database}.stream_batches WHERE stream_id = %(s)s", {"s": stream_id}
    )[0][0]


def forget_rows(cfg: Settings, start, end, columns: dict[str, str]) -> None:
    """Delete the rows of ``start <= column < end`` from each ``{table: column}`` and wait for the
    mutations, so a re-run against a kept test database starts from the state a fresh one has."""
    from tidemark.io.clickhouse import client

    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    p = {"s": start, "e": end}
    for table, column in columns.items():
        ch.execute(f"ALTER TABLE {db}.{table} DELETE WHERE {column} >= %(s)s AND {column} < %(e)s", p)
    deadline = time.monotonic() + 120
    while any(
        ch.execute(f"SELECT count() FROM {db}.{t} WHERE {c} >= %(s)s AND {c} < %(e)s", p)[0][0]
        for t, c in columns.items()
    ):
        assert time.monotonic() < deadline, "mutations did not finish"
        time.sleep(0.2)
