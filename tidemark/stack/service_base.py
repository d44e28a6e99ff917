"""What every embedded service is: the `Service` base class and its `Status`.

A service names its process (signature, family), its ports, its binary and argv, its health
check; the base class does the rest the same way for all of them: refuse a port another process
holds, start under a PID file (`tidemark.stack.process.ManagedProcess`), wait until healthy, stop
by process group with a bounded escalation. One class per service lives in a module of its own
(kafka, clickhouse, redis, airflow); `tidemark.stack.services` composes them (up/down/status).
This module imports none of them, so none of them imports the composition root: no cycles.
"""

from __future__ import annotations

import logging
import signal
import time
import urllib.request
from dataclasses import dataclass

from tidemark.config import Settings
from tidemark.stack.process import ManagedProcess, StackError, port_open

log = logging.getLogger(__name__)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except Exception:  # noqa: BLE001 - any failure means "not healthy yet"
        return False


@dataclass
class Status:
    name: str
    address: str
    external: bool
    pid: int | None
    healthy: bool
    detail: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "address": self.address,
            "external": self.external,
            "pid": self.pid,
            "healthy": self.healthy,
            "detail": self.detail,
        }


class Service:
    name: str = ""
    binary_hint: str = "run `make setup`"
    start_timeout_s: float = 30.0
    # Stopping: `stop_signal` to the process group, `stop_timeout_s` to exit, then each
    # (signal, seconds) of `stop_escalation` to whatever is left, then SIGKILL (ManagedProcess.stop).
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 30.0
    stop_escalation: tuple[tuple[int, float], ...] = ()

    def __init__(self, cfg: Settings):
        self.cfg = cfg
        self.proc = ManagedProcess(
            name=self.name,
            pid_file=cfg.run_dir / f"{self.name}.pid",
            log_file=cfg.log_dir / f"{self.name}.log",
            signature=self.signature(),
            family=self.family(),
        )

    # -- per service -------------------------------------------------------
    def signature(self) -> str:
        raise NotImplementedError

    def family(self) -> tuple[str, ...]:
        """Command-line marks of the service's child processes (see ManagedProcess.family)."""
        return ()

    @property
    def external(self) -> bool:
        return False

    @property
    def address(self) -> str:
        raise NotImplementedError

    def port(self) -> int:
        raise NotImplementedError

    def ports(self) -> list[tuple[int, str]]:
        """Every port the service listens on, with the variable that moves it (checked free before start)."""
        return [(self.port(), "its port variable")]

    def binary(self) -> str | None:
        raise NotImplementedError

    def argv(self, binary: str) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def prepare(self) -> None:
        """Write config files and directories before start."""

    def healthy(self) -> bool:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------
    def status(self) -> Status:
        pid = None if self.external else self.proc.pid()
        ok = self.healthy()
        detail = "" if ok else ("not running" if pid is None and not self.external else "not answering")
        return Status(self.name, self.address, self.external, pid, ok, detail)

    def up(self) -> Status:
        if self.external:
            if not self.healthy():
                raise StackError(
                    f"{self.name}: external service at {self.address} does not answer; "
                    f"check it is running or unset its address variable to use the embedded one"
                )
            return self.status()
        started = time.monotonic()
        if self.launch():
            self._wait_healthy()
            log.info("healthy", extra={"service": self.name, "seconds": round(time.monotonic() - started, 2)})
        else:
            self._wait_healthy()
        return self.status()

    def launch(self) -> bool:
        """Start the process unless it runs (or the service is external), without waiting for it to
        answer; True if it was started. `up` is launch + wait; nodes of a quorum launch together."""
        if self.external or self.proc.pid() is not None:
            return False
        if self.proc.orphans():  # its leader died but children live on (and may hold its ports)
            self.down()
        for port, variable in self.ports():
            if port_open("127.0.0.1", port):
                raise StackError(
                    f"{self.name}: port {port} is taken by a process Tidemark did not start; "
                    f"stop it, or move {self.name} to another port with {variable}"
                )
        binary = self.binary()
        if not binary:
            raise StackError(f"{self.name}: its binary was not found; {self.binary_hint}")
        self.prepare()
        self.proc.start(self.argv(binary), env=self.env())
        return True

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if self.proc.exited_early():
                raise StackError(
                    f"{self.name}: exited during startup; log {self.proc.log_file}:\n{self.proc.log_tail()}"
                )
            time.sleep(0.2)
        raise StackError(
            f"{self.name}: did not answer at {self.address} within {self.start_timeout_s:.0f}s; "
            f"see {self.proc.log_file}"
        )

    def down(self) -> bool:
        if self.external:
            return False
        return self.proc.stop(self.stop_signal, timeout=self.stop_timeout_s, escalate=self.stop_escalation)
