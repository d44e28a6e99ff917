"""Long-running Spark jobs started by the CLI: launched through spark-submit
(as on a cluster), tracked by PID file so `tidemark stack down` stops them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tidemark.config import PROJECT_ROOT, Settings
from tidemark.stack.process import ManagedProcess

JOBS_DIR = PROJECT_ROOT / "jobs"


def spark_submit_argv(cfg: Settings, script: str, args: list[str]) -> list[str]:
    submit = Path(sys.executable).parent / "spark-submit"
    return [
        str(submit if submit.exists() else "spark-submit"),
        "--master", cfg.spark.master,
        "--driver-memory", cfg.spark.driver_memory,
        "--conf", f"spark.pyspark.python={sys.executable}",
        "--conf", f"spark.pyspark.driver.python={sys.executable}",
        str(JOBS_DIR / script),
        *args,
    ]


def stream_process(cfg: Settings) -> ManagedProcess:
    return ManagedProcess(name="stream", pid_file=cfg.run_dir / "stream.pid",
                          log_file=cfg.log_dir / "stream.log", signature="stream_events.py")


def job_env() -> dict[str, str]:
    return {"SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def start_stream(cfg: Settings, args: list[str], detach: bool) -> int:
    """Foreground: run and return the exit code. Detached: start and return the PID."""
    argv = spark_submit_argv(cfg, "stream_events.py", args)
    if detach:
        proc = stream_process(cfg)
        if proc.pid() is not None:
            return proc.pid()
        return proc.start(argv, env=job_env())
    return subprocess.call(argv, env={**os.environ, **job_env()})


def stop_stream(cfg: Settings) -> bool:
    # SIGTERM lets the driver stop the query between batches; killpg reaps the JVM and its Python workers.
    return stream_process(cfg).stop(signal.SIGTERM, timeout=60)
