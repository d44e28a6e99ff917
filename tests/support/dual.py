"""A client that sends every statement to two ClickHouse versions and compares the answers.

Registered as the ``dual:`` host scheme (tidemark.io.clickhouse.register_connector), so the
pipeline's own functions run unchanged: whatever SQL they build and send reaches the embedded
18.16 server and chdb 26.9 alike, with the same parameters (and the same Python clock values),
and each answer is compared. The caller sees 18.16's answer (the embedded stack's).

What "equal" means:
* rows as clickhouse-driver returns them; datetimes as instants (both servers run in UTC), aware
  or naive alike on both;
  floats within 1e-9; unordered unless the query's outermost clause is ORDER BY;
  ``groupUniqArray`` arrays as sets (ClickHouse gives no order);
* ``system.*`` tables describe storage (part names, bytes, parts per partition), which differs
  between versions by design: compared by the tables and partitions they name;
* ``count()`` of a rollup table (Summing engines) depends on which parts were merged yet, and
  26.x also collapses equal keys within one INSERT (optimize_on_insert): compared as "any rows";
* mutations (ALTER ... DELETE/UPDATE) are waited for on both before the next statement, so both
  answer about the same data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import sys
from dataclasses import dataclass, field

from support.clickhouse import wait_mutations

_MUTATION = re.compile(r"^\s*ALTER\s+TABLE\s+(\w+)\.(\w+)\s+(?:ON\s+CLUSTER\s+\S+\s+)?(DELETE|UPDATE)\b", re.I)
_ROLLUP_COUNT = re.compile(r"^\s*SELECT\s+count\(\)\s+FROM\s+\w+\.(minute|hour|day)_rollups\b", re.I)
_PART_NAME = re.compile(r"^\w+_\d+_\d+_\d+(_\d+)?$")
_PACKAGES = (
    "tidemark.batch.",
    "tidemark.tiering.",
    "tidemark.serving.",
    "tidemark.lambda_merge",
    "tidemark.stream.",
    "tidemark.slo.",
    "tidemark.migrations",
    "tidemark.anomalies.",
)


@dataclass
class Exchange:
    caller: tuple[str, str]  # (module, qualname) of the innermost Tidemark function that sent it
    sql: str
    params: object
    embedded: object
    current: object
    equal: bool
    how: str  # which comparison applied


@dataclass
class ExchangeLog:
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def mismatches(self) -> list[Exchange]:
        return [e for e in self.exchanges if not e.equal]

    @property
    def callers(self) -> set[tuple[str, str]]:
        return {e.caller for e in self.exchanges}

    def report(self, limit: int = 10) -> str:
        return "\n\n".join(
            f"{e.caller[0]}.{e.caller[1]} ({e.how}):\n  {' '.join(e.sql.split())[:400]}\n  params {e.params!r:.300}\n"
            f"  18.16: {e.embedded!r:.400}\n  26.9:  {e.current!r:.400}"
            for e in self.mismatches[:limit]
        )


def _caller() -> tuple[str, str]:
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(_PACKAGES):
            return module, frame.f_code.co_qualname
        frame = frame.f_back
    return "", ""


def _canon(value):
    if isinstance(value, dt.datetime):  # aware or naive matters: the code compares them with aware ones
        return (
            "datetime",
            value.tzinfo is not None,
            (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp(),
        )
    if isinstance(value, float):
        return ("float", round(value, 9))
    if isinstance(value, list | tuple):
        return tuple(_canon(v) for v in value)
    return value


def _sorted_arrays(row):
    return tuple(tuple(sorted(v, key=repr)) if isinstance(v, list) else v for v in row)


def _ordered(sql: str) -> bool:
    """The outermost statement ends with ORDER BY (not only a subquery)."""
    tail = sql[sql.upper().rfind("ORDER BY") :] if "ORDER BY" in sql.upper() else ""
    return bool(tail) and tail.count(")") <= tail.count("(")


def compare(sql: str, a, b) -> tuple[bool, str]:
    if not isinstance(a, list) or not isinstance(b, list):
        return a == b, "value"
    if "system." in sql:
        names = (
            [{v for v in row if isinstance(v, str) and not _PART_NAME.match(v)} for row in a],
            [{v for v in row if isinstance(v, str) and not _PART_NAME.match(v)} for row in b],
        )
        return set().union(*names[0]) == set().union(*names[1]), "storage: tables and partitions named"
    if _ROLLUP_COUNT.match(sql):
        return bool(a and a[0][0]) == bool(b and b[0][0]), "rollup row count: any rows"
    if "groupUniqArray" in sql:
        a, b = [_sorted_arrays(r) for r in a], [_sorted_arrays(r) for r in b]
    ca, cb = [_canon(r) for r in a], [_canon(r) for r in b]
    if _ordered(sql):
        return ca == cb, "rows, ordered"
    return sorted(ca, key=repr) == sorted(cb, key=repr), "rows, unordered"


class DualClient:
    def __init__(self, embedded, current, log: ExchangeLog):
        self.embedded, self.current, self.log = embedded, current, log

    def execute(self, query, params=None, **kw):
        a = self.embedded.execute(query, params, **kw)
        try:
            b = self.current.execute(query, params, **kw)
        except Exception as exc:
            raise AssertionError(f"ClickHouse 26.9 refused what 18.16 ran ({_caller()}): {query[:300]}: {exc}") from exc
        equal, how = compare(query, a, b)
        shown = params if not (isinstance(params, list) and len(params) > 3) else f"{len(params)} rows"
        self.log.exchanges.append(Exchange(_caller(), query, shown, a, b, equal, how))
        m = _MUTATION.match(query)
        if m:
            for ch in (self.embedded, self.current):
                wait_mutations(ch, m.group(1), m.group(2))
        return a

    def disconnect(self) -> None:
        self.embedded.disconnect()
        self.current.disconnect()


def on_both(cfg, database: str):
    """Settings whose every ClickHouse statement goes to 18.16 and to 26.9 (needs the ``dual_log``
    fixture, which registers the ``dual:`` scheme)."""
    return dataclasses.replace(cfg, clickhouse=dataclasses.replace(cfg.clickhouse, host="dual:", database=database))


def on_chdb(cfg, chdb_dir: str, database: str):
    """Settings whose ClickHouse is chdb alone (``client()`` returns an InProcessClient)."""
    ch = dataclasses.replace(cfg.clickhouse, host=f"chdb:{chdb_dir}", database=database)
    return dataclasses.replace(cfg, clickhouse=ch)
