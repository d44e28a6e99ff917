"""TIDEMARK_STACK=cluster: what `stack up` would run, and on which ports (no process is started)."""

from __future__ import annotations

import pytest
from support.settings import settings_with

from tidemark.stack import services

PORTS = {"TIDEMARK_KAFKA_PORT": "30092", "TIDEMARK_KAFKA_CONTROLLER_PORT": "30093", "TIDEMARK_SPARK_PORT_BASE": ""}


def test_the_cluster_profile_runs_three_brokers_and_a_spark_cluster():
    cfg = settings_with({**PORTS, "TIDEMARK_STACK": "cluster", "KAFKA_BOOTSTRAP_SERVERS": "", "SPARK_MASTER": ""})
    names = [s.name for s in services.services(cfg)]
    assert names[:6] == ["broker-1", "broker-2", "broker-3", "spark-master", "spark-worker-1", "spark-worker-2"]
    assert "broker" not in names and {"clickhouse", "redis"} <= set(names)
    assert cfg.kafka.bootstrap_servers == "127.0.0.1:30092,127.0.0.1:30102,127.0.0.1:30112"
    assert (cfg.kafka.replication_factor, cfg.kafka.min_insync_replicas) == (3, 2)
    assert cfg.spark.master == "spark://127.0.0.1:30170"  # TIDEMARK_KAFKA_PORT + 78: moved with Kafka
    ports = [p for s in services.services(cfg)[:6] for p, _ in s.ports()]
    assert len(set(ports)) == len(ports) == 12
    node = services.services(cfg)[1]
    props = node.properties()
    assert props["node.id"] == "2" and props["min.insync.replicas"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:30093,2@127.0.0.1:30103,3@127.0.0.1:30113"


def test_the_embedded_profile_is_unchanged():
    cfg = settings_with({**PORTS, "TIDEMARK_STACK": "", "KAFKA_BOOTSTRAP_SERVERS": "", "SPARK_MASTER": ""})
    assert [s.name for s in services.services(cfg)][:1] == ["broker"]
    assert cfg.kafka.bootstrap_servers == "127.0.0.1:30092" and cfg.kafka.replication_factor == -1
    assert cfg.spark.master == "local[2]"


def test_an_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="TIDEMARK_STACK"):
        settings_with({"TIDEMARK_STACK": "kubernetes"})
