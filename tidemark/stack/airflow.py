"""The embedded Airflow 3 (``airflow standalone``) that schedules the batch layer.

Optional: the stack starts it only when ``TIDEMARK_AIRFLOW=1`` (it costs ~30 s and
~1 GB), see `enabled`. Everything Airflow needs is derived here from the settings passed in
as environment variables (`airflow_env`), so the DAGs, ``dag.test()`` in tests and
``airflow`` CLI calls all see the same home, DAG folder and ``spark_default``:

    tidemark airflow dags list        # the airflow CLI in that environment
    (`shell_exports(cfg)` renders it as `export` arguments for a shell)

Its knobs are `tidemark.config.AirflowSettings`: TIDEMARK_AIRFLOW (0/1), TIDEMARK_AIRFLOW_PORT
(8080), TIDEMARK_AIRFLOW_WORKER_LOG_PORT (8793), TIDEMARK_AIRFLOW_TRIGGER_LOG_PORT (8794) and
TIDEMARK_BATCH_START (hourly_recompute's start_date, read when the DAG file is parsed, so it must be
set before Airflow starts). The two log servers bind 0.0.0.0 whatever we do; only their ports move.

DAGs are created paused: on a plain `stack up` the default batch start (2026-11-01) would otherwise
make the scheduler catch up every hour since. Whoever runs the batch layer unpauses through the REST
API (`tidemark.stack.airflow_api`; the demo does, with the catchup starting at its first hour).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
import urllib.request
from pathlib import Path

from tidemark.config import PROJECT_ROOT, Settings
from tidemark.errors import TidemarkError
from tidemark.spark import python_env
from tidemark.stack.service_base import Service

DAGS_FOLDER = PROJECT_ROOT / "dags"
ADMIN_USER = "admin"
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"


def enabled(cfg: Settings) -> bool:
    """Whether `tidemark stack up` manages the embedded Airflow (TIDEMARK_AIRFLOW=1)."""
    return cfg.airflow.enabled


def airflow_home(cfg: Settings) -> Path:
    return cfg.home / "airflow"


def api_url(cfg: Settings) -> str:
    return f"http://127.0.0.1:{cfg.airflow.port}"


def spark_connection(cfg: Settings) -> str:
    """``spark_default`` in Airflow's JSON connection format.

    For conn_type 'spark' with a host and no port the provider takes the host verbatim as
    --master (so ``local[2]``, ``spark://h:7077`` or ``k8s://https://h`` all work). The
    ``spark-binary`` extra must be a bare name (spark-submit, spark2-submit, spark3-submit)
    looked up on PATH; `airflow_env` puts the venv's bin first so it is the venv's spark-submit.
    """
    return json.dumps(
        {
            "conn_type": "spark",
            "host": cfg.spark.master,
            "extra": {"spark-binary": "spark-submit", "deploy-mode": "client"},
        },
        separators=(",", ":"),
    )


def airflow_env(cfg: Settings, *, home: Path | None = None) -> dict[str, str]:
    """Environment for every Airflow process (standalone, CLI, dag.test()). ``home`` moves
    AIRFLOW_HOME (metadata DB, logs, password file) elsewhere, e.g. a test's tmp dir."""
    home = Path(home) if home is not None else airflow_home(cfg)
    port = cfg.airflow.port
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",  # default 32 forks 32 workers (~1.1 GB)
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # catchup starts on unpause only (see above)
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / PASSWORDS_FILE),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",  # Airflow 2's dag_dir_list_interval
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",  # the services' own logs stay quiet...
        "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "airflow.task=INFO tidemark=INFO",  # ...task logs (the UI's) do not
        "AIRFLOW__LOGGING__UVICORN_LOGGING_LEVEL": "WARNING",
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(cfg.airflow.worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(cfg.airflow.trigger_log_port),
        "AIRFLOW_CONN_SPARK_DEFAULT": spark_connection(cfg),
        # Tasks read Tidemark's settings from the environment they inherit; the DAG processor reads
        # hourly_recompute's start_date from it, so the value in force is the one Airflow started with.
        "TIDEMARK_HOME": str(cfg.home),
        "TIDEMARK_BATCH_START": cfg.airflow.batch_start,
        "PATH": venv_bin if not path else f"{venv_bin}{os.pathsep}{path}",
        **python_env(),  # interpreter and SPARK_LOCAL_IP for spark-submit: defined once, in tidemark.spark
    }


def shell_exports(cfg: Settings) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in airflow_env(cfg).items())


class AirflowNotStarted(TidemarkError, FileNotFoundError):
    """Airflow has not started yet: the files it writes on its first start are missing."""


def admin_password(cfg: Settings) -> str:
    """The simple auth manager's generated password for `ADMIN_USER` (exists once Airflow has started)."""
    path = airflow_home(cfg) / PASSWORDS_FILE
    try:
        return json.loads(path.read_text())[ADMIN_USER]
    except FileNotFoundError:
        raise AirflowNotStarted(
            f"{path} does not exist yet: start Airflow first (TIDEMARK_AIRFLOW=1 tidemark stack up)"
        ) from None


def health(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=timeout) as resp:
            return json.loads(resp.read())
    except Exception:  # noqa: BLE001 - not up yet, or not Airflow: either way no health to report
        return None


class Airflow(Service):
    """``airflow standalone``: api-server, scheduler (LocalExecutor), dag-processor, triggerer.

    Stopping: SIGINT to the process group, as Ctrl-C would (SIGTERM to the supervisor orphans the
    scheduler, api-server and triggerer, and idle LocalExecutor workers ignore SIGTERM). Idle, every
    process is gone in about 5 s. A busy one (a task running, a DAG file being parsed) gets
    `stop_timeout_s`, then SIGTERM to every process that belongs to it (group, session, descendants),
    then SIGKILL, so `down` takes at most ~30 s and leaves nothing behind.

    The old > 60 s stops came from an inherited *ignored* SIGINT (a stack started from a background job
    of a non-interactive shell): the children exited but the supervisor never saw KeyboardInterrupt and
    waited for SIGKILL. `ManagedProcess.start` now resets the disposition in the child.
    """

    name = "airflow"
    binary_hint = "run `make setup` (pip installs apache-airflow into the venv)"
    start_timeout_s = 120.0  # 13-30 s when idle; a busy 2-core box needs more
    stop_signal = signal.SIGINT
    stop_timeout_s = 20.0
    stop_escalation = ((signal.SIGTERM, 5.0),)

    def signature(self) -> str:
        return "airflow standalone"

    def family(self) -> tuple[str, ...]:
        return ("airflow",)  # airflow scheduler / api_server / triggerer / serve-logs / worker -- LocalExecutor

    @property
    def address(self) -> str:
        return api_url(self.cfg)

    def port(self) -> int:
        return self.cfg.airflow.port

    def ports(self) -> list[tuple[int, str]]:
        live = self.cfg.airflow
        return [
            (live.port, "TIDEMARK_AIRFLOW_PORT"),
            (live.worker_log_port, "TIDEMARK_AIRFLOW_WORKER_LOG_PORT"),
            (live.trigger_log_port, "TIDEMARK_AIRFLOW_TRIGGER_LOG_PORT"),
        ]

    def binary(self) -> str | None:
        local = Path(sys.executable).parent / "airflow"
        return str(local) if local.exists() else shutil.which("airflow")

    def argv(self, binary: str) -> list[str]:
        return [binary, "standalone"]

    def env(self) -> dict[str, str]:
        return airflow_env(self.cfg)

    def prepare(self) -> None:
        airflow_home(self.cfg).mkdir(parents=True, exist_ok=True)

    def healthy(self) -> bool:
        report = health(self.address)
        if not report:
            return False
        return all((report.get(part) or {}).get("status") == "healthy" for part in ("metadatabase", "scheduler"))
