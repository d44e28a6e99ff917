"""The embedded Postgres server: Airflow's metadata database (and Celery's result backend) in celery mode.

Debian's ``postgresql`` package (15 on bookworm; `make setup` installs it) gives the binaries under
/usr/lib/postgresql/<major>/bin. Tidemark runs its own cluster, not the package's: `initdb` once into
``$TIDEMARK_HOME/postgres/data``, then ``postgres -D`` on 127.0.0.1:TIDEMARK_POSTGRES_PORT (15432).
Postgres refuses to run as root, so a root caller runs both as the ``postgres`` system user (the package
creates it) through ``setpriv``, which execs rather than forks: the PID we record is the postmaster's.
The data directory belongs to that user; nothing else in TIDEMARK_HOME changes owner.
That user must be able to enter every parent of TIDEMARK_HOME: a home under a 0700 root directory (what
``mktemp -d`` makes) is not, so there the cluster lives under the user's own home instead,
``/var/lib/postgresql/tidemark/<digest of TIDEMARK_HOME>`` (one cluster per Tidemark home, as before).

After it answers, `ensure_airflow_database` creates the ``airflow`` role and database (idempotent).
Stopping: SIGINT is Postgres' "fast" shutdown (rolls back open transactions, checkpoints, exits in
about a second); SIGTERM would wait for every client (Airflow keeps pooled connections) to leave.
With TIDEMARK_AIRFLOW_DATABASE_URL set, Postgres is external: nothing is started, it is only checked.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from tidemark.config import Settings
from tidemark.stack.process import StackError
from tidemark.stack.service_base import Service, Status

log = logging.getLogger(__name__)

SYSTEM_USER = "postgres"  # created by Debian's postgresql-common
AIRFLOW_ROLE = "airflow"
AIRFLOW_DB = "airflow"


def bin_dir() -> Path | None:
    """The newest installed server's bin directory (/usr/lib/postgresql/15/bin), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def data_dir(cfg: Settings) -> Path:
    return cluster_root(cfg.home) / "data"


def sockets_dir(cfg: Settings) -> Path:
    return cluster_root(cfg.home) / "run"


@functools.cache
def cluster_root(home: Path) -> Path:
    """Where this home's cluster lives: ``home/postgres``, unless the server user cannot reach it."""
    inside = home / "postgres"
    if os.geteuid() != 0 or (inside / "data" / "PG_VERSION").exists():
        return inside  # not root: we are the server user; an existing cluster stays where it is
    home.mkdir(parents=True, exist_ok=True)
    if _server_user_can_enter(home):
        return inside
    uid, _ = _owner_ids()
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    outside = Path(pwd.getpwuid(uid).pw_dir) / "tidemark" / digest
    log.info(
        "postgres: %s cannot enter %s (a parent is closed to it); its cluster goes to %s", SYSTEM_USER, home, outside
    )
    return outside


def _server_user_can_enter(path: Path) -> bool:
    """Ask the kernel, as the server user, rather than re-deriving its permission rules (ACLs, groups)."""
    done = subprocess.run(_as_server_user(["test", "-x", str(path)]), capture_output=True, timeout=10)
    return done.returncode == 0


def _as_server_user(argv: list[str]) -> list[str]:
    """``argv`` run as the unprivileged server user when we are root (postgres refuses root)."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={SYSTEM_USER}", f"--regid={SYSTEM_USER}", "--init-groups", "--", *argv]


def _owner_ids() -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise StackError(
            f"postgres: there is no '{SYSTEM_USER}' user to run the server as (Postgres refuses root); "
            f"run `make setup` (apt-get install postgresql creates it)"
        ) from None
    return entry.pw_uid, entry.pw_gid


def init_cluster(cfg: Settings, binaries: Path) -> None:
    """`initdb` into `data_dir` unless it holds a cluster already (trust auth on 127.0.0.1 only)."""
    data = data_dir(cfg)
    if (data / "PG_VERSION").exists():
        return
    uid, gid = _owner_ids()
    data.parent.parent.mkdir(parents=True, exist_ok=True)
    for path in (data.parent, data):
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
    if not _server_user_can_enter(data):
        raise StackError(
            f"postgres: the '{SYSTEM_USER}' user cannot enter {data}; give it search (x) permission on "
            f"every parent directory, or set TIDEMARK_HOME to a directory it can reach"
        )
    data.chmod(0o700)  # postgres refuses a group- or world-readable data directory
    done = subprocess.run(
        _as_server_user(
            [str(binaries / "initdb"), "-D", str(data), "-U", SYSTEM_USER, "-E", "UTF8", "--locale=C.UTF-8"]
            + ["--auth=trust", "--no-instructions"]
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise StackError(f"postgres: initdb {data} failed:\n{(done.stderr or done.stdout)[-2000:]}")


def _connect(dsn: str, timeout: float = 2.0):
    import psycopg2

    return psycopg2.connect(dsn, connect_timeout=max(1, int(timeout)))


def _libpq_url(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg2://...`` -> ``postgresql://...`` (libpq does not know the driver suffix)."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def ensure_airflow_database(cfg: Settings) -> None:
    """Create the ``airflow`` role and database on the embedded server (no-op when they exist)."""
    conn = _connect(f"host=127.0.0.1 port={cfg.airflow.postgres_port} user={SYSTEM_USER} dbname=postgres")
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (AIRFLOW_ROLE,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE ROLE {AIRFLOW_ROLE} LOGIN PASSWORD %s", (AIRFLOW_ROLE,))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (AIRFLOW_DB,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE DATABASE {AIRFLOW_DB} OWNER {AIRFLOW_ROLE} ENCODING 'UTF8'")
    finally:
        conn.close()


class Postgres(Service):
    name = "postgres"
    binary_hint = "run `make setup` (apt-get install postgresql)"
    start_timeout_s = 60.0
    stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM ("smart") waits for Airflow's pooled connections
    stop_timeout_s = 20.0
    stop_escalation = ((signal.SIGQUIT, 5.0),)  # "immediate" shutdown, then SIGKILL

    def signature(self) -> str:
        return str(data_dir(self.cfg))  # the postmaster's command line names its data directory

    def family(self) -> tuple[str, ...]:
        return ("postgres:",)  # its backends retitle themselves "postgres: checkpointer", ...

    @property
    def external(self) -> bool:
        return self.cfg.airflow.postgres_external

    @property
    def address(self) -> str:
        if self.external:
            parts = urlsplit(self.cfg.airflow.database_url)
            return f"postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"
        return f"postgresql://127.0.0.1:{self.port()}"

    def port(self) -> int:
        return self.cfg.airflow.postgres_port

    def ports(self) -> list[tuple[int, str]]:
        return [(self.port(), "TIDEMARK_POSTGRES_PORT")]

    def binary(self) -> str | None:
        found = bin_dir()
        return str(found / "postgres") if found else None

    def prepare(self) -> None:
        binaries = bin_dir()
        assert binaries is not None  # up() checked binary() first
        init_cluster(self.cfg, binaries)
        # The server user writes its socket here; /var/run/postgresql may not exist (no package cluster).
        sockets = sockets_dir(self.cfg)
        sockets.mkdir(parents=True, exist_ok=True)
        uid, gid = _owner_ids()
        os.chown(sockets, uid, gid)

    def argv(self, binary: str) -> list[str]:
        return _as_server_user(
            [binary, "-D", str(data_dir(self.cfg)), "-h", "127.0.0.1", "-p", str(self.port())]
            + ["-k", str(sockets_dir(self.cfg))]
            # A metadata database for one Airflow: few connections, small memory, no fsync tuning.
            + ["-c", "max_connections=100", "-c", "shared_buffers=64MB", "-c", "log_min_messages=warning"]
        )

    def healthy(self) -> bool:
        import psycopg2

        dsn = (
            _libpq_url(self.cfg.airflow.database_url)
            if self.external
            else f"host=127.0.0.1 port={self.port()} user={SYSTEM_USER} dbname=postgres"
        )
        try:
            _connect(dsn, timeout=1.0).close()
            return True
        except psycopg2.Error:
            return False

    def up(self) -> Status:
        status = super().up()
        if not self.external:
            ensure_airflow_database(self.cfg)
        return status
