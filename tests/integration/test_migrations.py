import dataclasses

import pytest
from support.wait import wait_until

from tidemark.io.clickhouse import client
from tidemark.migrations import MigrationError, discover, migrate


@pytest.fixture
def scratch_db(stack):
    cfg = dataclasses.replace(stack, clickhouse=dataclasses.replace(stack.clickhouse, database="tidemark_migrations"))
    ch = client(cfg.clickhouse, database="default")
    ch.execute("DROP DATABASE IF EXISTS tidemark_migrations")
    yield cfg, ch
    ch.execute("DROP DATABASE IF EXISTS tidemark_migrations")


def _schema(ch) -> list:
    return ch.execute(
        "SELECT name, engine, create_table_query FROM system.tables "
        "WHERE database = 'tidemark_migrations' AND name != 'schema_migrations' ORDER BY name"
    )


def test_migrations_twice_give_the_same_schema(scratch_db):
    cfg, ch = scratch_db
    first = migrate(cfg)
    assert first == [m.name for m in discover()]
    schema = _schema(ch)
    assert {"minute_rollups", "hour_rollups", "rollup_input", "stream_batches"} <= {row[0] for row in schema}

    assert migrate(cfg) == []
    assert _schema(ch) == schema
    versions = ch.execute("SELECT version FROM tidemark_migrations.schema_migrations ORDER BY version")
    assert [v for (v,) in versions] == [m.version for m in discover()]


def test_edited_applied_migration_is_refused(scratch_db):
    cfg, ch = scratch_db
    migrate(cfg)
    ch.execute("ALTER TABLE tidemark_migrations.schema_migrations UPDATE checksum = 'edited' WHERE version = 1")
    # Mutations are asynchronous on 18.16: wait until it applied.
    wait_until(
        lambda: ch.execute("SELECT count() FROM tidemark_migrations.schema_migrations WHERE checksum = 'edited'")[0][0],
        10,
        "the edit of the applied migration's checksum to apply",
        interval_s=0.1,
    )
    with pytest.raises(MigrationError, match="has since changed"):
        migrate(cfg)


def test_rollup_views_aggregate_on_insert(stack, clickhouse):
    """The Null input table feeds both grains; distinct users merge across minutes."""
    from datetime import datetime

    from tidemark.io.clickhouse import insert_rows

    db = stack.clickhouse.database
    cols = ("layer", "version", "tenant_id", "minute", "country", "device", "page", "events", "user_ids")
    tenant = "migration-test-tenant"
    insert_rows(
        clickhouse,
        f"{db}.rollup_input",
        cols,
        [
            ("stream", 1, tenant, datetime(2026, 1, 1, 3, 1), "US", "mobile", "/a", 3, ["u1", "u2"]),
            ("stream", 1, tenant, datetime(2026, 1, 1, 3, 2), "DE", "mobile", "/a", 2, ["u1", "u3"]),
        ],
    )
    minute = clickhouse.execute(
        f"SELECT sum(events), uniqCombinedMerge(users) FROM {db}.minute_rollups WHERE tenant_id = %(t)s", {"t": tenant}
    )
    assert minute == [(5, 3)]
    hour = clickhouse.execute(
        f"SELECT dimension, value, sum(events), uniqCombinedMerge(users) FROM {db}.hour_rollups "
        f"WHERE tenant_id = %(t)s GROUP BY dimension, value ORDER BY dimension, value",
        {"t": tenant},
    )
    assert hour == [
        ("all", "", 5, 3),
        ("country", "DE", 2, 2),
        ("country", "US", 3, 2),
        ("device", "mobile", 5, 3),
        ("page", "/a", 5, 3),
    ]
