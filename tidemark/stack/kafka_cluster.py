"""A 3-node Apache Kafka cluster in KRaft mode (TIDEMARK_STACK=cluster): the embedded broker's jars and
settings, three times, on other ports (see `KafkaNode`).

Every node is broker and controller; the controller quorum is the three of them (static voters), so one
node may die (SIGKILL included) and the other two keep a quorum, elect leaders for its partitions and
keep acknowledging ``acks=all`` writes, since topics are replicated 3 times with min.insync.replicas=2.
Nodes start together (`tidemark.stack.services.up` launches all, then waits for each): a lone node of
a 3-voter quorum never becomes healthy.
"""

from __future__ import annotations

from pathlib import Path

from tidemark.config import Settings
from tidemark.stack.kafka import Broker, _kafka_cluster_id
from tidemark.stack.process import port_open

CLUSTER_DIR = "kafka-cluster"


def node_ports(cfg: Settings, index: int) -> tuple[int, int]:
    """(client port, controller port) of node ``index`` (from 0): the single broker's ports plus 10 x index."""
    return cfg.kafka.port + 10 * index, cfg.kafka.controller_port + 10 * index


class KafkaNode(Broker):
    """Node ``index + 1`` of the cluster. Files under TIDEMARK_HOME/kafka-cluster/node<N> (the same
    layout as the single broker's TIDEMARK_HOME/kafka); the cluster id all nodes are formatted with
    is kept in TIDEMARK_HOME/kafka-cluster/cluster.id."""

    start_timeout_s = 90.0  # three JVMs starting at once on a busy 2-core box

    def __init__(self, cfg: Settings, index: int):
        self.index = index
        self.name = f"broker-{index + 1}"
        super().__init__(cfg)

    @property
    def node_id(self) -> int:
        return self.index + 1

    @property
    def dir(self) -> Path:
        return self.cfg.home / CLUSTER_DIR / f"node{self.node_id}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port()}"

    def port(self) -> int:
        return node_ports(self.cfg, self.index)[0]

    def ports(self) -> list[tuple[int, str]]:
        client, controller = node_ports(self.cfg, self.index)
        return [
            (client, f"TIDEMARK_KAFKA_PORT (node {self.node_id} listens on it + {10 * self.index})"),
            (controller, f"TIDEMARK_KAFKA_CONTROLLER_PORT (node {self.node_id} listens on it + {10 * self.index})"),
        ]

    def properties(self) -> dict[str, str]:
        client, controller = node_ports(self.cfg, self.index)
        voters = ",".join(f"{i + 1}@127.0.0.1:{node_ports(self.cfg, i)[1]}" for i in range(self.cfg.kafka.nodes))
        replicas = str(self.cfg.kafka.nodes)
        min_isr = str(self.cfg.kafka.min_insync_replicas or 1)
        return {
            **super().properties(),
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{client}",
            # Every partition on every node, a write acknowledged by two: one node may be lost.
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            # Never elect a replica that missed acknowledged writes (Kafka's default, pinned: it is what
            # "no acknowledged event lost" rests on).
            "unclean.leader.election.enable": "false",
        }

    def cluster_id(self) -> str:
        """One id for all nodes, made by the first node formatted and kept next to their directories."""
        path = self.cfg.home / CLUSTER_DIR / "cluster.id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_kafka_cluster_id())
        return path.read_text().strip()

    def healthy(self) -> bool:
        """This node answers a metadata request and lists itself among the live (unfenced) brokers."""
        if not port_open("127.0.0.1", self.port()):
            return False
        from tidemark.io.kafka_admin import cluster_brokers

        return any(b.get("broker_id") == self.node_id and not b.get("is_fenced") for b in cluster_brokers(self.address))


def nodes(cfg: Settings) -> list[KafkaNode]:
    return [KafkaNode(cfg, i) for i in range(cfg.kafka.nodes)]
