"""What differs between ClickHouse 18.16 (the embedded server) and current releases, in one place.

Tidemark's SQL is written once and runs on both (schemas/README.md). Where the versions differ,
the difference is handled here and tested on both (tests/integration/clickhouse/):

* **AggregatingMergeTree columns.** 26.x refuses a column that is neither in the sorting key nor
  an aggregate (``AggregateFunction``/``SimpleAggregateFunction``): background merges would keep an
  arbitrary value of it (setting ``allow_dimensions_outside_sorting_key``, off by default). 18.16
  accepts it silently. ``table_problems`` applies 26.x's rule to every migration, so such a table is
  refused on the development machine too, not first in production.
* **What the embedded server lacks** (TTL, storage policies, ``ON CLUSTER``, row policies, users
  and roles in SQL, ``ADD COLUMN IF NOT EXISTS``): used by the production rendering only
  (tidemark/clickhouse_ddl.py), which therefore requires ``PRODUCTION_MIN_VERSION``.
* **Result types.** None differ for the SQL Tidemark sends: the current-ClickHouse test compares
  every answer on both versions, Python types included (an aware and a naive datetime differ).
  Where the code computes with DateTime values it reads them as epoch seconds (``toUInt32(...)``),
  which cannot depend on a time zone.
* **Storage** (part names, parts per partition, bytes, rows of Summing tables before a merge; 26.x
  also collapses equal keys within one INSERT) differs by design; the code only asks storage
  "any rows?" and "which partitions?", which agree.
"""

from __future__ import annotations

import re

from tidemark.errors import TidemarkError

# The oldest release the production DDL supports (docker/compose.yaml runs 26.9); everything it uses exists there.
PRODUCTION_MIN_VERSION = (24, 8)
EMBEDDED_VERSION = (18, 16)

_AGGREGATE_TYPE = re.compile(r"^(Simple)?AggregateFunction\(")


class DialectError(TidemarkError, RuntimeError):
    pass


def server_version(ch) -> tuple[int, ...]:
    ((text,),) = ch.execute("SELECT version()")
    return tuple(int(p) for p in str(text).split(".")[:3] if p.isdigit())


def require_production(ch) -> None:
    """Refuse to apply the production DDL to a server that cannot run it."""
    version = server_version(ch)
    if version[:2] < PRODUCTION_MIN_VERSION:
        raise DialectError(
            f"the production profile needs ClickHouse {'.'.join(map(str, PRODUCTION_MIN_VERSION))} or later "
            f"(replicated tables, TTL moves, row policies); this server is {'.'.join(map(str, version))}. "
            f"Use --profile embedded for the embedded 18.16 server"
        )


def table_problems(name: str, engine: str, columns: list[tuple[str, str]], sort_key: list[str]) -> list[str]:
    """Why current ClickHouse would refuse (or silently mis-merge) this table; empty when fine."""
    problems = []
    if engine.endswith("AggregatingMergeTree"):
        loose = [c for c, t in columns if c not in sort_key and not _AGGREGATE_TYPE.match(t)]
        if loose:
            problems.append(
                f"{name}: column(s) {', '.join(loose)} of an AggregatingMergeTree are neither in the sorting "
                f"key nor aggregates; ClickHouse 24+ refuses the table (18.16 accepted it and merged them "
                f"to an arbitrary value). Add them to ORDER BY or make them SimpleAggregateFunction(any, ...)"
            )
    return problems
