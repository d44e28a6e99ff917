"""The schema renderer (tidemark/clickhouse_ddl.py) and the version rules (tidemark/clickhouse_dialect.py),
as pure functions over the real migration files. Parsing on 26.9 and agreement with the applied
schema are in tests/integration/clickhouse/test_production_ddl.py."""

import dataclasses

import pytest

from tidemark.clickhouse_ddl import DdlError, Rendering, Table, ddl_text, parse, tenant_reader
from tidemark.config import load
from tidemark.migrations import Migration, discover


@pytest.fixture
def cfg():
    return load()


def _tables(cfg) -> dict[str, Table]:
    db = cfg.clickhouse.database
    return {t.name: t for m in discover() for t in map(parse, m.statements(db)) if isinstance(t, Table)}


def test_every_migration_statement_is_understood_by_the_renderer(cfg):
    for m in discover():
        for statement in m.statements(cfg.clickhouse.database):
            parse(statement)  # raises DdlError on anything it cannot render


def test_production_replicates_every_merge_tree_table_and_adds_a_distributed_reader(cfg):
    text = ddl_text(Rendering("production", cfg), discover())
    db, read_db = cfg.clickhouse.database, cfg.cluster.read_database
    for name, table in _tables(cfg).items():
        if table.merge_tree:
            own = f", {table.engine_args}" if table.engine_args else ""  # e.g. a ReplacingMergeTree's version
            assert (
                f"ENGINE = Replicated{table.engine}('/clickhouse/tables/{{shard}}/{db}/{name}', '{{replica}}'{own})"
                in text
            )
        key = "cityHash64(tenant_id)" if table.has_tenant else "rand()"
        assert f"ENGINE = Distributed('{cfg.cluster.name}', '{db}', '{name}', {key})" in text
        assert f"CREATE TABLE IF NOT EXISTS {read_db}.{name} ON CLUSTER" in text
    statements = [s for s in text.split(";\n") if s.strip() and not s.lstrip().startswith("--")]
    assert all("ON CLUSTER" in s or "INSERT INTO" in s for s in statements)


def test_ttl_follows_the_tiering_settings(cfg):
    tiering = dataclasses.replace(cfg.tiering, hot_days=3, lake_hot_days=40)
    text = ddl_text(Rendering("production", dataclasses.replace(cfg, tiering=tiering)), discover())
    assert "TTL minute + INTERVAL 3 DAY TO VOLUME 'cold', minute + INTERVAL 40 DAY DELETE" in text
    assert text.count("TTL hour + INTERVAL 40 DAY TO VOLUME 'cold'") == 2  # hour_rollups, day_rollups
    assert text.count(f"storage_policy = '{cfg.cluster.storage_policy}'") == 3


def test_every_table_with_tenant_rows_gets_the_tenant_policy_in_both_databases(cfg):
    text = ddl_text(Rendering("production", cfg), discover())
    tenant_tables = [n for n, t in _tables(cfg).items() if t.has_tenant and t.merge_tree]
    assert {"minute_rollups", "hour_rollups", "day_rollups", "api_keys"} <= set(tenant_tables)
    for name in tenant_tables:
        for db in (cfg.clickhouse.database, cfg.cluster.read_database):
            assert (
                f"ON {db}.{name} AS PERMISSIVE FOR SELECT USING tenant_id = getSetting('{cfg.cluster.tenant_setting}') "
                f"TO {cfg.cluster.tenant_role}" in text
            )
            assert f"ON {db}.{name} AS PERMISSIVE FOR SELECT USING 1 TO ALL EXCEPT {cfg.cluster.tenant_role}" in text


def test_embedded_profile_is_the_files_as_written_without_access_statements(cfg):
    rendering = Rendering("embedded", cfg)
    for m in discover():
        assert rendering.statements(m) == m.statements(cfg.clickhouse.database)
    assert rendering.epilogue(discover()) == []


def test_a_statement_the_renderer_does_not_know_fails_in_both_profiles(cfg):
    odd = Migration(999, "999_odd.sql", "DROP TABLE {db}.minute_rollups;")
    for profile in ("embedded", "production"):
        with pytest.raises(DdlError, match="does not know this statement"):
            Rendering(profile, cfg).statements(odd)


def test_aggregating_table_with_a_loose_column_is_refused_on_the_development_machine_too(cfg):
    """ClickHouse 26.x refuses it (allow_dimensions_outside_sorting_key); 18.16 accepted it and merged
    the column to an arbitrary value. The rule runs for the embedded profile as well."""
    loose = Migration(
        998,
        "998_loose.sql",
        "CREATE TABLE IF NOT EXISTS {db}.t (k String, d String, u AggregateFunction(uniq, String)) "
        "ENGINE = AggregatingMergeTree ORDER BY k;",
    )
    for profile in ("embedded", "production"):
        with pytest.raises(DdlError, match="column\\(s\\) d of an AggregatingMergeTree"):
            Rendering(profile, cfg).statements(loose)
    fine = Migration(997, "997_fine.sql", loose.sql.replace("ORDER BY k", "ORDER BY (k, d)"))
    assert Rendering("embedded", cfg).statements(fine)


def test_a_migration_may_not_carry_its_own_ttl(cfg):
    own = Migration(
        996,
        "996_ttl.sql",
        "CREATE TABLE IF NOT EXISTS {db}.minute_rollups2 (minute DateTime) ENGINE = MergeTree ORDER BY minute "
        "TTL minute + INTERVAL 1 DAY;",
    )
    with pytest.raises(DdlError, match="TTL comes from the tiering settings"):
        Rendering("production", cfg).statements(own)


def test_tenant_reader_pins_one_tenant_and_refuses_names_outside_the_contract(cfg):
    user, grant = tenant_reader(cfg, "acme", "a" * 64)
    assert f"SETTINGS {cfg.cluster.tenant_setting} = 'acme' CONST, readonly = 1 CONST" in user
    assert grant.endswith(f"{cfg.cluster.tenant_role} TO `tidemark_t_acme`")
    for bad in ("", "a'b", "x" * 65, "-lead"):
        with pytest.raises(DdlError):
            tenant_reader(cfg, bad, "a" * 64)
    with pytest.raises(DdlError):
        tenant_reader(cfg, "acme", "not-a-hash")


def test_unknown_profile_is_refused(cfg):
    with pytest.raises(DdlError, match="unknown profile"):
        Rendering("staging", cfg)


def test_db_ddl_prints_the_production_schema(capsys):
    from tidemark.cli import main

    assert main(["db", "ddl", "--profile", "production"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("-- Tidemark ClickHouse schema, profile production")
    assert "ReplicatedSummingMergeTree" in out and "CREATE ROW POLICY" in out
    assert main(["db", "ddl"]) == 0
    assert "Replicated" not in capsys.readouterr().out
