"""Ordered, idempotent ClickHouse migrations from ``schemas/clickhouse/``.

Files are named ``NNN_description.sql`` and applied in order. Each applied
file is recorded in ``schema_migrations`` with its checksum; a file that was
applied and later edited is an error (write a new migration instead). The
statements themselves are idempotent (``IF NOT EXISTS``), so a run that died
half-way through a file is safe to repeat.

``{db}`` in a file is replaced by the configured database name. The SQL must
run on ClickHouse 18.16 and on current releases (see schemas/README.md).

Two profiles render the same files (tidemark/clickhouse_ddl.py): ``embedded`` applies them as
written; ``production`` applies their replicated, distributed, TTL'd rendering with row policies
to a current ClickHouse cluster. Both record the file's own checksum, so an edited file is refused
in either.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tidemark.clickhouse_ddl import Rendering
from tidemark.clickhouse_dialect import require_production
from tidemark.config import PROJECT_ROOT, Settings
from tidemark.errors import TidemarkError
from tidemark.io.clickhouse import client, insert_rows

log = logging.getLogger(__name__)

MIGRATIONS_DIR = PROJECT_ROOT / "schemas" / "clickhouse"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


class MigrationError(TidemarkError, RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, database: str) -> list[str]:
        body = "\n".join(line for line in self.sql.splitlines() if not line.strip().startswith("--"))
        return [s.strip().replace("{db}", database) for s in body.split(";") if s.strip()]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files must be named NNN_description.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"duplicate migration numbers in {directory}")
    return found


def migrate(cfg: Settings, *, profile: str = "embedded") -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    db = cfg.clickhouse.database
    rendering = Rendering(profile, cfg)
    ch = client(cfg.clickhouse, database="default")
    if profile == "production":
        require_production(ch)
    migrations = discover()
    for statement in rendering.preamble():
        ch.execute(statement)
    applied = {v: (n, c) for v, n, c in ch.execute(f"SELECT version, name, checksum FROM {db}.schema_migrations")}
    done = []
    for mig in migrations:
        if mig.version in applied:
            if applied[mig.version][1] != mig.checksum:
                raise MigrationError(
                    f"migration {mig.name} was applied and has since changed; "
                    f"never edit an applied migration, add a new one"
                )
            continue
        for statement in rendering.statements(mig):
            ch.execute(statement)
        insert_rows(
            ch,
            f"{db}.schema_migrations",
            ("version", "name", "checksum", "applied_at"),
            [(mig.version, mig.name, mig.checksum, datetime.now(timezone.utc).replace(tzinfo=None))],
        )
        log.info("migration applied", extra={"migration": mig.name, "profile": profile})
        done.append(mig.name)
    for statement in rendering.epilogue(migrations):  # idempotent (IF NOT EXISTS): every run
        ch.execute(statement)
    return done
