"""Start, find and stop the embedded services' processes by PID file.

Each service runs in its own session (process group), so ``stop`` can signal
the whole group and leave no orphan behind. A PID file is trusted only while
the PID is alive *and* its command line still names the expected binary, so a
recycled PID is never killed.

Stopping is a bounded, logged escalation (`stop_tree`, which `ManagedProcess.stop` and the
benches use): a gentle signal to the process group, a grace period, then harsher signals to every
process that belongs to the service, ending with SIGKILL. "Belongs" means: in the leader's process
group, in its session, or a descendant of any process already seen (so a child that moved to a
group of its own, or was re-parented to init when its parent died, is still found). Every step is
logged (logger ``tidemark.stack.process``); a service also appends it to its own log file.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tidemark.errors import TidemarkError

log = logging.getLogger(__name__)

# What SIGKILL leaves to wait for (a process in uninterruptible I/O exits when the I/O returns).
KILL_WAIT_S = 5.0
_POLL_S = 0.1


class StackError(TidemarkError, RuntimeError):
    """A service could not be started or checked; the message says what to do."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def cmdline(pid: int) -> str:
    """The command line of ``pid``, arguments joined by spaces ("" if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot: (pid, start) identifies a process even if the PID is reused
    state: str
    cpu_ticks: int = 0  # utime + stime so far, in clock ticks (os.sysconf("SC_CLK_TCK") a second)


def process_table() -> dict[int, ProcInfo]:
    """Every live (non-zombie) process, from one pass over /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] in ("Z", "X"):
            continue
        pid = int(entry.name)
        ticks = int(fields[11]) + int(fields[12])
        table[pid] = ProcInfo(pid, int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]), fields[0], ticks)
    return table


def descendants(root: int, table: dict[int, ProcInfo] | None = None) -> list[int]:
    """``root`` and every live process below it by parent PID ([] if ``root`` is gone)."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    out, todo = [], [root] if root in table else []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def group_members(pgid: int) -> list[int]:
    """PIDs still alive in a process group (used by tests to prove no orphans)."""
    return sorted(p.pid for p in process_table().values() if p.pgid == pgid)


def session_members(sid: int) -> list[int]:
    """PIDs still alive in a session (a service's leader starts one; children may leave its group,
    rarely its session)."""
    return sorted(p.pid for p in process_table().values() if p.sid == sid)


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


@dataclass
class StopReport:
    """What `ManagedProcess.stop` did: the signals sent, in order, and how it ended."""

    name: str
    pid: int
    signals: list[str] = field(default_factory=list)
    seconds: float = 0.0
    ended_by: str = ""  # the signal after which nothing was left ("" if something survived)
    survivors: list[int] = field(default_factory=list)

    @property
    def escalated(self) -> bool:
        return len(self.signals) > 1


class _Tracker:
    """The set of processes that belong to one service, grown as they fork, identified by (pid, start)."""

    def __init__(self, leader: int):
        self.leader = leader
        self.pgid = leader  # start_new_session=True: the leader's PID is its group and session id
        self.known: dict[int, int] = {}  # pid -> start ticks

    def refresh(self) -> dict[int, ProcInfo]:
        """Add group/session members and descendants of known processes; return the live known ones."""
        table = process_table()
        changed = True
        while changed:
            changed = False
            for p in table.values():
                if p.pid in self.known:
                    continue
                parent = table.get(p.ppid)
                child_of_known = parent is not None and self.known.get(p.ppid) == parent.start
                if p.pgid == self.pgid or p.sid == self.pgid or child_of_known:
                    self.known[p.pid] = p.start
                    changed = True
        return {pid: table[pid] for pid, start in self.known.items() if pid in table and table[pid].start == start}

    def signal(self, sig: int, *, group_only: bool) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        if group_only:
            return
        for pid, info in self.refresh().items():
            if info.pgid != self.pgid:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass

    def wait(self, seconds: float) -> dict[int, ProcInfo]:
        """Wait until every known process is gone or ``seconds`` pass; return what is left."""
        deadline = time.monotonic() + seconds
        while True:
            _reap(self.leader)
            left = self.refresh()
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(_POLL_S)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child (tests start services in-process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _describe(procs: dict, limit: int = 8) -> str:
    parts = [f"{pid} ({(cmdline(pid) or '?')[:60]})" for pid in sorted(procs)[:limit]]
    more = len(procs) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def stop_tree(
    leader: int,
    sig: int = signal.SIGTERM,
    grace_s: float = 20.0,
    escalate: Sequence[tuple[int, float]] = (),
    *,
    name: str = "",
    note: Callable[..., None] | None = None,
) -> StopReport:
    """Stop ``leader`` (started with ``start_new_session=True``) and every process that belongs to
    it (see the module doc); the steps `ManagedProcess.stop` takes, for any such process.

    ``sig`` goes to the process group, which then has ``grace_s`` seconds to exit. Each
    ``(signal, seconds)`` in ``escalate`` then goes to whatever is left, and finally SIGKILL. The worst
    case is bounded by ``grace_s + sum(seconds) + KILL_WAIT_S``. Each step is told to ``note(level,
    message, **fields)`` (default: this module's logger); the report says what was sent and what survived.
    """
    name = name or str(leader)

    def logged(level: int, msg: str, **fields) -> None:
        log.log(level, msg, extra={"service": name, **fields})

    note = note or logged
    started = time.monotonic()
    tracker = _Tracker(leader)
    tracker.refresh()
    report = StopReport(name, leader)
    steps = [(sig, grace_s, True), *((s, t, False) for s, t in escalate), (signal.SIGKILL, KILL_WAIT_S, False)]
    left: dict[int, ProcInfo] = {}
    for number, (step_sig, wait_s, group_only) in enumerate(steps):
        signame = _signame(step_sig)
        if number == 0:
            note(
                logging.INFO,
                f"{signame} to process group {leader} ({len(tracker.known)} processes); waiting up to {wait_s:.0f}s",
                pid=leader,
                signal=signame,
            )
        else:
            note(
                logging.WARNING,
                f"{len(left)} processes still alive {time.monotonic() - started:.1f}s after "
                f"{report.signals[-1]}: {_describe(left)}; sending {signame}"
                + ("" if step_sig == signal.SIGKILL else f", waiting up to {wait_s:.0f}s"),
                pid=leader,
                signal=signame,
                survivors=sorted(left),
            )
        tracker.signal(step_sig, group_only=group_only)
        report.signals.append(signame)
        left = tracker.wait(wait_s)
        if not left:
            report.ended_by = signame
            break
    report.seconds = time.monotonic() - started
    report.survivors = sorted(left)
    if left:
        note(
            logging.ERROR,
            f"{len(left)} processes survived SIGKILL after {report.seconds:.1f}s: {_describe(left)}",
            pid=leader,
            survivors=report.survivors,
        )
    else:
        note(
            logging.INFO,
            f"stopped after {report.ended_by} in {report.seconds:.1f}s",
            pid=leader,
            seconds=round(report.seconds, 2),
            signal=report.ended_by,
        )
    return report


# Signals a service must see with their default action, whatever its launcher ignored. A
# non-interactive shell starts background jobs (`cmd &`) with SIGINT and SIGQUIT ignored, and an
# ignored disposition survives exec: `airflow standalone` launched that way (a script, CI, pytest in
# the background) never turns SIGINT into KeyboardInterrupt. Its children install their own handlers
# and exit, but the supervisor itself sleeps on until SIGKILL, which made `stop` take its full timeout.
_RESET_SIGNALS = (
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCHLD,
)


def _default_signals() -> None:
    """Runs in the child between fork and exec (subprocess's preexec_fn)."""
    for sig in _RESET_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


@dataclass
class ManagedProcess:
    name: str
    pid_file: Path
    log_file: Path
    signature: str  # substring expected in the process's command line
    # Substrings that mark the service's other processes (children), so `stop` can find and stop them
    # even after the leader died; () means just `signature`.
    family: tuple[str, ...] = ()
    last_stop: StopReport | None = None

    def _recorded_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def orphans(self) -> list[int]:
        """Live processes of the service whose leader is gone (e.g. it crashed or was SIGKILLed).

        They are the members of the leader's session or process group. Linux does not reuse a PID
        while a session or group of that id has members, so these are ours as long as the PID itself is
        not alive as something else; the command-line check guards against the case where none of ours
        is left and the id was reused.
        """
        pid = self._recorded_pid()
        if pid is None or _alive(pid):  # alive: either ours (then not an orphan case) or a reused PID
            return []
        members = [p.pid for p in process_table().values() if p.sid == pid or p.pgid == pid]
        marks = self.family or (self.signature,)
        if not any(mark in cmdline(m) for m in members for mark in marks):
            return []
        return sorted(members)

    def pid(self) -> int | None:
        pid = self._recorded_pid()
        if pid is None:
            return None
        if _alive(pid) and self.signature in cmdline(pid):
            return pid
        return None

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_default_signals,
            )
        self.pid_file.write_text(str(proc.pid))
        log.info("started", extra={"service": self.name, "pid": proc.pid})
        return proc.pid

    def exited_early(self) -> bool:
        """True if the PID we recorded is gone (the process died during startup)."""
        pid = self._recorded_pid()
        if pid is None:
            return True
        _reap(pid)
        return not _alive(pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _note(self, level: int, msg: str, **fields) -> None:
        log.log(level, msg, extra={"service": self.name, **fields})
        try:
            with open(self.log_file, "a") as out:
                out.write(f"[tidemark {time.strftime('%Y-%m-%dT%H:%M:%S')}] stop: {msg}\n")
        except OSError:
            pass

    def stop(
        self, sig: int = signal.SIGTERM, timeout: float = 20.0, escalate: Sequence[tuple[int, float]] = ()
    ) -> bool:
        """Stop the service; True if it was running. Always returns with nothing of it left alive
        (or logs an error naming what survived SIGKILL).

        ``sig`` goes to the process group, which then has ``timeout`` seconds to exit. Each
        ``(signal, seconds)`` in ``escalate`` then goes to whatever is left (the group and every
        process that belongs to the service, see the module doc), and finally SIGKILL. The worst
        case is bounded by ``timeout + sum(seconds) + KILL_WAIT_S``. `last_stop` records the steps.
        """
        pid = self.pid()
        if pid is None:
            orphans = self.orphans()
            if not orphans:
                self.pid_file.unlink(missing_ok=True)
                return False
            pid = self._recorded_pid()
            assert pid is not None  # orphans() found them through the recorded leader's id
            self._note(
                logging.WARNING,
                f"leader {pid} is gone but {len(orphans)} of its processes are alive: "
                f"{_describe({o: None for o in orphans})}",
                pid=pid,
                orphans=orphans,
            )
        self.last_stop = stop_tree(pid, sig, timeout, escalate, name=self.name, note=self._note)
        self.pid_file.unlink(missing_ok=True)
        return True
