"""The embedded stack's composition root: Apache Kafka (KRaft), ClickHouse and Redis (and, opt-in, Airflow:
`airflow standalone` on SQLite, or in celery mode Postgres + its components, tidemark.stack.airflow_celery;
S3Proxy when a storage root is s3a://). Under TIDEMARK_STACK=cluster: three Kafka nodes instead of one,
and a Spark standalone cluster (stack/kafka_cluster.py, stack/spark_cluster.py).

``up`` starts what is not running (skipping services configured as external),
waits until each answers, creates the topics and applies the ClickHouse
migrations. ``down`` stops what ``up`` started, by PID file and process group,
with a bounded escalation to SIGKILL (see `tidemark.stack.process`).

Each service is a `tidemark.stack.service_base.Service` in a module of its own (kafka,
clickhouse, redis, airflow); only this module knows them all. The service classes
are re-exported here for callers that name them through ``services``.
"""

from __future__ import annotations

import os
import signal

from tidemark.config import Settings
from tidemark.stack.airflow import Airflow
from tidemark.stack.airflow import enabled as airflow_enabled
from tidemark.stack.airflow_celery import COMPONENT_TYPES as AIRFLOW_CELERY_TYPES
from tidemark.stack.clickhouse import ClickHouse
from tidemark.stack.kafka import Broker
from tidemark.stack.kafka_cluster import KafkaNode
from tidemark.stack.kafka_cluster import nodes as kafka_nodes
from tidemark.stack.object_store import ObjectStore
from tidemark.stack.postgres import Postgres
from tidemark.stack.redis import Redis
from tidemark.stack.service_base import Service, Status
from tidemark.stack.spark_cluster import SparkMaster, SparkWorker
from tidemark.stack.spark_cluster import daemons as spark_daemons
from tidemark.stack.workloads import stop_api, stop_probe, stop_stream

__all__ = [
    "Airflow",
    "Broker",
    "ClickHouse",
    "KafkaNode",
    "ObjectStore",
    "Postgres",
    "Redis",
    "SERVICE_TYPES",
    "Service",
    "SparkMaster",
    "SparkWorker",
    "Status",
    "down",
    "services",
    "status",
    "stop",
    "up",
]

SERVICE_TYPES: tuple[type[Service], ...] = (Broker, ClickHouse, Redis)


def airflow_services(cfg: Settings, *, celery: bool) -> list[Service]:
    """Airflow's processes in start order: standalone, or Postgres then each celery-mode component."""
    if not celery:
        return [Airflow(cfg)]
    return [Postgres(cfg), *(cls(cfg) for cls in AIRFLOW_CELERY_TYPES)]


def services(cfg: Settings) -> list[Service]:
    found = [cls(cfg) for cls in SERVICE_TYPES]
    if cfg.stack.cluster:  # the Kafka nodes replace the single broker; the Spark cluster comes after them
        found = [*kafka_nodes(cfg), *spark_daemons(cfg), *(s for s in found if not isinstance(s, Broker))]
    if cfg.object_store.enabled:  # a storage root is s3a:// (embedded S3Proxy, or a check of the external store)
        found.append(ObjectStore(cfg))
    if airflow_enabled(cfg):  # opt-in (TIDEMARK_AIRFLOW=1): 15-30 s and ~1 GB that most tests don't need
        found += airflow_services(cfg, celery=cfg.airflow.celery)  # after Redis: the Celery broker
    return found


def up(cfg: Settings, *, migrate: bool = True) -> list[Status]:
    running = services(cfg)
    for node in running:  # a node of a 3-voter quorum is healthy only once a second one runs
        if isinstance(node, KafkaNode):
            node.launch()
    statuses = [svc.up() for svc in running]
    from tidemark.io.kafka_admin import ensure_topic

    k = cfg.kafka
    for topic, partitions in ((k.topic, k.partitions), (k.dead_letter_topic, 1)):
        ensure_topic(
            k.bootstrap_servers,
            topic,
            partitions,
            replication_factor=k.replication_factor,
            min_insync=k.min_insync_replicas,
        )
    if migrate:
        from tidemark.migrations import migrate as apply_migrations

        apply_migrations(cfg)
    return statuses


def down(cfg: Settings) -> list[str]:
    """Stop in reverse start order. Returns the names of the services stopped."""
    stopped = []
    if stop_stream(cfg):  # jobs first: they write to the services below
        stopped.append("stream")
    if stop_api(cfg):  # the serving API (`tidemark serve --detach`) reads the services below
        stopped.append("api")
    if stop_probe(cfg):  # the SLO monitor: after the API, so it records the API going down
        stopped.append("slo-probe")
    running = services(cfg)
    if not any(isinstance(s, ObjectStore) for s in running):
        running.append(ObjectStore(cfg))  # stop an S3Proxy started earlier with an s3a:// root, whatever now
    # Stop an Airflow started earlier (TIDEMARK_AIRFLOW=1, either mode), whatever the settings say now.
    names = {s.name for s in running}
    running += [s for s in airflow_services(cfg, celery=False) if s.name not in names]
    running += [s for s in airflow_services(cfg, celery=True) if s.name not in names]
    # ...and whatever the other profile (TIDEMARK_STACK) started: nodes and daemons it has, this one not.
    names = {s.name for s in running}
    other = [Broker(cfg)] if cfg.stack.cluster else [*kafka_nodes(_cluster(cfg)), *spark_daemons(_cluster(cfg))]
    running = [s for s in other if s.name not in names] + running
    return stopped + stop(running)


def stop(running: list[Service]) -> list[str]:
    """Stop ``running`` in reverse order; the names of those that were running. All Kafka nodes are
    told to stop at once: one by one, the last ones would wait out a controlled shutdown against a
    quorum that is gone (30 s each, then SIGKILL)."""
    signalled = set()
    for node in running:
        if isinstance(node, KafkaNode) and (pid := node.proc.pid()) is not None:
            os.killpg(pid, signal.SIGTERM)
            signalled.add(node.name)
    return [svc.name for svc in reversed(running) if svc.down() or svc.name in signalled]


def _cluster(cfg: Settings) -> Settings:
    """``cfg`` as the cluster profile sees it (its nodes' and daemons' names, ports and files)."""
    from dataclasses import replace

    return replace(cfg, stack=replace(cfg.stack, profile="cluster"), kafka=replace(cfg.kafka, nodes=3))


def status(cfg: Settings) -> list[Status]:
    return [svc.status() for svc in services(cfg)]
