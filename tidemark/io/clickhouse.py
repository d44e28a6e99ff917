"""ClickHouse connections: the one place that turns ClickHouse settings into a client.

The io layer knows connections only: callers pass the settings (``tidemark.config``), and
tables, schemas and protocols live with the layers that own them.

Two roles: the *writer* (pipeline jobs, migrations) and the *reader* (the
serving API: a readonly user limited to the Tidemark database with a
per-query time limit enforced server-side by its profile).

clickhouse-driver hangs on values inlined in INSERT SQL, so every insert goes
through ``insert_rows`` with rows passed as parameters.

Two engines answer the same SQL. A server (ClickHouse 18.16 embedded, any current release in
production) through clickhouse-driver's native protocol; and, when the host is ``chdb:<dir>``, a
current ClickHouse **in process** (PyPI ``chdb-core``, tidemark/io/chdb_client.py), which the
tests use to prove every query on a current release. Whatever differs between the versions is
written down in tidemark/clickhouse_dialect.py, nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from clickhouse_driver import Client

from tidemark.config import ClickHouseSettings

# host scheme -> factory(settings, database) of a client with clickhouse-driver's `execute`.
# `chdb:` is built in; a test may add its own (e.g. one that sends every query to two engines).
_CONNECTORS: dict[str, Callable[..., Any]] = {}


def register_connector(scheme: str, factory: Callable[..., Any]) -> None:
    """Route hosts written ``<scheme>:<rest>`` to ``factory(cfg, database=...)``."""
    _CONNECTORS[scheme] = factory


def _in_process(cfg: ClickHouseSettings, *, database: str) -> Any:
    from tidemark.io.chdb_client import InProcessClient

    return InProcessClient(cfg.host.partition(":")[2], database)


register_connector("chdb", _in_process)


def client(
    cfg: ClickHouseSettings,
    *,
    reader: bool = False,
    database: str | None = None,
    connect_timeout: float = 5,
    send_receive_timeout: float = 60,
) -> Client:
    database = database if database is not None else cfg.database
    scheme, sep, _rest = cfg.host.partition(":")
    if sep and scheme in _CONNECTORS:  # an IPv6 address ("::1") has no registered scheme
        return _CONNECTORS[scheme](cfg, database=database)
    return Client(
        host=cfg.host,
        port=cfg.port,
        user=cfg.reader_user if reader else cfg.user,
        password=cfg.reader_password if reader else cfg.password,
        database=database,
        connect_timeout=connect_timeout,
        send_receive_timeout=send_receive_timeout,
        compression=False,
    )


def insert_rows(ch: Client, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """INSERT rows passed as parameters (never inlined). Returns the rows sent."""
    rows = list(rows)
    if not rows:
        return 0
    ch.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", rows)
    return len(rows)
