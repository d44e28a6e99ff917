"""Airflow 3 as production runs it: Postgres + the CeleryExecutor, one process per component.

``TIDEMARK_AIRFLOW_MODE=celery`` (the default under ``TIDEMARK_STACK=cluster``) replaces
``airflow standalone`` on SQLite (tidemark.stack.airflow) with:

    postgres (tidemark.stack.postgres)        metadata database and Celery result backend
    airflow api-server                        UI, REST API, the execution API tasks report to
    airflow scheduler                         CeleryExecutor: queues task instances on Redis
    airflow dag-processor                     parses dags/
    airflow triggerer                         deferred tasks
    airflow celery worker                     runs the tasks (Redis broker, database TIDEMARK_AIRFLOW_CELERY_REDIS_DB)

`stack up` starts them in that order (`components`); `airflow db migrate` runs before the api-server
starts (idempotent: seconds when the schema is current). Every component gets `celery_env`: the same
`airflow_env` as standalone (home, DAG folder, ports, ``spark_default``, Tidemark's settings) with the
database, executor and Celery settings on top, and one JWT secret for all, kept in the Airflow home
(tokens the scheduler signs for a task must validate in the api-server).

Health: the api-server answers /api/v2/monitor/health; the scheduler, dag-processor and triggerer are
healthy when that report says so (their heartbeats in the database); the worker when it answers a
Celery ``ping`` on the broker (the remote-control channel every Celery worker listens on).
Stopping: SIGINT, as the FACTS say for every Airflow component (a Celery worker's SIGINT is its warm
shutdown: running tasks finish, up to the escalation), then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tidemark.config import Settings
from tidemark.stack.airflow import airflow_env, airflow_home, api_url, health
from tidemark.stack.process import StackError
from tidemark.stack.service_base import Service

SECRET_FILE = "tidemark_jwt_secret"
# The worker's name on the broker (`celery -d`); the host part keeps two machines' workers apart.
WORKER_NAME = f"tidemark@{socket.gethostname()}"


def broker_url(cfg: Settings) -> str:
    """The serving layer's Redis, in a database of the broker's own (TIDEMARK_AIRFLOW_CELERY_REDIS_DB)."""
    parts = urlsplit(cfg.redis.url)
    return urlunsplit(parts._replace(path=f"/{cfg.airflow.celery_broker_db}"))


def result_backend(cfg: Settings) -> str:
    """Celery's database result backend on the metadata database (SQLAlchemy URL, ``db+`` prefix)."""
    return f"db+{cfg.airflow.metadata_url}"


def _jwt_secret(home: Path) -> str:
    """One secret for every component, created on first use (0600 in the Airflow home)."""
    path = home / SECRET_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def celery_env(cfg: Settings, *, home: Path | None = None) -> dict[str, str]:
    """`airflow_env` for the celery mode: Postgres, CeleryExecutor, Redis broker, a shared JWT secret."""
    env = airflow_env(cfg, home=home)
    secret = _jwt_secret(Path(env["AIRFLOW_HOME"]))
    env.update(
        {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": cfg.airflow.metadata_url,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": broker_url(cfg),
            "AIRFLOW__CELERY__RESULT_BACKEND": result_backend(cfg),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(cfg.airflow.celery_concurrency),
            "AIRFLOW__API_AUTH__JWT_SECRET": secret,
            "AIRFLOW__API__SECRET_KEY": secret,
            # A small pool per process: five components (plus task processes) share one small server.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "2",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "4",
        }
    )
    return env


def process_env(cfg: Settings) -> dict[str, str]:
    """The environment of Airflow processes in the mode configured (`tidemark airflow ...` uses it)."""
    return celery_env(cfg) if cfg.airflow.celery else airflow_env(cfg)


def _airflow_binary() -> str | None:
    local = Path(sys.executable).parent / "airflow"
    return str(local) if local.exists() else None


def migrate_metadata(cfg: Settings) -> None:
    """``airflow db migrate`` against the metadata database (creates or upgrades the schema)."""
    binary = _airflow_binary()
    if binary is None:
        raise StackError("airflow: its binary was not found; run `make setup`")
    done = subprocess.run([binary, "db", "migrate"], env=celery_env(cfg), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise StackError(
            f"airflow: `airflow db migrate` on {cfg.airflow.metadata_url.split('@')[-1]} failed; "
            f"is Postgres up (tidemark stack status)?\n{(done.stderr or done.stdout)[-2000:]}"
        )


class AirflowComponent(Service):
    """One Airflow 3 component in its own process group; subclasses name the subcommand."""

    command: tuple[str, ...] = ()
    binary_hint = "run `make setup` (pip installs apache-airflow and its Celery provider into the venv)"
    start_timeout_s = 180.0  # a cold import of Airflow on a busy 2-core box takes tens of seconds
    stop_signal = signal.SIGINT
    stop_timeout_s = 20.0
    stop_escalation = ((signal.SIGTERM, 5.0),)
    health_part = ""  # its key in /api/v2/monitor/health

    def signature(self) -> str:
        return "airflow " + " ".join(self.command)

    def family(self) -> tuple[str, ...]:
        return (self.signature(),)

    @property
    def address(self) -> str:
        return api_url(self.cfg)

    def port(self) -> int:
        return self.cfg.airflow.port

    def ports(self) -> list[tuple[int, str]]:
        return []  # only the api-server and the worker listen (they say so)

    def binary(self) -> str | None:
        return _airflow_binary()

    def argv(self, binary: str) -> list[str]:
        return [binary, *self.command]

    def env(self) -> dict[str, str]:
        return celery_env(self.cfg)

    def prepare(self) -> None:
        airflow_home(self.cfg).mkdir(parents=True, exist_ok=True)

    def healthy(self) -> bool:
        report = health(self.address) or {}
        return (report.get(self.health_part) or {}).get("status") == "healthy"


class AirflowApiServer(AirflowComponent):
    name = "airflow-api-server"
    command = ("api-server",)
    health_part = "metadatabase"

    def signature(self) -> str:
        return "airflow api"  # it retitles itself "airflow api_server -- host:..." (setproctitle)

    def ports(self) -> list[tuple[int, str]]:
        return [(self.cfg.airflow.port, "TIDEMARK_AIRFLOW_PORT")]

    def prepare(self) -> None:
        super().prepare()
        migrate_metadata(self.cfg)  # before any component touches the schema


class AirflowScheduler(AirflowComponent):
    name = "airflow-scheduler"
    command = ("scheduler",)
    health_part = "scheduler"


class AirflowDagProcessor(AirflowComponent):
    name = "airflow-dag-processor"
    command = ("dag-processor",)
    health_part = "dag_processor"


class AirflowTriggerer(AirflowComponent):
    name = "airflow-triggerer"
    command = ("triggerer",)
    health_part = "triggerer"

    def ports(self) -> list[tuple[int, str]]:
        return [(self.cfg.airflow.trigger_log_port, "TIDEMARK_AIRFLOW_TRIGGER_LOG_PORT")]


@lru_cache(maxsize=8)
def _control_app(url: str):
    from celery import Celery

    return Celery("tidemark-health", broker=url)


def worker_answers(cfg: Settings, timeout: float = 1.0) -> bool:
    """The Celery worker replies to a ``ping`` broadcast on the broker (it consumes, not only runs)."""
    try:
        replies = _control_app(broker_url(cfg)).control.ping(destination=[WORKER_NAME], timeout=timeout)
    except Exception:  # noqa: BLE001 - broker down or no reply: not healthy (yet)
        return False
    return any(WORKER_NAME in reply for reply in replies or [])


class AirflowCeleryWorker(AirflowComponent):
    name = "airflow-celery-worker"
    command = ("celery", "worker")
    stop_timeout_s = 30.0  # warm shutdown lets a running task finish its current step

    def signature(self) -> str:
        # Matches before and after it retitles itself
        # "[celeryd: NAME:MainProcess] -active- (celery worker --celery-hostname NAME ...)".
        return f"celery worker --celery-hostname {WORKER_NAME}"

    def family(self) -> tuple[str, ...]:
        # Pool processes retitle themselves ("[celeryd: tidemark@host:ForkPoolWorker-1]"); the log server
        # is "airflow serve-logs".
        return (self.signature(), "celeryd:", "airflow serve-logs")

    def ports(self) -> list[tuple[int, str]]:
        return [(self.cfg.airflow.worker_log_port, "TIDEMARK_AIRFLOW_WORKER_LOG_PORT")]

    @property
    def address(self) -> str:
        return f"{WORKER_NAME} on {broker_url(self.cfg)}"

    def argv(self, binary: str) -> list[str]:
        return [
            *super().argv(binary),
            "--celery-hostname",
            WORKER_NAME,
            "--concurrency",
            str(self.cfg.airflow.celery_concurrency),
            "--pid",
            str(airflow_home(self.cfg) / "airflow-celery-worker.pid"),
        ]

    def healthy(self) -> bool:
        return worker_answers(self.cfg)


COMPONENT_TYPES: tuple[type[AirflowComponent], ...] = (
    AirflowApiServer,
    AirflowScheduler,
    AirflowDagProcessor,
    AirflowTriggerer,
    AirflowCeleryWorker,
)
