"""The long-running processes the CLI starts on top of the stack's services, tracked by PID file so
`tidemark stack down` stops them: the stream job (launched through spark-submit, as on a cluster)
the serving API (`tidemark serve --detach`, started by tidemark/serving/server.py) and, beside it,
the SLO monitor that probes it (`tidemark slo probe`)."""

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
    from tidemark.spark import submit_args

    submit = Path(sys.executable).parent / "spark-submit"
    return [
        str(submit if submit.exists() else "spark-submit"),
        "--master",
        cfg.spark.master,
        "--driver-memory",
        cfg.spark.driver_memory,
        *submit_args(cfg),  # jars, Delta extension, interpreter: tidemark.spark.engine_conf
        str(JOBS_DIR / script),
        *args,
    ]


def stream_process(cfg: Settings) -> ManagedProcess:
    # family: Spark's Python workers (pyspark.daemon) outlive a killed driver JVM; `stop` finds them.
    return ManagedProcess(
        name="stream",
        pid_file=cfg.run_dir / "stream.pid",
        log_file=cfg.log_dir / "stream.log",
        signature="stream_events.py",
        family=("stream_events.py", "pyspark"),
    )


def job_env() -> dict[str, str]:
    from tidemark.spark import python_env

    return python_env()


def start_stream(cfg: Settings, args: list[str], detach: bool) -> int:
    """Foreground: run and return the exit code. Detached: start and return the PID."""
    argv = spark_submit_argv(cfg, "stream_events.py", args)
    if detach:
        proc = stream_process(cfg)
        running = proc.pid()
        if running is not None:
            return running
        return proc.start(argv, env=job_env())
    return subprocess.call(argv, env={**os.environ, **job_env()})


# SIGTERM lets the driver stop the query between batches (a batch takes a few seconds, the first one
# after a start 10-25 s); after this grace the whole job (JVM and its Python workers, which outlive a
# killed JVM) gets SIGKILL. `ManagedProcess.stop` logs each step.
STREAM_STOP_GRACE_S = 60.0


def stop_stream(cfg: Settings) -> bool:
    return stream_process(cfg).stop(signal.SIGTERM, timeout=STREAM_STOP_GRACE_S)


def api_process(cfg: Settings) -> ManagedProcess:
    return ManagedProcess(
        name="api", pid_file=cfg.run_dir / "api.pid", log_file=cfg.log_dir / "api.log", signature="tidemark.cli serve"
    )


def stop_api(cfg: Settings) -> bool:
    return api_process(cfg).stop(signal.SIGTERM, timeout=10)


def probe_process(cfg: Settings) -> ManagedProcess:
    # Its own process, not a thread of the API: it must see the API down when the API is down.
    return ManagedProcess(
        name="slo-probe",
        pid_file=cfg.run_dir / "slo-probe.pid",
        log_file=cfg.log_dir / "slo-probe.log",
        signature="tidemark.cli slo probe",
    )


def start_probe(cfg: Settings, url: str) -> int:
    proc = probe_process(cfg)
    running = proc.pid()
    if running is not None:
        return running
    return proc.start([sys.executable, "-m", "tidemark.cli", "slo", "probe", "--url", url])


def stop_probe(cfg: Settings) -> bool:
    return probe_process(cfg).stop(signal.SIGTERM, timeout=10)
