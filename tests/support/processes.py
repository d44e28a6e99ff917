"""Process groups: signal a job's whole group and wait until none of it is left."""

from __future__ import annotations

import os
import signal
import subprocess

from support.wait import wait_until
from tidemark.stack.process import group_members


def wait_group_gone(pid: int, timeout_s: float = 10.0) -> None:
    """Wait until no process is left in the process group led by ``pid``."""
    wait_until(lambda: not group_members(pid), timeout_s, f"process group {pid} to be gone")


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
    wait_group_gone(proc.pid, timeout_s=30)
