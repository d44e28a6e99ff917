"""ClickHouse connections: the one place that turns ClickHouse settings into a client.

The io layer knows connections only: callers pass the settings (``tidemark.config``), and
tables, schemas and protocols live with the layers that own them.

Two roles: the *writer* (pipeline jobs, migrations) and the *reader* (the
serving API: a readonly user limited to the Tidemark database with a
per-query time limit enforced server-side by its profile).

clickhouse-driver hangs on values inlined in INSERT SQL, so every insert goes
through ``insert_rows`` with rows passed as parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from clickhouse_driver import Client

from tidemark.config import ClickHouseSettings


def client(
    cfg: ClickHouseSettings,
    *,
    reader: bool = False,
    database: str | None = None,
    connect_timeout: float = 5,
    send_receive_timeout: float = 60,
) -> Client:
    return Client(
        host=cfg.host,
        port=cfg.port,
        user=cfg.reader_user if reader else cfg.user,
        password=cfg.reader_password if reader else cfg.password,
        database=database if database is not None else cfg.database,
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
