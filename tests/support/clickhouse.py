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


def expected_minute_counts(manifests: list[dict], hour) -> dict:
    """Distinct valid events (late ones included) per minute key of one hour, over the generator's
    manifests: what the batch layer serves once the hour is published."""
    from collections import Counter

    prefix = hour.strftime("%Y-%m-%dT%H")
    total: Counter = Counter()
    for m in manifests:
        for tenant, minute, country, device, page, n_all, _on_time in m["minute_counts"]:
            if minute.startswith(prefix):
                total[(tenant, minute, country, device, page)] += n_all
    return dict(total)


def served_minute_counts(cfg: Settings, hour) -> dict:
    """The minute keys of one hour as the lambda merge serves them, keyed like `expected_minute_counts`."""
    from tidemark.hours import HOUR
    from tidemark.io.clickhouse import client
    from tidemark.lambda_merge import minute_counts

    rows = minute_counts(client(cfg.clickhouse), cfg.clickhouse.database, hour, hour + HOUR)
    return {(t, m.strftime("%Y-%m-%dT%H:%M"), c, d, p): n for t, m, c, d, p, n in rows}
