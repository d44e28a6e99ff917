"""ClickHouse for tests: clean-ups that wait until the (asynchronous, on 18.16) mutations applied."""

from __future__ import annotations

from support.wait import wait_until
from tidemark.config import Settings


def forget_rows(cfg: Settings, start, end, columns: dict[str, str]) -> None:
    """Delete the rows of ``start <= column < end`` from each ``{table: column}`` and wait for the
    mutations, so a re-run against a kept test database starts from the state a fresh one has."""
    from tidemark.io.clickhouse import client

    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    p = {"s": start, "e": end}
    for table, column in columns.items():
        ch.execute(f"ALTER TABLE {db}.{table} DELETE WHERE {column} >= %(s)s AND {column} < %(e)s", p)

    def applied() -> bool:
        return not any(
            ch.execute(f"SELECT count() FROM {db}.{t} WHERE {c} >= %(s)s AND {c} < %(e)s", p)[0][0]
            for t, c in columns.items()
        )

    wait_until(applied, 120, f"the deletes of [{start}, {end}) from {', '.join(columns)} to apply")


def wait_mutations(ch, database: str, table: str, timeout_s: float = 120) -> None:
    """Wait until no mutation of ``database.table`` is left undone."""

    def pending() -> int:
        return ch.execute(
            "SELECT count() FROM system.mutations WHERE database = %(d)s AND table = %(t)s AND is_done = 0",
            {"d": database, "t": table},
        )[0][0]

    wait_until(lambda: not pending(), timeout_s, f"the mutations on {database}.{table} to finish")
