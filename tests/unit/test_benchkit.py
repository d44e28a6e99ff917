"""bench/benchkit.py, the benches' shared toolkit: its CPU meter counts a process that exits between
two looks, and the process-tree stop it wraps (tidemark.stack.process.stop_tree) leaves nothing behind."""

import os
import subprocess
import sys

import pytest

from tidemark.config import PROJECT_ROOT
from tidemark.stack.process import descendants, session_members, stop_tree

pytestmark = pytest.mark.unit

# The benches import it as a top-level module (they run as `python bench/<name>.py`).
sys.path.insert(0, str(PROJECT_ROOT / "bench"))
import benchkit  # noqa: E402

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}:\n    pass\n"


def test_cpu_meter_counts_a_child_that_exits_between_looks():
    me = os.getpid()
    meter = benchkit.CpuMeter(
        lambda table: {pid: "child" for pid in descendants(me, table) if pid != me}, ["child"], every=0.05
    )
    with meter:
        start = meter.readings[0]
        child = subprocess.Popen([sys.executable, "-c", BURN.format(s=0.6)])  # born after the first look
        child.wait()
        end = meter.look()  # after the exit: the child is gone from /proc, its ticks stay counted
    cpu = meter.between(start, end)
    assert list(cpu) == ["child"]
    # 0.6 s of CPU, less at most one look's interval missed before it exited (CPU time, not wall time)
    assert 0.4 <= cpu["child"] <= 1.5, cpu
    assert meter.machine(start, end, cpu)["machine_busy"] >= cpu["child"] - 0.1


def test_stop_tree_stops_a_child_that_left_the_group():
    child = "import os, time; os.setpgid(0, 0); print('ready', flush=True); time.sleep(60)"
    code = (
        f"import os, subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "os.execvp('sleep', ['sleep', '60'])\n"
    )
    leader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert leader.stdout is not None and leader.stdout.readline() == b"ready\n"  # the child has left the group
    assert len(session_members(leader.pid)) == 2
    report = stop_tree(leader.pid, grace_s=0.5)
    # SIGTERM to the group ends the leader; the child, in a group of its own, is found and killed
    assert report.signals == ["SIGTERM", "SIGKILL"] and report.ended_by == "SIGKILL" and not report.survivors
    assert session_members(leader.pid) == []
    leader.wait(5)
