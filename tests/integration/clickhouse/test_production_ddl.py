"""The production DDL (tidemark/clickhouse_ddl.py) against a current ClickHouse (chdb 26.9) and the
embedded 18.16: it parses on 26.9, replicated and access parts included, and it describes the same
schema as the embedded migrations: one definition, two renderings.

chdb has no ZooKeeper and no access control: replicated engines, ``ON CLUSTER``, users, roles and
row policies cannot run in process. They are parsed there (``formatQuery``), and chdb's refusal of
access control is asserted, so this file says plainly what it could not run."""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict

import pytest
from clickhouse_driver.errors import ServerException
from support.dual import on_chdb

from tidemark.clickhouse_ddl import READER_SETTINGS, WRITER_SETTINGS, Rendering, tenant_reader
from tidemark.clickhouse_dialect import DialectError
from tidemark.io.clickhouse import client
from tidemark.migrations import discover, migrate


def _literal(sql: str) -> str:
    return "'" + sql.replace("\\", "\\\\").replace("'", "\\'") + "'"


def production(cfg, database: str) -> Rendering:
    cluster = dataclasses.replace(cfg.cluster, read_database=f"{database}_all")
    ch = dataclasses.replace(cfg.clickhouse, database=database)
    return Rendering("production", dataclasses.replace(cfg, cluster=cluster, clickhouse=ch))


def every_statement(rendering: Rendering) -> list[str]:
    migrations = discover()
    return [
        *rendering.preamble(),
        *(s for m in migrations for s in rendering.statements(m)),
        *rendering.epilogue(migrations),
    ]


def test_production_ddl_parses_on_clickhouse_26_9_replicated_and_access_parts_included(stack, chdb_dir):
    ch = client(on_chdb(stack, chdb_dir, "default").clickhouse)
    rendering = production(stack, "tidemark_prod")
    statements = every_statement(rendering) + tenant_reader(rendering.cfg, "acme.eu-1", "0" * 64)
    kinds: defaultdict[str, int] = defaultdict(int)
    for sql in statements:
        ((formatted,),) = ch.execute(f"SELECT formatQuery({_literal(sql)})")
        kinds[" ".join(formatted.split()[:2])] += 1
        assert "ON CLUSTER" in formatted or formatted.startswith("INSERT"), formatted
    text = "\n".join(statements)
    assert "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/tidemark_prod/minute_rollups', '{replica}')" in text
    assert "ENGINE = Distributed('tidemark', 'tidemark_prod', 'minute_rollups', cityHash64(tenant_id))" in text
    assert kinds["CREATE ROW"] >= 10 and kinds["CREATE USER"] == 1 and kinds["CREATE ROLE"] == 1, dict(kinds)
    # the settings the publication protocol relies on exist under these names on 26.9
    names = {n for (n,) in ch.execute("SELECT name FROM system.settings")}
    assert set(WRITER_SETTINGS) | set(READER_SETTINGS) <= names


def test_chdb_has_no_access_control_so_row_policies_are_parsed_not_run(stack, chdb_dir):
    ch = client(on_chdb(stack, chdb_dir, "default").clickhouse)
    policy = next(s for s in every_statement(production(stack, "tidemark_prod")) if s.startswith("CREATE ROW POLICY"))
    with pytest.raises(ServerException, match="ACCESS_DENIED|Not enough privileges|not supported"):
        ch.execute(policy.replace(" ON CLUSTER 'tidemark'", ""))


# -- one definition, two renderings ------------------------------------------------------------


def _runnable_here(sql: str) -> str:
    """A production statement as a single server without ZooKeeper or storage policies can run it:
    no ON CLUSTER, no replication arguments, no TTL moves. Written independently of the renderer
    (regular expressions on its output), so the comparison below checks the renderer's text."""
    sql = re.sub(r"\s+ON CLUSTER '[^']*'", "", sql)
    sql = re.sub(r"\bReplicated(\w*MergeTree)\('[^']*', '[^']*'(?:, )?", r"\1(", sql)
    sql = re.sub(r"\nTTL [^\n]*", "", sql)
    sql = re.sub(r",?\s*storage_policy = '[^']*'", "", sql)
    return re.sub(r"\nSETTINGS\s*$", "", sql)


def _schema(ch, database: str) -> dict[str, dict]:
    tables = {
        name: {"engine": engine, "sorting_key": sk, "partition_key": pk, "primary_key": prk, "columns": []}
        for name, engine, sk, pk, prk in ch.execute(
            "SELECT name, engine, sorting_key, partition_key, primary_key FROM system.tables WHERE database = %(d)s",
            {"d": database},
        )
    }
    for table, name, typ in ch.execute(
        "SELECT table, name, type FROM system.columns WHERE database = %(d)s", {"d": database}
    ):  # system.columns lists a table's columns in their order
        tables[table]["columns"].append((name, typ))
    return tables


@pytest.fixture
def databases(stack, chdb_dir):
    names = {"chdb_embedded": "tidemark_render_e", "chdb_production": "tidemark_render_p"}
    server_db = f"{stack.clickhouse.database}_render"
    chdb_admin = client(on_chdb(stack, chdb_dir, "default").clickhouse)
    server_admin = client(stack.clickhouse, database="default")
    for db in names.values():
        chdb_admin.execute(f"DROP DATABASE IF EXISTS {db}")
    server_admin.execute(f"DROP DATABASE IF EXISTS {server_db}")
    yield names, server_db
    for db in names.values():
        chdb_admin.execute(f"DROP DATABASE IF EXISTS {db}")
    server_admin.execute(f"DROP DATABASE IF EXISTS {server_db}")


def test_production_and_embedded_renderings_describe_the_same_schema(stack, chdb_dir, databases):
    names, server_db = databases
    # embedded: the migration code itself, on 26.9 (chdb) and on 18.16
    migrate(on_chdb(stack, chdb_dir, names["chdb_embedded"]))
    migrate(dataclasses.replace(stack, clickhouse=dataclasses.replace(stack.clickhouse, database=server_db)))
    # production: every statement that targets the storage database, made runnable on one server
    prod_db = names["chdb_production"]
    rendering = production(on_chdb(stack, chdb_dir, prod_db), prod_db)
    ch = client(on_chdb(stack, chdb_dir, "default").clickhouse)
    migrations = discover()
    replicated = 0
    for sql in rendering.preamble() + [s for m in migrations for s in rendering.statements(m)]:
        if re.match(rf"^(CREATE TABLE IF NOT EXISTS|ALTER TABLE|CREATE DATABASE IF NOT EXISTS) {prod_db}_all\b", sql):
            assert "Distributed(" in sql or sql.startswith(("ALTER", "CREATE DATABASE")), sql
            continue  # the read database's Distributed tables need a cluster: parsed by the test above
        replicated += "ENGINE = Replicated" in sql
        ch.execute(_runnable_here(sql))

    embedded = _schema(ch, names["chdb_embedded"])
    produced = _schema(ch, prod_db)
    old = _schema(client(stack.clickhouse, database="default"), server_db)
    assert set(embedded) == set(produced) == set(old)
    merge_tree = [t for t, d in embedded.items() if d["engine"].endswith("MergeTree")]
    assert replicated == len(merge_tree), "every MergeTree table is replicated in production"
    for table in embedded:
        e, p, o = embedded[table], produced[table], old[table]
        assert p["columns"] == e["columns"] == o["columns"], table
        assert p["engine"] == e["engine"] == o["engine"], table
        for key in ("sorting_key", "partition_key", "primary_key"):
            assert p[key] == e[key] == o[key], (table, key)


def test_production_profile_refuses_the_embedded_18_16_server(stack):
    cfg = dataclasses.replace(stack, clickhouse=dataclasses.replace(stack.clickhouse, database="tidemark_never"))
    with pytest.raises(DialectError, match="needs ClickHouse 24.8 or later"):
        migrate(cfg, profile="production")
    server = client(stack.clickhouse, database="default")
    assert server.execute("SELECT count() FROM system.databases WHERE name = 'tidemark_never'") == [(0,)]
