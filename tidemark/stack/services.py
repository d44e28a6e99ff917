"""The embedded stack: Apache Kafka (KRaft), ClickHouse and Redis (and, opt-in, Airflow).

``up`` starts what is not running (skipping services configured as external),
waits until each answers, creates the topics and applies the ClickHouse
migrations. ``down`` stops what ``up`` started, by PID file and process group,
with a bounded escalation to SIGKILL (see `tidemark.stack.process`).
"""
from __future__ import annotations

import base64
import logging
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from tidemark.config import Settings, settings
from tidemark.stack.process import ManagedProcess, StackError, port_open

log = logging.getLogger(__name__)


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
                raise StackError(f"{self.name}: external service at {self.address} does not answer; "
                                 f"check it is running or unset its address variable to use the embedded one")
            return self.status()
        if self.proc.pid() is not None:
            self._wait_healthy()
            return self.status()
        if self.proc.orphans():  # its leader died but children live on (and may hold its ports)
            self.down()
        for port, variable in self.ports():
            if port_open("127.0.0.1", port):
                raise StackError(f"{self.name}: port {port} is taken by a process Tidemark did not start; "
                                 f"stop it, or move {self.name} to another port with {variable}")
        binary = self.binary()
        if not binary:
            raise StackError(f"{self.name}: its binary was not found; {self.binary_hint}")
        self.prepare()
        started = time.monotonic()
        self.proc.start(self.argv(binary), env=self.env())
        self._wait_healthy()
        log.info("healthy", extra={"service": self.name, "seconds": round(time.monotonic() - started, 2)})
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
        return self.proc.stop(self.stop_signal, timeout=self.stop_timeout_s, escalate=self.stop_escalation)


def _kafka_cluster_id() -> str:
    """A random KRaft cluster id, as `kafka-storage.sh random-uuid` makes one (URL-safe base64 of
    16 random bytes, unpadded, never starting with '-' so no CLI takes it for a flag)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class Broker(Service):
    """Apache Kafka 4 in KRaft mode: one JVM that is both broker and controller (node 1), run from the
    jars `make setup` fetched (jvm/kafka/pom.xml), its log under TIDEMARK_HOME/kafka/data.

    Files it owns under TIDEMARK_HOME/kafka: server.properties and log4j2.properties (rewritten on every
    start, so port or partition changes take effect), data/ (formatted once with a fresh cluster id),
    server.log (the broker's own INFO log, rotated at 10 MB x 3). Warnings and errors also reach
    logs/broker.log, next to the lines `stop` writes there.
    """
    name = "broker"
    binary_hint = ("run `make setup` (it installs Java 17 and Maven, and copies the Kafka jars "
                   "into jvm/lib/kafka)")
    start_timeout_s = 60.0   # 2-4 s idle; a JVM on a busy 2-core box needs more
    stop_timeout_s = 30.0    # SIGTERM is a controlled shutdown (flushes, closes the log): ~2 s
    main_class = "kafka.Kafka"
    format_class = "kafka.tools.StorageTool"  # what kafka-storage.sh runs

    @property
    def dir(self) -> Path:
        return self.cfg.home / "kafka"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def properties_file(self) -> Path:
        return self.dir / "server.properties"

    def signature(self) -> str:
        # The main class plus this TIDEMARK_HOME's config: never mistakes another stack's broker for ours.
        return f"{self.main_class} {self.properties_file}"

    @property
    def external(self) -> bool:
        return self.cfg.kafka.external

    @property
    def address(self) -> str:
        return self.cfg.kafka.bootstrap_servers

    def port(self) -> int:
        return self.cfg.kafka.port

    def ports(self) -> list[tuple[int, str]]:
        return [(self.cfg.kafka.port, "TIDEMARK_KAFKA_PORT"),
                (self.cfg.kafka.controller_port, "TIDEMARK_KAFKA_CONTROLLER_PORT")]

    def binary(self) -> str | None:
        java = shutil.which("java")
        if not java or not any(Path(self.cfg.kafka.jars_dir).glob("kafka_2.13-*.jar")):
            return None
        return java

    def classpath(self) -> str:
        return str(Path(self.cfg.kafka.jars_dir) / "*")

    def jvm_options(self) -> list[str]:
        heap = self.cfg.kafka.heap
        return [
            f"-Xmx{heap}", "-Xms64m",
            # Kafka's own defaults (kafka-run-class.sh), plus: die on OOM rather than limp on.
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.dir}",
        ]

    def argv(self, binary: str) -> list[str]:
        return [binary, *self.jvm_options(), "-cp", self.classpath(), self.main_class, str(self.properties_file)]

    def server_properties(self) -> str:
        k = self.cfg.kafka
        lines = {
            # One node, both roles; the controller quorum is this node alone (static voters).
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{k.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{k.port},CONTROLLER://127.0.0.1:{k.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{k.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # Topics are created explicitly (tidemark.io.kafka_admin.ensure_topic) with their partition count.
            "auto.create.topics.enable": "false",
            "num.partitions": str(k.partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # Internal topics: replication 1 on one node; fewer partitions than the default 50 (a small box).
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "8",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # A consumer group's first member is assigned at once, not after 3 s.
            "group.initial.rebalance.delay.ms": "0",
            # Threads sized for 2 shared cores (defaults: 3 network, 8 I/O).
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            # Retention by size, never by time: Kafka judges age by the records' own (producer) timestamps,
            # and replayed or simulated traffic is days old; time retention deleted such a topic within
            # 5 minutes of its creation (found the hard way). 1 GiB per partition bounds the disk instead.
            "log.retention.ms": "-1",
            "log.retention.bytes": str(1 << 30),
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())

    def log4j2_properties(self) -> str:
        log_file = self.dir / "server.log"
        return "\n".join([
            "status = warn",
            "shutdownHook = disable",
            "appender.console.type = Console",
            "appender.console.name = STDOUT",
            "appender.console.layout.type = PatternLayout",
            "appender.console.layout.pattern = [%d] %p %m (%c)%n",
            "appender.console.filter.threshold.type = ThresholdFilter",
            "appender.console.filter.threshold.level = warn",
            "appender.file.type = RollingFile",
            "appender.file.name = FILE",
            f"appender.file.fileName = {log_file}",
            f"appender.file.filePattern = {log_file}.%i",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "appender.file.policies.type = Policies",
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
            "appender.file.policies.size.size = 10MB",
            "appender.file.strategy.type = DefaultRolloverStrategy",
            "appender.file.strategy.max = 3",
            "rootLogger.level = info",
            "rootLogger.appenderRef.console.ref = STDOUT",
            "rootLogger.appenderRef.file.ref = FILE",
            # Per-request and state-change chatter.
            "logger.request.name = kafka.request.logger",
            "logger.request.level = warn",
            "logger.state.name = state.change.logger",
            "logger.state.level = warn",
            "",
        ])

    def prepare(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(self.server_properties())
        (self.dir / "log4j2.properties").write_text(self.log4j2_properties())
        if not (self.data_dir / "meta.properties").exists():
            self._format()

    def _format(self) -> None:
        """Format the log directory once (`kafka-storage.sh format`): cluster id, node id, bootstrap metadata."""
        java = self.binary() or "java"
        started = time.monotonic()
        # A short-lived JVM: the C1 compiler and the serial GC start fastest.
        argv = [java, "-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                "-cp", self.classpath(), self.format_class, "format",
                "--cluster-id", _kafka_cluster_id(), "--config", str(self.properties_file)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise StackError(f"{self.name}: formatting {self.data_dir} did not finish within 120s") from None
        if done.returncode != 0:
            detail = " ".join((done.stdout + done.stderr).split())[-400:]
            raise StackError(f"{self.name}: formatting {self.data_dir} failed: {detail}")
        log.info("formatted", extra={"service": self.name, "dir": str(self.data_dir),
                                     "seconds": round(time.monotonic() - started, 2)})

    def healthy(self) -> bool:
        """Answers a metadata request listing at least one broker (an open port alone is not enough)."""
        host, _, port = self.address.split(",")[0].strip().rpartition(":")
        if not port_open(host.strip("[]") or "127.0.0.1", int(port)):
            return False
        from tidemark.io.kafka_admin import cluster_brokers

        return bool(cluster_brokers(self.address, timeout_s=3.0))


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

    def ports(self) -> list[tuple[int, str]]:
        ch = self.cfg.clickhouse
        return [(ch.port, "CLICKHOUSE_PORT"), (ch.http_port, "CLICKHOUSE_HTTP_PORT")]

    def binary(self) -> str | None:
        return shutil.which("clickhouse-server") or shutil.which("clickhouse")

    def argv(self, binary: str) -> list[str]:
        conf = self.cfg.home / "clickhouse" / "config.xml"
        if binary.endswith("/clickhouse"):
            return [binary, "server", f"--config-file={conf}"]
        return [binary, f"--config-file={conf}"]

    def prepare(self) -> None:
        from tidemark.stack.clickhouse_conf import render
        render(self.cfg.clickhouse, self.cfg.home / "clickhouse", self.cfg.serving)

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

    def ports(self) -> list[tuple[int, str]]:
        return [(self.cfg.redis.port, "TIDEMARK_REDIS_PORT")]

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


SERVICE_TYPES: tuple[type[Service], ...] = (Broker, ClickHouse, Redis)


def services(cfg: Settings | None = None) -> list[Service]:
    cfg = cfg or settings()
    found = [cls(cfg) for cls in SERVICE_TYPES]
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
    from tidemark.serving.server import stop as stop_api
    if stop_api(cfg):  # the serving API (`tidemark serve --detach`) reads the services below
        stopped.append("api")
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
