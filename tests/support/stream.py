"""The speed layer for tests: run the real generator and the real stream job (through
spark-submit, in its own process group) against the session stack, and read what it did (its
log, its Spark checkpoint, its committed batches)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from support.processes import kill_group
from support.settings import settings_with
from tidemark.config import Settings
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
            "TIDEMARK_LOG_FORMAT": "json",  # log_entries() reads the log's JSON lines
            "TIDEMARK_TRIGGER_SECONDS": "1",
        }

    @property
    def cfg(self) -> Settings:
        return settings_with(self.env)

    @property
    def identity(self) -> StreamIdentity:
        return StreamIdentity.load_or_create(f"{self.workdir / 'checkpoints'}/{STREAM_NAME}")

    def generate(self, *args: str) -> dict:
        manifest = self.workdir / f"manifest-{uuid.uuid4().hex[:6]}.json"
        done = subprocess.run(
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
            capture_output=True,
            timeout=600,
        )
        # The generator's own error (stderr) in the failure, not only its exit status.
        assert done.returncode == 0, f"generate exited {done.returncode}: {done.stderr.decode()[-3000:]}"
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

    def log_entries(self, msg: str) -> list[dict]:
        """The stream's JSON log lines whose message is ``msg`` (Spark's own lines are not JSON)."""
        path = self.workdir / "stream.log"
        found = []
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            if line.startswith("{"):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if entry.get("msg") == msg:
                    found.append(entry)
        return found

    def spark_batches(self, checkpoint: Path | None = None) -> list[SparkBatch]:
        """The micro-batches Spark committed in the checkpoint (``checkpoint``: the stream's
        checkpoint directory, default this run's), oldest first, from its offset and commit logs."""
        spark = (checkpoint or self.workdir / "checkpoints" / STREAM_NAME) / "spark"
        committed = sorted(int(p.name) for p in (spark / "commits").glob("[0-9]*"))
        batches = []
        for batch in committed:
            # offsets/<id>: a version line, then the batch's metadata (watermark and timestamp in ms)
            meta = json.loads((spark / "offsets" / str(batch)).read_text().splitlines()[1])
            batches.append(SparkBatch(batch, int(meta["batchWatermarkMs"]), int(meta["batchTimestampMs"])))
        return batches


@dataclass(frozen=True)
class SparkBatch:
    batch_id: int
    watermark_ms: int  # the event-time watermark the batch ran with (the dedup evicts state behind it)
    timestamp_ms: int  # the batch's timestamp: the ingest_time of every row it read


def committed_batches(cfg: Settings, stream_id: str) -> int:
    from tidemark.io.clickhouse import client

    return client(cfg.clickhouse).execute(
        f"SELECT count() FROM {cfg.clickhouse.database}.stream_batches WHERE stream_id = %(s)s", {"s": stream_id}
    )[0][0]
