"""One schema definition, two renderings: the embedded DDL and the production DDL.

The definition is ``schemas/clickhouse/NNN_*.sql`` (applied in order by tidemark/migrations.py).
Every statement is parsed here, for both profiles, so a statement this module cannot render
fails on the development machine, never first in production.

* **embedded** (ClickHouse 18.16, one server): the files as written.
* **production** (a current ClickHouse cluster, ``PRODUCTION_MIN_VERSION`` or later):
  - storage tables keep their names, database and columns, as ``Replicated*MergeTree`` with the
    ``{shard}``/``{replica}`` macros, created ``ON CLUSTER``. Every statement the pipeline sends
    (inserts, ``ALTER ... DELETE``, ``DROP PARTITION``, ``OPTIMIZE``, ``system.parts``) therefore
    works unchanged on any replica: a one-shard cluster (see docs/production.md) holds all data on
    every replica, and mutations and partition drops replicate;
  - a ``Distributed`` table of the same name in the read database (``CLICKHOUSE_READ_DATABASE``,
    default ``<database>_all``) over each storage table, sharded by tenant: readers (the serving
    API) point their database there and are balanced across replicas and shards;
  - TTL from the tiering settings: minute rollups move to the cold volume after
    ``TIDEMARK_HOT_DAYS`` (where the tiering DAG normally drops them, once the warm tier is
    verified) and are deleted after ``TIDEMARK_LAKE_HOT_DAYS`` (no hour that old can be
    recomputed); hour and day rollups move to the cold volume after ``TIDEMARK_LAKE_HOT_DAYS``,
    when their raw events move to the cold lake;
  - access: a tenant reader role, and on every table with a ``tenant_id`` a row policy that shows
    a member of that role only the rows of the tenant its user is pinned to (a constant custom
    setting), so a leaked reader credential reads one tenant at most; everyone else keeps all rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tidemark.clickhouse_dialect import table_problems
from tidemark.config import ClusterSettings, Settings, TieringSettings
from tidemark.errors import TidemarkError

PROFILES = ("embedded", "production")
MERGE_TREE = re.compile(r"^(Replacing|Summing|Aggregating|Collapsing|VersionedCollapsing|Graphite)?MergeTree$")
_CLAUSES = ("PARTITION BY", "ORDER BY", "PRIMARY KEY", "SAMPLE BY", "TTL", "SETTINGS")
_CLAUSE = re.compile(r"\b(" + "|".join(c.replace(" ", r"\s+") for c in _CLAUSES) + r")\b", re.IGNORECASE)
_CREATE_TABLE = re.compile(r"^CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)\.(\w+)\s*\(", re.IGNORECASE)
_CREATE_VIEW = re.compile(
    r"^CREATE\s+MATERIALIZED\s+VIEW\s+IF\s+NOT\s+EXISTS\s+(\w+)\.(\w+)\s+(TO\s+\w+\.\w+\s+AS\s+.*)$",
    re.IGNORECASE | re.DOTALL,
)
_ALTER = re.compile(r"^ALTER\s+TABLE\s+(\w+)\.(\w+)\s+((ADD|MODIFY)\s+COLUMN\s+(.*))$", re.IGNORECASE | re.DOTALL)
_INSERT_SELECT = re.compile(r"^INSERT\s+INTO\s+(\w+)\.(\w+)\s+SELECT\s", re.IGNORECASE)
_ENGINE = re.compile(r"^\s*ENGINE\s*=\s*(\w+)\s*(\(.*?\))?\s*(?=$|" + _CLAUSE.pattern + ")", re.IGNORECASE | re.DOTALL)
# Tables whose rows leave by TTL (rule: time column, moves after, deletes after), in days.
TTL_RULES = {
    "minute_rollups": ("minute", "hot_days", "lake_hot_days"),
    "hour_rollups": ("hour", "lake_hot_days", None),
    "day_rollups": ("hour", "lake_hot_days", None),
}


class DdlError(TidemarkError, RuntimeError):
    pass


# -- the parsed definition -----------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    database: str
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, type) in order
    engine: str
    engine_args: str  # the engine's own arguments, without parentheses ('' when none)
    clauses: tuple[tuple[str, str], ...]  # (PARTITION BY | ORDER BY | ... , expression) in order

    def clause(self, keyword: str) -> str | None:
        return next((expr for kw, expr in self.clauses if kw == keyword), None)

    @property
    def sort_key(self) -> list[str]:
        order = (self.clause("ORDER BY") or "").strip()
        if order.startswith("(") and order.endswith(")"):
            order = order[1:-1]
        return [k.strip() for k in split_top(order) if k.strip()]

    @property
    def merge_tree(self) -> bool:
        return bool(MERGE_TREE.match(self.engine))

    @property
    def has_tenant(self) -> bool:
        return any(c == "tenant_id" for c, _ in self.columns)


@dataclass(frozen=True)
class View:
    database: str
    name: str
    body: str  # "TO db.target AS SELECT ..."


@dataclass(frozen=True)
class Alter:
    database: str
    table: str
    action: str  # ADD | MODIFY
    column: str  # "name Type"


@dataclass(frozen=True)
class InsertSelect:
    database: str
    table: str
    sql: str


Statement = Table | View | Alter | InsertSelect


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses and quotes."""
    out, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'" and (i == 0 or text[i - 1] != "\\"):
            quote = not quote
        elif not quote and ch in "([":
            depth += 1
        elif not quote and ch in ")]":
            depth -= 1
        elif not quote and depth == 0 and ch == sep:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def _closing(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise DdlError(f"unbalanced parentheses in: {text[:120]}")


def _strip_comments(sql: str) -> str:
    return "\n".join(re.sub(r"--.*$", "", line) for line in sql.splitlines())


def parse(statement: str) -> Statement:
    """One migration statement (``{db}`` already substituted) as the renderer understands it."""
    sql = _strip_comments(statement).strip().rstrip(";").strip()
    if m := _CREATE_TABLE.match(sql):
        close = _closing(sql, m.end() - 1)
        columns = []
        for item in split_top(sql[m.end() : close]):
            name, _, typ = item.strip().partition(" ")
            if not name or not typ.strip():
                raise DdlError(f"{m.group(2)}: cannot read column definition {item.strip()!r}")
            columns.append((name, " ".join(typ.split())))
        rest = sql[close + 1 :]
        engine = _ENGINE.match(rest)
        if not engine:
            raise DdlError(f"{m.group(2)}: no ENGINE = ... after the columns")
        tail = rest[engine.end(2) if engine.group(2) else engine.end(1) :]
        marks = list(_CLAUSE.finditer(tail))
        ends = [x.start() for x in marks[1:]] + [len(tail)] if marks else []
        clauses = tuple(
            (" ".join(mk.group(1).upper().split()), " ".join(tail[mk.end() : end].split()))
            for mk, end in zip(marks, ends, strict=True)
        )
        if tail[: marks[0].start() if marks else len(tail)].strip():
            raise DdlError(f"{m.group(2)}: cannot read {tail.strip()[:80]!r} after the engine")
        return Table(
            m.group(1), m.group(2), tuple(columns), engine.group(1), (engine.group(2) or "")[1:-1].strip(), clauses
        )
    if m := _CREATE_VIEW.match(sql):
        return View(m.group(1), m.group(2), m.group(3).strip())
    if m := _ALTER.match(sql):
        return Alter(m.group(1), m.group(2), m.group(4).upper(), " ".join(m.group(5).split()))
    if m := _INSERT_SELECT.match(sql):
        return InsertSelect(m.group(1), m.group(2), sql)
    raise DdlError(
        f"the production renderer (tidemark/clickhouse_ddl.py) does not know this statement; teach it "
        f"before adding such a migration: {' '.join(sql.split())[:160]}"
    )


def check(statement: Statement) -> None:
    """Refuse what a current ClickHouse would refuse (tidemark/clickhouse_dialect.py)."""
    if isinstance(statement, Table):
        key = statement.sort_key if statement.merge_tree else []
        problems = table_problems(statement.name, statement.engine, list(statement.columns), key)
        if problems:
            raise DdlError("; ".join(problems))


# -- production ----------------------------------------------------------------------------------


def _on(cluster: ClusterSettings) -> str:
    return f"ON CLUSTER '{cluster.name}'"


def ttl(table: Table, tiering: TieringSettings, cluster: ClusterSettings) -> str | None:
    rule = TTL_RULES.get(table.name)
    if rule is None:
        return None
    column, move_after, delete_after = rule
    parts = [f"{column} + INTERVAL {getattr(tiering, move_after)} DAY TO VOLUME '{cluster.cold_volume}'"]
    if delete_after:
        parts.append(f"{column} + INTERVAL {getattr(tiering, delete_after)} DAY DELETE")
    return ", ".join(parts)


def sharding_key(table: Table) -> str:
    # One tenant's rows on one shard: its dashboards read one shard, and its states merge there.
    return "cityHash64(tenant_id)" if table.has_tenant else "rand()"


def render_table(table: Table, cfg: Settings) -> list[str]:
    cluster, db = cfg.cluster, table.database
    columns = ",\n".join(f"    {name} {typ}" for name, typ in table.columns)
    head = f"CREATE TABLE IF NOT EXISTS {db}.{table.name} {_on(cluster)}\n(\n{columns}\n)\n"
    if not table.merge_tree:  # Null (the insert fan-out): a plain local table on every node
        engine = f"ENGINE = {table.engine}" + (f"({table.engine_args})" if table.engine_args else "")
        return [head + engine, _distributed(table, cfg)]
    args = [f"'/clickhouse/tables/{{shard}}/{db}/{table.name}'", "'{replica}'"]
    if table.engine_args:
        args.append(table.engine_args)
    lines = [f"ENGINE = Replicated{table.engine}({', '.join(args)})"]
    clauses = [(kw, expr) for kw, expr in table.clauses if kw not in ("TTL", "SETTINGS")]
    lines += [f"{kw} {expr}" for kw, expr in clauses]
    rule = ttl(table, cfg.tiering, cluster)
    if table.clause("TTL"):
        raise DdlError(f"{table.name}: TTL comes from the tiering settings (TTL_RULES), not the migration")
    settings = [s.strip() for s in split_top(table.clause("SETTINGS") or "") if s.strip()]
    if rule:
        lines.append(f"TTL {rule}")
        settings.append(f"storage_policy = '{cluster.storage_policy}'")
    if settings:
        lines.append("SETTINGS " + ", ".join(settings))
    return [head + "\n".join(lines), _distributed(table, cfg)]


def _distributed(table: Table, cfg: Settings) -> str:
    cluster, db = cfg.cluster, table.database
    return (
        f"CREATE TABLE IF NOT EXISTS {cluster.read_database}.{table.name} {_on(cluster)} AS {db}.{table.name}\n"
        f"ENGINE = Distributed('{cluster.name}', '{db}', '{table.name}', {sharding_key(table)})"
    )


def render_production(statement: Statement, cfg: Settings) -> list[str]:
    on = _on(cfg.cluster)
    if isinstance(statement, Table):
        return render_table(statement, cfg)
    if isinstance(statement, View):  # on every node: each fans out the inserts it receives
        return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {statement.database}.{statement.name} {on} {statement.body}"]
    if isinstance(statement, Alter):
        action = "ADD COLUMN IF NOT EXISTS" if statement.action == "ADD" else "MODIFY COLUMN"
        return [
            f"ALTER TABLE {db}.{statement.table} {on} {action} {statement.column}"
            for db in (statement.database, cfg.cluster.read_database)
        ]
    # INSERT ... SELECT (a backfill): once, on the replica migrate talks to; replication copies it
    return [statement.sql]


# Settings the publication protocol needs on a replicated cluster: a registry row must never be
# visible where the rows it points to are not. Writers wait until a majority of replicas hold each
# INSERT (and Distributed inserts until every shard has it); readers go to the first healthy
# replica in <remote_servers> order (the one writers use) and skip replicas lagging over 10 s.
WRITER_SETTINGS = {"insert_quorum": "'auto'", "insert_quorum_parallel": "1", "distributed_foreground_insert": "1"}
READER_SETTINGS = {"load_balancing": "'in_order'", "max_replica_delay_for_distributed_queries": "10"}


def access_statements(cfg: Settings, tables: list[Table]) -> list[str]:
    """Settings profiles, the tenant reader role and its grants, and the row policies of every table
    with tenant rows (on the storage table, which shards check, and on the Distributed one)."""
    cluster, db, on = cfg.cluster, cfg.clickhouse.database, _on(cfg.cluster)
    role = cluster.tenant_role
    out = [
        f"CREATE SETTINGS PROFILE IF NOT EXISTS tidemark_writer {on} SETTINGS "
        + ", ".join(f"{k} = {v}" for k, v in WRITER_SETTINGS.items()),
        f"CREATE ROLE IF NOT EXISTS {role} {on}",
        f"CREATE SETTINGS PROFILE IF NOT EXISTS tidemark_reader {on} SETTINGS "
        + ", ".join(f"{k} = {v}" for k, v in READER_SETTINGS.items())
        + f" TO {role}",
        f"GRANT {on} SELECT ON {db}.* TO {role}",
        f"GRANT {on} SELECT ON {cluster.read_database}.* TO {role}",
    ]
    for t in tables:
        if not (t.has_tenant and t.merge_tree):
            continue
        for target in (f"{db}.{t.name}", f"{cluster.read_database}.{t.name}"):
            out += [
                f"CREATE ROW POLICY IF NOT EXISTS tidemark_tenant {on} ON {target} AS PERMISSIVE FOR SELECT "
                f"USING tenant_id = getSetting('{cluster.tenant_setting}') TO {role}",
                f"CREATE ROW POLICY IF NOT EXISTS tidemark_all_rows {on} ON {target} AS PERMISSIVE FOR SELECT "
                f"USING 1 TO ALL EXCEPT {role}",
            ]
    return out


_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # the event contract's tenant_id rule


def tenant_reader(cfg: Settings, tenant: str, password_sha256_hex: str) -> list[str]:
    """A reader credential pinned to one tenant: the row policies show it that tenant's rows only,
    and the pin is a constant setting the user cannot change."""
    if not _TENANT.match(tenant):
        raise DdlError(f"tenant {tenant!r} does not follow the contract's tenant_id rule")
    if not re.fullmatch(r"[0-9a-f]{64}", password_sha256_hex):
        raise DdlError("password_sha256_hex must be 64 lower-case hex digits")
    cluster, on = cfg.cluster, _on(cfg.cluster)
    user = f"`tidemark_t_{tenant}`"
    return [
        f"CREATE USER IF NOT EXISTS {user} {on} IDENTIFIED WITH sha256_hash BY '{password_sha256_hex}' "
        f"SETTINGS {cluster.tenant_setting} = '{tenant}' CONST, readonly = 1 CONST",
        f"GRANT {on} {cluster.tenant_role} TO {user}",
    ]


# -- both profiles -------------------------------------------------------------------------------


BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
    "(version UInt32, name String, checksum String, applied_at DateTime) "
    "ENGINE = MergeTree ORDER BY version"
)


@dataclass(frozen=True)
class Rendering:
    """What `tidemark db migrate` applies for one profile: the preamble (databases and the
    migrations log) each run, each migration's statements once, then the epilogue each run."""

    profile: str
    cfg: Settings

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise DdlError(f"unknown profile {self.profile!r}; one of {', '.join(PROFILES)}")

    @property
    def database(self) -> str:
        return self.cfg.clickhouse.database

    def preamble(self) -> list[str]:
        db = self.database
        if self.profile == "embedded":
            return [f"CREATE DATABASE IF NOT EXISTS {db}", BOOKKEEPING.format(db=db)]
        on = _on(self.cfg.cluster)
        return [
            f"CREATE DATABASE IF NOT EXISTS {db} {on}",
            f"CREATE DATABASE IF NOT EXISTS {self.cfg.cluster.read_database} {on}",
            *render_production(parse(BOOKKEEPING.format(db=db)), self.cfg),
        ]

    def statements(self, migration) -> list[str]:
        raw = migration.statements(self.database)
        parsed = [parse(s) for s in raw]
        for p in parsed:
            check(p)
        if self.profile == "embedded":
            return raw
        return [sql for p in parsed for sql in render_production(p, self.cfg)]

    def epilogue(self, migrations) -> list[str]:
        if self.profile == "embedded":
            return []  # 18.16 ignores row policies: the application's tenant filter is the wall
        tables = [p for m in migrations for p in map(parse, m.statements(self.database)) if isinstance(p, Table)]
        return access_statements(self.cfg, tables)


def ddl_text(rendering: Rendering, migrations) -> str:
    """Everything `db migrate` would apply to an empty database, as one SQL script."""
    out = [f"-- Tidemark ClickHouse schema, profile {rendering.profile} (generated by `tidemark db ddl`)"]
    out += [s + ";" for s in rendering.preamble()]
    for m in migrations:
        out.append(f"\n-- {m.name}")
        out += [s + ";" for s in rendering.statements(m)]
    epilogue = rendering.epilogue(migrations)
    if epilogue:
        out.append("\n-- access: tenant readers see their own tenant's rows only")
        out += [s + ";" for s in epilogue]
    return "\n".join(out) + "\n"
