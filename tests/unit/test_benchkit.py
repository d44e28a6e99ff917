"""bench/benchkit.py, the benches' shared toolkit: its CPU meter counts a process that exits between
two looks, and the process-tree stop it wraps (tidemark.stack.process.stop_tree) leaves nothing behind."""

import os
import subprocess
import sys
import time

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


def test_thread_cpu_s_counts_only_the_named_threads():
    """The stream bench's JIT figure: a process's CPU split by thread name, as a JVM names its threads."""
    code = (
        "import ctypes, sys, threading, time\n"
        "libc = ctypes.CDLL(None)\n"
        "def burn(name, s):\n"
        "    libc.prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME: what /proc/<pid>/task/<tid>/comm shows\n"
        "    t = time.thread_time()\n"
        "    while time.thread_time() - t < s:\n"
        "        pass\n"
        "    done.wait()  # stay alive: an ended thread's task leaves /proc\n"
        "done = threading.Event()\n"
        "threads = [threading.Thread(target=burn, args=a) for a in (('C2 CompilerThread0', 0.6), ('worker', 0.4))]\n"
        "[t.start() for t in threads]\n"
        "print('started', flush=True); sys.stdin.readline(); done.set()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while benchkit.thread_cpu_s(child.pid, ("worker",)) < 0.35 and time.monotonic() < deadline:
            time.sleep(0.05)
        jit = benchkit.thread_cpu_s(child.pid, benchkit.JIT_THREADS)
        while jit < 0.55 and time.monotonic() < deadline:
            time.sleep(0.05)
            jit = benchkit.thread_cpu_s(child.pid, benchkit.JIT_THREADS)
        assert 0.55 <= jit <= 0.9, jit  # the compiler thread's 0.6 s, not the worker's 0.4 s with it
    finally:
        child.communicate("\n", timeout=30)
    assert benchkit.thread_cpu_s(child.pid, benchkit.JIT_THREADS) == 0.0  # gone: 0, not an error
