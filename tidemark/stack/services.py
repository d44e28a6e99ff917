"""The embedded stack's composition root: Apache Kafka (KRaft), ClickHouse and Redis (and, opt-in, Airflow:
`airflow standalone` on SQLite, or in celery mode Postgres + its components, tidemark.stack.airflow_celery;
S3Proxy when a storage root is s3a://).

``up`` starts what is not running (skipping services configured as external),
waits until each answers, creates the topics and applies the ClickHouse
migrations. ``down`` stops what ``up`` started, by PID file and process group,
with a bounded escalation to SIGKILL (see `tidemark.stack.process`).

Each service is a `tidemark.stack.service_base.Service` in a module of its own (kafka,
clickhouse, redis, airflow); only this module knows them all. The service classes
are re-exported here for callers that name them through ``services``.
"""

from __future__ import annotations

from tidemark.config import Settings
from tidemark.stack.airflow import Airflow
from tidemark.stack.airflow import enabled as airflow_enabled
from tidemark.stack.airflow_celery import COMPONENT_TYPES as AIRFLOW_CELERY_TYPES
from tidemark.stack.clickhouse import ClickHouse
from tidemark.stack.kafka import Broker
from tidemark.stack.object_store import ObjectStore
from tidemark.stack.postgres import Postgres
from tidemark.stack.redis import Redis
from tidemark.stack.service_base import Service, Status
from tidemark.stack.workloads import stop_api, stop_probe, stop_stream

__all__ = [
    "Airflow",
    "Broker",
    "ClickHouse",
    "ObjectStore",
    "Postgres",
    "Redis",
    "SERVICE_TYPES",
    "Service",
    "Status",
    "down",
    "services",
    "status",
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
    if cfg.object_store.enabled:  # a storage root is s3a:// (embedded S3Proxy, or a check of the external store)
        found.append(ObjectStore(cfg))
    if airflow_enabled(cfg):  # opt-in (TIDEMARK_AIRFLOW=1): 15-30 s and ~1 GB that most tests don't need
        found += airflow_services(cfg, celery=cfg.airflow.celery)  # after Redis: the Celery broker
    return found


def up(cfg: Settings, *, migrate: bool = True) -> list[Status]:
    statuses = [svc.up() for svc in services(cfg)]
    from tidemark.io.kafka_admin import ensure_topic

    ensure_topic(cfg.kafka.bootstrap_servers, cfg.kafka.topic, cfg.kafka.partitions)
    ensure_topic(cfg.kafka.bootstrap_servers, cfg.kafka.dead_letter_topic, 1)
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
    for svc in reversed(running):
        if svc.down():
            stopped.append(svc.name)
    return stopped


def status(cfg: Settings) -> list[Status]:
    return [svc.status() for svc in services(cfg)]
