"""Apache Kafka 4 in KRaft mode, the embedded broker (see `Broker`)."""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from tidemark.contract.event_time import MAX_RECORD_SKEW
from tidemark.stack.process import StackError, port_open
from tidemark.stack.service_base import Service

log = logging.getLogger(__name__)
_AFTER_MAX_MS = int(MAX_RECORD_SKEW.total_seconds() * 1000)


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
    binary_hint = "run `make setup` (it installs Java 17 and Maven, and copies the Kafka jars into jvm/lib/kafka)"
    start_timeout_s = 60.0  # 2-4 s idle; a JVM on a busy 2-core box needs more
    stop_timeout_s = 30.0  # SIGTERM is a controlled shutdown (flushes, closes the log): ~2 s
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
        return [
            (self.cfg.kafka.port, "TIDEMARK_KAFKA_PORT"),
            (self.cfg.kafka.controller_port, "TIDEMARK_KAFKA_CONTROLLER_PORT"),
        ]

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
            f"-Xmx{heap}",
            "-Xms64m",
            # Kafka's own defaults (kafka-run-class.sh), plus: die on OOM rather than limp on.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.dir}",
        ]

    def argv(self, binary: str) -> list[str]:
        return [binary, *self.jvm_options(), "-cp", self.classpath(), self.main_class, str(self.properties_file)]

    def server_properties(self) -> str:
        return "".join(f"{key}={value}\n" for key, value in self.properties().items())

    def properties(self) -> dict[str, str]:
        k = self.cfg.kafka
        return {
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
            # Record timestamps: the producer's CreateTime, bounded ahead only (the same settings
            # io.kafka_admin.TOPIC_CONFIGS puts on each topic; schemas/README.md, "Kafka timestamps").
            # Not LogAppendTime: the Kafka timestamp is the event's arrival, which late-data semantics
            # judge event_time against; a relay, a backfill, a mirror or the traffic generator carry the
            # original arrival, and the broker's append time would make their events look on time (or
            # their arrival hours wrong). Ahead: at most 1 h (Kafka 4's default, pinned), as the
            # contract's MAX_RECORD_SKEW; a far-future timestamp also pins Kafka's time index.
            # Behind: no broker bound (before.max.ms stays unlimited): the broker refuses a whole
            # produce batch for one stale timestamp, failing its valid neighbours at the producer,
            # while the stream dead-letters exactly that record (implausible_kafka_time, judged
            # against its own batch time), raw bytes kept.
            "log.message.timestamp.type": "CreateTime",
            "log.message.timestamp.after.max.ms": str(_AFTER_MAX_MS),
        }

    def log4j2_properties(self) -> str:
        log_file = self.dir / "server.log"
        return "\n".join(
            [
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
            ]
        )

    def prepare(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(self.server_properties())
        (self.dir / "log4j2.properties").write_text(self.log4j2_properties())
        if not (self.data_dir / "meta.properties").exists():
            self._format()

    def cluster_id(self) -> str:
        """The KRaft cluster id its log directory is formatted with (a fresh one for the single node)."""
        return _kafka_cluster_id()

    def _format(self) -> None:
        """Format the log directory once (`kafka-storage.sh format`): cluster id, node id, bootstrap metadata."""
        java = self.binary() or "java"
        started = time.monotonic()
        # A short-lived JVM: the C1 compiler and the serial GC start fastest.
        argv = [
            java,
            "-Xmx128m",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            self.classpath(),
            self.format_class,
            "format",
            "--cluster-id",
            self.cluster_id(),
            "--config",
            str(self.properties_file),
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise StackError(f"{self.name}: formatting {self.data_dir} did not finish within 120s") from None
        if done.returncode != 0:
            detail = " ".join((done.stdout + done.stderr).split())[-400:]
            raise StackError(f"{self.name}: formatting {self.data_dir} failed: {detail}")
        log.info(
            "formatted",
            extra={"service": self.name, "dir": str(self.data_dir), "seconds": round(time.monotonic() - started, 2)},
        )

    def healthy(self) -> bool:
        """Answers a metadata request listing at least one broker (an open port alone is not enough)."""
        host, _, port = self.address.split(",")[0].strip().rpartition(":")
        if not port_open(host.strip("[]") or "127.0.0.1", int(port)):
            return False
        from tidemark.io.kafka_admin import cluster_brokers

        return bool(cluster_brokers(self.address, timeout_s=3.0))
