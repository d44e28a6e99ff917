"""``tidemark_delta``: a Spark 4 Python Data Source over delta-rs (the ``deltalake`` package).

The tables it writes are standard Delta tables (protocol 1/2, Hive-style partition
directories, partition columns not stored in the data files, per-file stats), so any
Delta engine reads them (delta-rs, DuckDB's delta extension, Delta Spark).

Write (batch; also from a streaming ``foreachBatch``)::

    (df.write.format("tidemark_delta").mode("append")           # or "overwrite"
       .option("path", p)
       .option("partitionBy", "event_date,event_hour")          # df.write.partitionBy() is rejected
       .option("table", "events_raw")                           # optional: schema from schemas/delta
       .option("txnAppId", app).option("txnVersion", str(v))    # optional: idempotent commit
       .option("replaceWhere", "event_date = '2026-11-25' AND event_hour = 3")  # overwrite only
       .option("readVersion", str(v))   # overwrite: remove the files of the version the job read
       .save())

* Executors write parquet with pyarrow straight into the table directory
  (``event_date=2026-11-25/event_hour=3/part-<job id>-<uuid>.parquet``), cast to the
  table's Arrow schema; a null in a NOT NULL column fails the task naming the column.
  ``abort`` deletes the job's files (found by job id, so also those of tasks whose commit
  message never reached the driver). Tasks killed mid-write can still leave orphans:
  readers ignore them and ``DeltaTable.vacuum(full=True)`` removes them.
* The driver's ``commit`` checks every file (exists, size, partition values vs path,
  parquet schema, row count) and commits all of them in ONE Delta transaction
  (``DeltaTable.create_write_transaction``). Overwrite is Add + Remove actions in mode
  ``append`` (delta-rs only accepts RemoveAction there), retried on ``CommitFailedError``.
* Idempotence: with ``txnAppId``/``txnVersion`` the commit carries a Delta ``txn`` action;
  if the table already has a version >= txnVersion for that app, nothing is committed,
  the new files are deleted and a warning is logged (a replayed micro-batch is a no-op).
* Overwrite without replaceWhere removes every file. With ``readVersion`` it removes
  exactly the matching files of that version (see `commit_files`).
* Empty write: if there is nothing to add or remove, no commit is made, EXCEPT when a
  txn is given: then an empty transaction carrying only the ``txn`` is committed, so a
  replay of an empty batch is recognised and ``committed_txn_version`` advances.
  An overwrite with ``replaceWhere`` and no rows removes that partition (a real change).

Read (batch)::

    spark.read.format("tidemark_delta").option("path", p)
         .option("version", n)                                   # optional time travel
         .option("eventHour", "2026-11-25T03")                   # optional, events_raw layout
         .option("partitions", "event_date=2026-11-25/event_hour=3;...")   # optional
         .option("maxPartitionBytes", str(128 << 20))            # file grouping per task
         .load()

Filters on partition columns pushed by Spark (``spark.sql.python.filterPushdown.enabled``)
prune files too; they are also handed back to Spark, which re-checks them row by row.
Partition column values come from the Delta add actions, never from the path.

Plain helpers for jobs: ``ensure_table``, ``table_version``, ``read_version``,
``committed_txn_version``, ``plan_files``, ``commit_files``.

Local filesystem paths only (``file://`` accepted): executors write with ``os``/pyarrow.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence
from urllib.parse import unquote

import pyarrow as pa
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    EqualNullSafe,
    EqualTo,
    Filter,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    InputPartition,
    IsNotNull,
    IsNull,
    LessThan,
    LessThanOrEqual,
    Not,
    WriterCommitMessage,
)

log = logging.getLogger(__name__)

NAME = "tidemark_delta"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
STATS_STRING_PREFIX = 32  # like Delta Spark's dataSkippingStringPrefixLength
DEFAULT_MAX_RECORDS_PER_FILE = 2_000_000
DEFAULT_ROW_GROUP_ROWS = 131_072
DEFAULT_MAX_PARTITION_BYTES = 128 << 20
DEFAULT_READ_BATCH_ROWS = 65_536
DEFAULT_COMMIT_RETRIES = 8
# Reader features whose tables this reader reads correctly (no deletion vectors, no column mapping).
_READABLE_FEATURES = {"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck", "checkpointProtection"}


class DeltaActionError(ValueError):
    """The add/remove actions of a write failed the pre-commit checks; nothing was committed."""


class DeltaSchemaError(ValueError):
    """Written data (or a requested schema) does not match the Delta table."""


class DeltaConflictError(RuntimeError):
    """An overwrite based on a read version found its input files already replaced by another writer."""


# --------------------------------------------------------------------------- paths


def table_root(path: str | os.PathLike[str]) -> str:
    """Absolute local directory of a table path (``file://`` stripped)."""
    p = os.fspath(path)
    if p.startswith("file://"):
        p = p[len("file://"):]
    if "://" in p:
        raise ValueError(f"{NAME}: only local filesystem paths are supported, got {p!r}")
    return os.path.abspath(p)


# Spark's ExternalCatalogUtils.escapePathName character set.
_ESCAPE = set('"#%\'*/:=?\\\x7f{[]^') | {chr(c) for c in range(1, 0x20)}


def escape_partition_value(value: str) -> str:
    return "".join(f"%{ord(ch):02X}" if ch in _ESCAPE else ch for ch in value)


def unescape_partition_value(value: str) -> str:
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


def partition_dir(partition_by: Sequence[str], values: Mapping[str, str | None]) -> str:
    """Hive-style relative directory, e.g. ``event_date=2026-11-25/event_hour=3``."""
    parts = []
    for col in partition_by:
        v = values[col]
        parts.append(f"{escape_partition_value(col)}="
                     f"{HIVE_NULL if v is None else escape_partition_value(v)}")
    return "/".join(parts)


def parse_partition_dir(rel_path: str) -> dict[str, str | None]:
    """Partition values encoded in a relative file path's directories (``k=v`` segments)."""
    out: dict[str, str | None] = {}
    for seg in rel_path.split("/")[:-1]:
        if "=" not in seg:
            continue
        k, v = seg.split("=", 1)
        out[unescape_partition_value(k)] = None if v == HIVE_NULL else unescape_partition_value(v)
    return out


# --------------------------------------------------------------------------- partition values


def _check_partition_type(name: str, t: pa.DataType) -> None:
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
            or pa.types.is_date32(t) or pa.types.is_boolean(t)):
        raise DeltaSchemaError(f"{NAME}: partition column {name!r} has unsupported type {t} "
                               "(string, integer, date and boolean are supported)")


def partition_value_str(value: Any, t: pa.DataType) -> str | None:
    """Delta's string form of a typed partition value (None stays None)."""
    if value is None:
        return None
    if pa.types.is_boolean(t):
        return "true" if value else "false"
    if pa.types.is_date32(t):
        if isinstance(value, _dt.datetime) or not isinstance(value, _dt.date):
            raise ValueError(f"not a date: {value!r}")
        return value.isoformat()
    if pa.types.is_integer(t):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"not an integer: {value!r}")
        return str(value)
    if isinstance(value, str):
        if value == "":
            raise ValueError("an empty string partition value cannot be told from null in Delta")
        return value
    raise ValueError(f"unsupported partition value {value!r} for type {t}")


def parse_partition_value(text: str | None, t: pa.DataType) -> Any:
    """Typed value of a partition value given as a string (inverse of `partition_value_str`)."""
    if text is None:
        return None
    if pa.types.is_boolean(t):
        low = text.lower()
        if low not in ("true", "false"):
            raise ValueError(f"not a boolean: {text!r}")
        return low == "true"
    if pa.types.is_date32(t):
        return _dt.date.fromisoformat(text)
    if pa.types.is_integer(t):
        return int(text)
    return text


def coerce_partition_literal(value: Any, t: pa.DataType) -> Any:
    """A literal (from SQL text or a Spark filter) as the column's Python type, or ValueError."""
    if value is None:
        return None
    if isinstance(value, str) and not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return parse_partition_value(value.strip(), t)
    if pa.types.is_integer(t):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        return value
    if pa.types.is_date32(t):
        if isinstance(value, _dt.datetime) or not isinstance(value, _dt.date):
            raise ValueError(f"{value!r} is not a date")
        return value
    if pa.types.is_boolean(t):
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a boolean")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


# --------------------------------------------------------------------------- predicates over partition values
#
# Nodes: ("and", a, b) ("or", a, b) ("not", a) ("cmp", op, col, value) ("in", col, values)
#        ("isnull", col).  Values are typed (see coerce_partition_literal).  Evaluation is
# SQL three-valued: True / False / None (unknown); a file is selected only on True.

_CMP = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def eval_predicate(node: tuple, values: Mapping[str, Any]) -> bool | None:
    kind = node[0]
    if kind == "and":
        a, b = eval_predicate(node[1], values), eval_predicate(node[2], values)
        if a is False or b is False:
            return False
        return None if a is None or b is None else True
    if kind == "or":
        a, b = eval_predicate(node[1], values), eval_predicate(node[2], values)
        if a is True or b is True:
            return True
        return None if a is None or b is None else False
    if kind == "not":
        a = eval_predicate(node[1], values)
        return None if a is None else not a
    if kind == "isnull":
        return values[node[1]] is None
    if kind == "cmp":
        _, op, col, lit = node
        v = values[col]
        if op == "<=>":  # null-safe equality
            return v == lit
        if v is None or lit is None:
            return None
        return _CMP[op](v, lit)
    if kind == "in":
        _, col, lits = node
        v = values[col]
        if v is None:
            return None
        if v in [x for x in lits if x is not None]:
            return True
        return None if any(x is None for x in lits) else False
    raise ValueError(f"unknown predicate node {node!r}")


_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^']|'')*')
  | (?P<num>-?\d+)
  | (?P<op><=>|<=|>=|<>|!=|==|=|<|>)
  | (?P<punct>[(),])
  | (?P<qid>`(?:[^`]|``)+`)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot parse predicate at {text[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "str":
            val = val[1:-1].replace("''", "'")
        elif kind == "qid":
            kind, val = "id", val[1:-1].replace("``", "`")
        elif kind == "id":
            up = val.upper()
            if up in ("AND", "OR", "NOT", "IN", "IS", "NULL", "BETWEEN", "TRUE", "FALSE", "DATE"):
                kind, val = "kw", up
        tokens.append((kind, val))
    return tokens


def parse_predicate(text: str, partition_types: Mapping[str, pa.DataType]) -> tuple:
    """Parse a replaceWhere-style SQL predicate that may reference partition columns only.

    Grammar: OR / AND / NOT / parentheses over ``col op literal`` (=, ==, !=, <>, <, <=, >, >=,
    <=>), ``col [NOT] IN (lit, ...)``, ``col [NOT] BETWEEN lit AND lit``, ``col IS [NOT] NULL``.
    Literals: 'strings', integers, TRUE/FALSE, NULL, DATE 'yyyy-mm-dd'; coerced to the column type.
    """
    tokens = _tokenize(text)
    pos = 0

    def peek(k: int = 0) -> tuple[str, str] | None:
        return tokens[pos + k] if pos + k < len(tokens) else None

    def take(kind: str | None = None, val: str | None = None) -> tuple[str, str]:
        nonlocal pos
        tok = peek()
        if tok is None or (kind and tok[0] != kind) or (val and tok[1] != val):
            want = val or kind or "a token"
            raise ValueError(f"predicate {text!r}: expected {want} but found "
                             f"{'end of input' if tok is None else repr(tok[1])}")
        pos += 1
        return tok

    def column() -> str:
        name = take("id")[1]
        if name not in partition_types:
            raise ValueError(f"predicate {text!r} references {name!r}, which is not a partition "
                             f"column ({', '.join(partition_types) or 'none'})")
        return name

    def literal(col: str) -> Any:
        tok = peek()
        if tok is None:
            raise ValueError(f"predicate {text!r}: missing literal for {col!r}")
        if tok == ("kw", "DATE"):
            take()
        tok = take()
        if tok == ("kw", "NULL"):
            return None
        if tok[0] == "kw" and tok[1] in ("TRUE", "FALSE"):
            raw: Any = tok[1] == "TRUE"
        elif tok[0] == "num":
            raw = int(tok[1])
        elif tok[0] == "str":
            raw = tok[1]
        else:
            raise ValueError(f"predicate {text!r}: expected a literal for {col!r}, found {tok[1]!r}")
        try:
            return coerce_partition_literal(raw, partition_types[col])
        except ValueError as exc:
            raise ValueError(f"predicate {text!r}: bad literal for {col!r} "
                             f"({partition_types[col]}): {exc}") from None

    def primary() -> tuple:
        if peek() == ("punct", "("):
            take()
            node = disjunction()
            take("punct", ")")
            return node
        col = column()
        tok = peek()
        if tok and tok[0] == "op":
            op = take()[1]
            op = {"==": "=", "<>": "!="}.get(op, op)
            return ("cmp", op, col, literal(col))
        negate = False
        if tok == ("kw", "IS"):
            take()
            if peek() == ("kw", "NOT"):
                take()
                negate = True
            take("kw", "NULL")
            node = ("isnull", col)
            return ("not", node) if negate else node
        if tok == ("kw", "NOT"):
            take()
            negate = True
            tok = peek()
        if tok == ("kw", "IN"):
            take()
            take("punct", "(")
            lits = [literal(col)]
            while peek() == ("punct", ","):
                take()
                lits.append(literal(col))
            take("punct", ")")
            node = ("in", col, tuple(lits))
        elif tok == ("kw", "BETWEEN"):
            take()
            lo = literal(col)
            take("kw", "AND")
            hi = literal(col)
            node = ("and", ("cmp", ">=", col, lo), ("cmp", "<=", col, hi))
        else:
            raise ValueError(f"predicate {text!r}: expected an operator after {col!r}")
        return ("not", node) if negate else node

    def negation() -> tuple:
        if peek() == ("kw", "NOT"):
            take()
            return ("not", negation())
        return primary()

    def conjunction() -> tuple:
        node = negation()
        while peek() == ("kw", "AND"):
            take()
            node = ("and", node, negation())
        return node

    def disjunction() -> tuple:
        node = conjunction()
        while peek() == ("kw", "OR"):
            take()
            node = ("or", node, conjunction())
        return node

    if not tokens:
        raise ValueError("empty predicate")
    result = disjunction()
    if pos != len(tokens):
        raise ValueError(f"predicate {text!r}: unexpected {tokens[pos][1]!r}")
    return result


def parse_partition_spec(spec: str, partition_types: Mapping[str, pa.DataType]) -> tuple:
    """``"event_date=2026-11-25/event_hour=3;event_date=..."`` -> predicate (OR of ANDs of =).

    Each item must name every partition column; a value of ``__HIVE_DEFAULT_PARTITION__``
    means null.
    """
    alternatives: list[tuple] = []
    for item in (s.strip() for s in spec.split(";")):
        if not item:
            continue
        seen: dict[str, Any] = {}
        for seg in (s.strip() for s in item.split("/")):
            if "=" not in seg:
                raise ValueError(f"partition spec {item!r}: {seg!r} is not col=value")
            col, raw = (x.strip() for x in seg.split("=", 1))
            if col not in partition_types:
                raise ValueError(f"partition spec {item!r}: {col!r} is not a partition column "
                                 f"({', '.join(partition_types)})")
            seen[col] = None if raw == HIVE_NULL else coerce_partition_literal(raw, partition_types[col])
        missing = [c for c in partition_types if c not in seen]
        if missing:
            raise ValueError(f"partition spec {item!r} lacks {', '.join(missing)}")
        node: tuple | None = None
        for col in partition_types:
            term = ("isnull", col) if seen[col] is None else ("cmp", "=", col, seen[col])
            node = term if node is None else ("and", node, term)
        alternatives.append(node)  # type: ignore[arg-type]
    if not alternatives:
        raise ValueError(f"empty partition spec {spec!r}")
    out = alternatives[0]
    for alt in alternatives[1:]:
        out = ("or", out, alt)
    return out


def parse_event_hour(text: str) -> tuple[_dt.date, int]:
    """``"2026-11-25T03"`` (also ``"2026-11-25T03:00"`` / ``"2026-11-25 03"``) -> (date, hour)."""
    m = re.fullmatch(r"\s*(\d{4}-\d{2}-\d{2})[T ](\d{1,2})(?::00(?::00)?)?Z?\s*", text)
    if not m:
        raise ValueError(f"eventHour {text!r} is not like 2026-11-25T03")
    hour = int(m.group(2))
    if not 0 <= hour <= 23:
        raise ValueError(f"eventHour {text!r}: hour out of range")
    return _dt.date.fromisoformat(m.group(1)), hour


def filter_to_predicate(f: Filter, partition_types: Mapping[str, pa.DataType]) -> tuple | None:
    """A pushed-down Spark filter on a partition column as a predicate node, or None."""
    if isinstance(f, Not):
        inner = filter_to_predicate(f.child, partition_types)
        return None if inner is None else ("not", inner)
    attr = getattr(f, "attribute", None)
    if not attr or len(attr) != 1 or attr[0] not in partition_types:
        return None
    col = attr[0]
    t = partition_types[col]
    try:
        if isinstance(f, (IsNull, IsNotNull)):
            node: tuple = ("isnull", col)
            return node if isinstance(f, IsNull) else ("not", node)
        if isinstance(f, In):
            return ("in", col, tuple(coerce_partition_literal(v, t) for v in f.value))
        ops = {EqualTo: "=", EqualNullSafe: "<=>", GreaterThan: ">", GreaterThanOrEqual: ">=",
               LessThan: "<", LessThanOrEqual: "<="}
        op = ops.get(type(f))
        if op is None:
            return None
        return ("cmp", op, col, coerce_partition_literal(f.value, t))
    except (ValueError, TypeError):
        return None


# --------------------------------------------------------------------------- stats


def _ts_to_ms(value: int, unit: str, ceil: bool) -> int:
    per_ms = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    if per_ms is None:
        return value * 1000
    return -((-value) // per_ms) if ceil else value // per_ms


def _format_ms(ms: int) -> str:
    d = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(milliseconds=ms)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


class StatsCollector:
    """Per-file Delta stats (numRecords, minValues, maxValues, nullCount) over data columns.

    Bounds are always safe for data skipping: timestamps are widened to whole milliseconds
    (min floored, max ceiled; Delta stores ms), strings longer than 32 characters keep a
    32-character prefix as the min and have no max, NaN/inf floats and binary get no bounds.
    """

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.num_records = 0
        self.null_count = {f.name: 0 for f in schema}
        self.min: dict[str, Any] = {}
        self.max: dict[str, Any] = {}
        self.no_bounds: set[str] = set()

    def update(self, table: pa.Table | pa.RecordBatch) -> None:
        import pyarrow.compute as pc

        self.num_records += table.num_rows
        for f in self.schema:
            col = table.column(f.name)
            self.null_count[f.name] += col.null_count
            t = f.type
            bounded = (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)
                       or pa.types.is_date32(t) or pa.types.is_boolean(t) or pa.types.is_floating(t)
                       or (pa.types.is_timestamp(t) and t.tz is not None))
            if not bounded or f.name in self.no_bounds or col.null_count == len(col):
                if not bounded:
                    self.no_bounds.add(f.name)
                continue
            if pa.types.is_floating(t):
                finite = pc.all(pc.is_finite(pc.drop_null(col))).as_py()
                if not finite:
                    self.no_bounds.add(f.name)
                    self.min.pop(f.name, None)
                    self.max.pop(f.name, None)
                    continue
            mm = pc.min_max(col)
            lo, hi = mm["min"], mm["max"]
            if pa.types.is_timestamp(t):
                lo = _ts_to_ms(lo.value, t.unit, ceil=False)
                hi = _ts_to_ms(hi.value, t.unit, ceil=True)
            else:
                lo, hi = lo.as_py(), hi.as_py()
            if f.name in self.min:
                lo = min(lo, self.min[f.name])
                hi = max(hi, self.max[f.name])
            self.min[f.name], self.max[f.name] = lo, hi

    def _json_value(self, name: str, value: Any, is_max: bool) -> Any:
        t = self.schema.field(name).type
        if pa.types.is_timestamp(t):
            return _format_ms(value)
        if pa.types.is_date32(t):
            return value.isoformat()
        if isinstance(value, str) and len(value) > STATS_STRING_PREFIX:
            return None if is_max else value[:STATS_STRING_PREFIX]
        return value

    def to_json(self) -> str:
        mins, maxs = {}, {}
        for name in self.min:
            lo = self._json_value(name, self.min[name], False)
            hi = self._json_value(name, self.max[name], True)
            if lo is not None:
                mins[name] = lo
            if hi is not None:
                maxs[name] = hi
        return json.dumps({"numRecords": self.num_records, "minValues": mins,
                           "maxValues": maxs, "nullCount": self.null_count},
                          separators=(",", ":"))


# --------------------------------------------------------------------------- schemas


def schema_diff(expected: pa.Schema, actual: pa.Schema, *, check_nullable: bool = True) -> list[str]:
    """Human-readable differences in names, types (and nullability) between two Arrow schemas."""
    problems = []
    exp = {f.name: f for f in expected}
    act = {f.name: f for f in actual}
    missing = [n for n in exp if n not in act]
    extra = [n for n in act if n not in exp]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected column(s) {', '.join(extra)}")
    for name, f in exp.items():
        g = act.get(name)
        if g is None:
            continue
        if not f.type.equals(g.type):
            problems.append(f"column {name!r} is {g.type}, expected {f.type}")
        elif check_nullable and f.nullable != g.nullable:
            problems.append(f"column {name!r} is {'' if g.nullable else 'NOT '}NULL, expected "
                            f"{'' if f.nullable else 'NOT '}NULL")
    return problems


def data_schema(schema: pa.Schema, partition_by: Sequence[str]) -> pa.Schema:
    """The schema of the parquet data files: the table schema without partition columns."""
    return pa.schema([f for f in schema if f.name not in partition_by])


def _as_arrow_schema(table_schema: Any) -> pa.Schema:
    if isinstance(table_schema, pa.Schema):
        return table_schema
    if hasattr(table_schema, "arrow"):  # tidemark.tables.TableSchema
        return table_schema.arrow()
    return pa.schema(table_schema)  # arro3 / Arrow PyCapsule


def delta_arrow_schema(dt: Any) -> pa.Schema:
    """A DeltaTable's schema as a pyarrow.Schema (delta-rs returns an arro3 schema)."""
    return pa.schema(dt.schema().to_arrow())


def conform_batch(batch: pa.RecordBatch | pa.Table, schema: pa.Schema, where: str = "") -> pa.Table:
    """Select, order and cast ``batch`` to ``schema``; a null in a NOT NULL column is an error."""
    names = batch.schema.names
    missing = [f.name for f in schema if f.name not in names]
    extra = [n for n in names if schema.get_field_index(n) < 0]
    if missing or extra:
        raise DeltaSchemaError(
            f"{NAME}: data does not match the table schema{where}: "
            + "; ".join(([f"missing column(s) {', '.join(missing)}"] if missing else [])
                        + ([f"unexpected column(s) {', '.join(extra)}"] if extra else [])))
    arrays = []
    for f in schema:
        col = batch.column(f.name)
        if not f.nullable and col.null_count:
            raise DeltaSchemaError(
                f"{NAME}: column {f.name!r} is NOT NULL in the Delta table{where} but "
                f"{col.null_count} row(s) have a null {f.name}")
        if not col.type.equals(f.type):
            try:
                col = col.cast(f.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DeltaSchemaError(f"{NAME}: column {f.name!r} ({col.type}) cannot be cast "
                                       f"to {f.type}{where}: {exc}") from None
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


# --------------------------------------------------------------------------- executor-side writing


@dataclass
class AddedFile:
    """One parquet file a task wrote, as reported to the driver."""
    path: str                                  # relative to the table root, decoded
    size: int                                  # bytes, from os.stat
    partition_values: dict[str, str | None]    # Delta string form
    num_records: int
    stats: str                                 # Delta stats JSON
    modification_time: int                     # ms since epoch


@dataclass
class DeltaCommitMessage(WriterCommitMessage):
    files: list[AddedFile] = field(default_factory=list)


class _OpenFile:
    def __init__(self, root: str, rel: str, schema: pa.Schema, compression: str):
        import pyarrow.parquet as pq

        self.rel = rel
        self.full = os.path.join(root, rel)
        os.makedirs(os.path.dirname(self.full), exist_ok=True)
        self.writer = pq.ParquetWriter(self.full, schema, compression=compression,
                                       write_statistics=True)
        self.stats = StatsCollector(schema)

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.stats.update(table)

    def close(self, partition_values: dict[str, str | None]) -> AddedFile:
        self.writer.close()
        st = os.stat(self.full)
        return AddedFile(path=self.rel, size=st.st_size, partition_values=dict(partition_values),
                         num_records=self.stats.num_records, stats=self.stats.to_json(),
                         modification_time=int(st.st_mtime * 1000))


class TaskFileWriter:
    """Writes Arrow data into Hive-style partitioned parquet files under a table root.

    Used by each Spark write task; usable on its own (tests, tools). Incoming batches (Spark
    sends ~10k rows each) are buffered per partition and written as row groups of about
    ``row_group_rows``. ``close()`` returns the `AddedFile` list; ``abort()`` deletes every
    file written so far.
    """

    def __init__(self, root: str, schema: pa.Schema, partition_by: Sequence[str], *,
                 max_records_per_file: int = DEFAULT_MAX_RECORDS_PER_FILE,
                 compression: str = "snappy", job_id: str | None = None,
                 row_group_rows: int = DEFAULT_ROW_GROUP_ROWS):
        self.root = root
        self.prefix = f"part-{job_id}-" if job_id else "part-"
        self.schema = schema
        self.partition_by = list(partition_by)
        self.data_schema = data_schema(schema, partition_by)
        self.max_records = max(1, int(max_records_per_file))
        self.compression = compression
        self.row_group_rows = max(1, int(row_group_rows))
        self.open: dict[tuple, tuple[_OpenFile, dict[str, str | None]]] = {}
        self.buffers: dict[tuple, tuple[list[pa.Table], dict[str, str | None]]] = {}
        self.buffered: dict[tuple, int] = {}
        self.done: list[AddedFile] = []
        self.paths: list[str] = []

    def _split(self, table: pa.Table) -> Iterator[tuple[dict[str, str | None], pa.Table]]:
        if not self.partition_by:
            yield {}, table
            return
        keys = table.select(self.partition_by)
        groups = keys.group_by(self.partition_by, use_threads=False).aggregate([([], "count_all")])
        if groups.num_rows > 1:
            import pyarrow.compute as pc

            try:  # pyarrow >= 25: null placement per sort key
                order = pc.sort_indices(keys, sort_keys=[(c, "ascending", "at_end")
                                                         for c in self.partition_by])
            except (TypeError, ValueError, pa.ArrowInvalid):
                order = pc.sort_indices(keys, sort_keys=[(c, "ascending") for c in self.partition_by],
                                        null_placement="at_end")
            table = table.take(order)
            groups = (table.select(self.partition_by)
                      .group_by(self.partition_by, use_threads=False)
                      .aggregate([([], "count_all")]))
        offset = 0
        for row in groups.to_pylist():
            n = row.pop("count_all")
            values = {}
            for c in self.partition_by:
                try:
                    values[c] = partition_value_str(row[c], self.schema.field(c).type)
                except ValueError as exc:
                    raise DeltaSchemaError(f"{NAME}: partition column {c!r}: {exc}") from None
            yield values, table.slice(offset, n)
            offset += n

    def write(self, data: pa.RecordBatch | pa.Table, where: str = "") -> None:
        table = conform_batch(data, self.schema, where)
        if table.num_rows == 0:
            return
        for values, part in self._split(table):
            key = tuple(values[c] for c in self.partition_by)
            self.buffers.setdefault(key, ([], values))[0].append(part.select(self.data_schema.names))
            self.buffered[key] = self.buffered.get(key, 0) + part.num_rows
            if self.buffered[key] >= self.row_group_rows:
                self._flush(key)
        if sum(self.buffered.values()) > 4 * self.row_group_rows:  # many partitions: bound memory
            for key in list(self.buffers):
                self._flush(key)

    def _flush(self, key: tuple) -> None:
        parts, values = self.buffers.pop(key, ([], {}))
        self.buffered.pop(key, None)
        if not parts:
            return
        part = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        while part.num_rows:
            if key not in self.open:
                rel_dir = partition_dir(self.partition_by, values)
                rel = (rel_dir + "/" if rel_dir else "") + f"{self.prefix}{uuid.uuid4()}.parquet"
                self.paths.append(rel)
                self.open[key] = (_OpenFile(self.root, rel, self.data_schema, self.compression), values)
            f, _ = self.open[key]
            room = self.max_records - f.stats.num_records
            chunk, part = part.slice(0, room), part.slice(room)
            f.write(chunk)
            if f.stats.num_records >= self.max_records:
                self.done.append(f.close(values))
                del self.open[key]

    def close(self) -> list[AddedFile]:
        for key in list(self.buffers):
            self._flush(key)
        for f, values in self.open.values():
            self.done.append(f.close(values))
        self.open.clear()
        return self.done

    def abort(self) -> None:
        self.buffers.clear()
        self.buffered.clear()
        for f, _ in self.open.values():
            try:
                f.writer.close()
            except Exception:  # noqa: BLE001 - best effort
                pass
        self.open.clear()
        delete_files(self.root, self.paths)


def job_files(root: str, job_id: str) -> list[str]:
    """Relative paths of the data files a write job (by its id) left under root."""
    out = []
    prefix = f"part-{job_id}-"
    for d, dirs, names in os.walk(root):
        if d == root:
            dirs[:] = [x for x in dirs if not x.startswith(("_", "."))]
        out.extend(os.path.relpath(os.path.join(d, n), root) for n in names if n.startswith(prefix))
    return sorted(out)


def delete_files(root: str, rel_paths: Iterable[str]) -> int:
    """Delete files (relative to root) that exist; returns how many were deleted."""
    n = 0
    for rel in rel_paths:
        try:
            os.remove(os.path.join(root, rel))
            n += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete %s: %s", rel, exc)
    return n


# --------------------------------------------------------------------------- driver-side checks and commit


def check_files(root: str, files: Sequence[AddedFile], schema: pa.Schema,
                partition_by: Sequence[str]) -> None:
    """Check the actions before committing them (delta-rs checks almost nothing itself).

    Every file: relative, inside the table, exists, size matches os.stat, partition values
    present for exactly the partition columns, canonical for their types, not null for NOT
    NULL columns and equal to the path's ``k=v`` directories, parquet schema equal to the
    data schema, row count equal to the footer's and to the stats' numRecords; no duplicates.
    Raises DeltaActionError listing the problems.
    """
    import pyarrow.parquet as pq

    problems: list[str] = []
    expected_data = data_schema(schema, partition_by)
    seen: set[str] = set()
    for f in files:
        p = f.path
        where = f"file {p!r}"
        if not p or p.startswith("/") or "\\" in p or "://" in p or ".." in p.split("/"):
            problems.append(f"{where}: path must be relative and inside the table")
            continue
        if p in seen:
            problems.append(f"{where}: listed twice")
            continue
        seen.add(p)
        full = os.path.join(root, p)
        try:
            st = os.stat(full)
        except FileNotFoundError:
            problems.append(f"{where}: does not exist")
            continue
        if st.st_size != f.size:
            problems.append(f"{where}: size {f.size} but the file has {st.st_size} bytes")
        pv = f.partition_values or {}
        if set(pv) != set(partition_by):
            problems.append(f"{where}: partition values for {sorted(pv)} but the table is "
                            f"partitioned by {list(partition_by)}")
        else:
            for c in partition_by:
                t = schema.field(c).type
                v = pv[c]
                if v is None:
                    if not schema.field(c).nullable:
                        problems.append(f"{where}: null value for NOT NULL partition column {c!r}")
                    continue
                try:
                    if partition_value_str(parse_partition_value(v, t), t) != v:
                        problems.append(f"{where}: partition value {c}={v!r} is not canonical")
                except ValueError as exc:
                    problems.append(f"{where}: bad partition value {c}={v!r}: {exc}")
            from_path = parse_partition_dir(p)
            if from_path != dict(pv):
                problems.append(f"{where}: partition values {dict(pv)} do not match the path {from_path}")
        try:
            stats = json.loads(f.stats) if f.stats else {}
        except ValueError:
            problems.append(f"{where}: stats are not JSON")
            stats = {}
        if stats.get("numRecords", f.num_records) != f.num_records:
            problems.append(f"{where}: stats numRecords {stats.get('numRecords')} != {f.num_records}")
        try:
            meta = pq.read_metadata(full)
        except Exception as exc:  # noqa: BLE001 - any unreadable footer is a failed check
            problems.append(f"{where}: not a readable parquet file: {exc}")
            continue
        if meta.num_rows != f.num_records:
            problems.append(f"{where}: {f.num_records} records reported but the file has {meta.num_rows}")
        diff = schema_diff(expected_data, meta.schema.to_arrow_schema(), check_nullable=False)
        if diff:
            problems.append(f"{where}: parquet schema differs from the table: {'; '.join(diff)}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DeltaActionError(f"{NAME}: refusing to commit to {root}: " + " | ".join(shown))


def to_add_action(f: AddedFile):
    from deltalake.transaction import AddAction

    return AddAction(path=f.path, size=f.size, partition_values=dict(f.partition_values),
                     modification_time=f.modification_time, data_change=True, stats=f.stats)


@dataclass
class ActiveFile:
    """A file of a table snapshot (from its add actions)."""
    path: str                      # relative, decoded
    size: int
    partition_values: dict[str, Any]  # typed
    num_records: int | None


def active_files(dt: Any) -> list[ActiveFile]:
    """The add actions of a DeltaTable snapshot with decoded paths and typed partition values."""
    t = pa.table(dt.get_add_actions(flatten=False))
    paths = t.column("path").to_pylist()
    sizes = t.column("size_bytes").to_pylist()
    nrec = t.column("num_records").to_pylist() if "num_records" in t.column_names else [None] * len(paths)
    parts = (t.column("partition").to_pylist() if "partition" in t.column_names
             else [{}] * len(paths))
    return [ActiveFile(unquote(p), s, dict(pv or {}), n) for p, s, pv, n in zip(paths, sizes, parts, nrec)]


def _create_table(root: str, schema: pa.Schema, partition_by: Sequence[str],
                  name: str | None, description: str | None):
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    os.makedirs(root, exist_ok=True)
    try:
        DeltaTable.create(root, schema=schema, mode="ignore", partition_by=list(partition_by) or None,
                          name=name, description=description)
        log.info("created Delta table %s", root, extra={"table_path": root})
    except DeltaError:
        if not DeltaTable.is_deltatable(root):  # a concurrent creator wins the race otherwise
            raise
    return DeltaTable(root)


def _check_table_matches(dt: Any, root: str, schema: pa.Schema, partition_by: Sequence[str]) -> None:
    actual = delta_arrow_schema(dt)
    diff = schema_diff(schema, actual)
    if diff:
        raise DeltaSchemaError(f"{NAME}: Delta table {root} has a different schema: {'; '.join(diff)}")
    cols = list(dt.metadata().partition_columns)
    if cols != list(partition_by):
        raise DeltaSchemaError(f"{NAME}: Delta table {root} is partitioned by {cols}, "
                               f"not {list(partition_by)}")


def ensure_table(path: str, table_schema: Any, partition_by: Sequence[str] | None = None, *,
                 name: str | None = None, description: str | None = None) -> int:
    """Create the Delta table if missing; else check its schema and partitioning. Returns its version.

    ``table_schema`` is a ``tidemark.tables.TableSchema`` (partition columns, name and
    description come with it) or an Arrow schema (then pass ``partition_by``).
    """
    from deltalake import DeltaTable

    root = table_root(path)
    schema = _as_arrow_schema(table_schema)
    if partition_by is None:
        partition_by = tuple(getattr(table_schema, "partition_by", ()))
    name = name or getattr(table_schema, "name", None)
    description = description or getattr(table_schema, "description", None)
    for c in partition_by:
        if schema.get_field_index(c) < 0:
            raise DeltaSchemaError(f"{NAME}: partition column {c!r} is not in the schema")
        _check_partition_type(c, schema.field(c).type)
    if DeltaTable.is_deltatable(root):
        dt = DeltaTable(root)
    else:
        dt = _create_table(root, schema, partition_by, name, description)
    _check_table_matches(dt, root, schema, partition_by)
    return dt.version()


def table_version(path: str) -> int | None:
    """Current version of the Delta table at path, or None when there is no table."""
    from deltalake import DeltaTable

    root = table_root(path)
    return DeltaTable(root).version() if DeltaTable.is_deltatable(root) else None


def read_version(path: str) -> int:
    """The version a read of the table would see now; pin it with ``.option("version", v)``."""
    v = table_version(path)
    if v is None:
        raise FileNotFoundError(f"{NAME}: no Delta table at {path}")
    return v


def committed_txn_version(path: str, app_id: str) -> int | None:
    """The last txnVersion committed for app_id (Delta ``txn`` action), or None."""
    from deltalake import DeltaTable

    root = table_root(path)
    if not DeltaTable.is_deltatable(root):
        return None
    return DeltaTable(root).transaction_version(app_id)


@dataclass
class CommitResult:
    committed: bool
    version: int | None       # table version after the call
    reason: str               # "committed", "already_committed", "nothing_to_commit"
    added: int = 0
    removed: int = 0
    attempts: int = 0


def commit_files(path: str, files: Sequence[AddedFile], *, schema: pa.Schema,
                 partition_by: Sequence[str], overwrite: bool = False,
                 replace_where: str | None = None, txn: tuple[str, int] | None = None,
                 read_version: int | None = None, retries: int = DEFAULT_COMMIT_RETRIES,
                 table_name: str | None = None, description: str | None = None) -> CommitResult:
    """Commit the given files in ONE Delta transaction (the driver side of a write).

    Creates the table if missing; checks the files (`check_files`) and that the table's
    schema and partitioning are ``schema``/``partition_by``; skips (and deletes the files)
    when ``txn=(app_id, version)`` is already committed; for ``overwrite`` removes the files
    of the partitions matching ``replace_where`` (all files when None) in the same
    transaction; retries on CommitFailedError by reloading the snapshot.

    Which files an overwrite removes: without ``read_version``, those matching at commit
    time (last writer wins: a file appended concurrently to the replaced partitions is
    removed too). With ``read_version`` (the snapshot the job computed its output from),
    exactly the matching files of that snapshot: files appended since are kept, and if any
    of them is already gone (another writer replaced the partition meanwhile) it raises
    DeltaConflictError instead of committing duplicates.
    On any error the files are left for the caller (`abort`) to delete.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import CommitFailedError
    from deltalake.transaction import CommitProperties, RemoveAction, Transaction

    root = table_root(path)
    partition_by = list(partition_by)
    if replace_where and not overwrite:
        raise ValueError(f"{NAME}: replaceWhere needs mode('overwrite')")
    ptypes = {c: schema.field(c).type for c in partition_by}
    predicate = parse_predicate(replace_where, ptypes) if replace_where else None
    check_files(root, files, schema, partition_by)
    if predicate is not None:
        outside = [f.path for f in files
                   if eval_predicate(predicate, {c: parse_partition_value(f.partition_values[c], ptypes[c])
                                                 for c in partition_by}) is not True]
        if outside:
            raise DeltaActionError(f"{NAME}: {len(outside)} written file(s) hold rows outside "
                                   f"replaceWhere {replace_where!r}, e.g. {outside[0]!r}")
    read_set: set[str] | None = None
    if overwrite and read_version is not None:
        base = DeltaTable(root, version=int(read_version))
        read_set = {a.path for a in active_files(base)
                    if predicate is None or eval_predicate(predicate, a.partition_values) is True}
    adds = [to_add_action(f) for f in files]
    n_rows = sum(f.num_records for f in files)
    retries = max(0, int(retries))
    extra = {"table_path": root, "files": len(files), "rows": n_rows,
             "txn_app_id": txn[0] if txn else None, "txn_version": txn[1] if txn else None}

    for attempt in range(1, retries + 2):
        if DeltaTable.is_deltatable(root):
            dt = DeltaTable(root)
        else:
            dt = _create_table(root, schema, partition_by, table_name, description)
        _check_table_matches(dt, root, schema, partition_by)
        if txn is not None:
            done = dt.transaction_version(txn[0])
            if done is not None and done >= txn[1]:
                deleted = delete_files(root, [f.path for f in files])
                log.warning("batch already committed: table %s has txn %s version %s >= %s; "
                            "skipped the commit and deleted %d new file(s)",
                            root, txn[0], done, txn[1], deleted, extra=extra)
                return CommitResult(False, dt.version(), "already_committed", attempts=attempt)
        removes = []
        if overwrite:
            now = int(time.time() * 1000)
            current = active_files(dt)
            if read_set is not None:
                gone = read_set - {a.path for a in current}
                if gone:
                    raise DeltaConflictError(
                        f"{NAME}: {len(gone)} file(s) of {root} read at version {read_version} were "
                        f"removed by a later commit (e.g. {sorted(gone)[0]!r}); not overwriting")
                selected = [a for a in current if a.path in read_set]
            else:
                selected = [a for a in current
                            if predicate is None or eval_predicate(predicate, a.partition_values) is True]
            for a in selected:
                removes.append(RemoveAction(
                    path=a.path, data_change=True, deletion_timestamp=now, size=a.size,
                    partition_values={c: partition_value_str(a.partition_values.get(c), ptypes[c])
                                      for c in partition_by}))
        if not adds and not removes and txn is None:
            log.info("nothing to commit to %s", root, extra=extra)
            return CommitResult(False, dt.version(), "nothing_to_commit", attempts=attempt)
        props = CommitProperties(
            app_transactions=[Transaction(txn[0], int(txn[1]))] if txn else None,
            custom_metadata={"tidemark": {"writer": NAME, "rows": n_rows, "files": len(adds),
                                          "removed": len(removes), "replaceWhere": replace_where}},
        )
        try:
            dt.create_write_transaction(adds + removes, mode="append", schema=dt.schema(),
                                        partition_by=partition_by or None, commit_properties=props)
        except CommitFailedError as exc:
            if attempt > retries:
                log.error("commit to %s failed after %d attempts: %s", root, attempt, exc, extra=extra)
                raise
            log.warning("commit to %s conflicted (attempt %d/%d), reloading and retrying: %s",
                        root, attempt, retries + 1, exc, extra=extra)
            time.sleep(min(2.0, 0.05 * 2 ** attempt))
            continue
        version = DeltaTable(root).version()
        log.info("committed %d file(s), %d row(s), removed %d file(s) to %s at version %d",
                 len(adds), n_rows, len(removes), root, version, extra=extra)
        return CommitResult(True, version, "committed", len(adds), len(removes), attempt)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- Spark data source


def _options(options: Mapping[str, str]) -> dict[str, str]:
    """Spark hands options over case-insensitively (lower-cased keys): normalise to lower case."""
    return {str(k).lower(): v for k, v in dict(options).items()}


def _opt(options: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    v = options.get(name.lower())
    return default if v is None or str(v).strip() == "" else str(v).strip()


def _spark_to_arrow(schema) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema, timezone="UTC")


class DeltaDataSource(DataSource):
    """Spark Python Data Source ``tidemark_delta`` (batch read and batch write)."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def _path(self) -> str:
        p = _opt(_options(self.options), "path")
        if not p:
            raise ValueError(f"{NAME}: option 'path' is required")
        return table_root(p)

    def schema(self):
        from deltalake import DeltaTable
        from pyspark.sql.pandas.types import from_arrow_schema

        root = self._path()
        if DeltaTable.is_deltatable(root):
            version = _opt(_options(self.options), "version")
            dt = DeltaTable(root, version=int(version) if version is not None else None)
            return from_arrow_schema(delta_arrow_schema(dt), prefer_timestamp_ntz=True)
        name = _opt(_options(self.options), "table")
        if name:
            from tidemark.tables import table

            return table(name).spark()
        raise FileNotFoundError(f"{NAME}: no Delta table at {root}")

    def reader(self, schema):
        return DeltaReader(self._path(), _options(self.options), schema)

    def writer(self, schema, overwrite: bool):
        return DeltaWriter(self._path(), _options(self.options), schema, overwrite)


@dataclass
class FileEntry:
    path: str                         # absolute
    size: int
    partition_values: dict[str, Any]  # typed
    num_records: int | None = None


class DeltaInputPartition(InputPartition):
    def __init__(self, files: list[FileEntry]):
        super().__init__(len(files))
        self.files = files


def _check_readable(dt: Any, root: str) -> None:
    proto = dt.protocol()
    feats = set(proto.reader_features or [])
    if proto.min_reader_version == 2 or (feats - _READABLE_FEATURES):
        raise NotImplementedError(
            f"{NAME}: table {root} needs reader features this reader lacks "
            f"(reader version {proto.min_reader_version}, features {sorted(feats)})")


def plan_files(path: str, *, version: int | None = None, predicate: tuple | None = None,
               partitions: str | None = None, event_hour: str | None = None) -> tuple[int, list[FileEntry]]:
    """(version, files) of a snapshot, pruned by a partition predicate / spec / event hour."""
    from deltalake import DeltaTable

    root = table_root(path)
    if not DeltaTable.is_deltatable(root):
        raise FileNotFoundError(f"{NAME}: no Delta table at {root}")
    dt = DeltaTable(root, version=version)
    _check_readable(dt, root)
    schema = delta_arrow_schema(dt)
    pcols = list(dt.metadata().partition_columns)
    ptypes = {c: schema.field(c).type for c in pcols}
    preds = [predicate] if predicate is not None else []
    if partitions:
        preds.append(parse_partition_spec(partitions, ptypes))
    if event_hour:
        if pcols != ["event_date", "event_hour"]:
            raise ValueError(f"{NAME}: option eventHour needs a table partitioned by "
                             f"event_date, event_hour (this one: {pcols})")
        day, hour = parse_event_hour(event_hour)
        preds.append(("and", ("cmp", "=", "event_date", day), ("cmp", "=", "event_hour", hour)))
    out = []
    for a in active_files(dt):
        values = {c: a.partition_values.get(c) for c in pcols}
        if all(eval_predicate(p, values) is True for p in preds):
            full = a.path if os.path.isabs(a.path) else os.path.join(root, a.path)
            out.append(FileEntry(full, a.size, values, a.num_records))
    out.sort(key=lambda f: f.path)
    return dt.version(), out


def group_files(files: Sequence[FileEntry], max_bytes: int) -> list[list[FileEntry]]:
    """Pack files (in order) into groups of at most max_bytes (a bigger file is alone)."""
    groups: list[list[FileEntry]] = []
    cur: list[FileEntry] = []
    size = 0
    for f in files:
        if cur and size + f.size > max_bytes:
            groups.append(cur)
            cur, size = [], 0
        cur.append(f)
        size += f.size
    if cur:
        groups.append(cur)
    return groups


class DeltaReader(DataSourceReader):
    def __init__(self, root: str, options: dict[str, str], schema):
        from deltalake import DeltaTable

        self.root = root
        v = _opt(options, "version")
        if v is None:  # pin the snapshot now so planning sees one version
            if not DeltaTable.is_deltatable(root):
                raise FileNotFoundError(f"{NAME}: no Delta table at {root}")
            v = str(DeltaTable(root).version())
        self.version = int(v)
        self.partitions_spec = _opt(options, "partitions")
        self.event_hour = _opt(options, "eventHour")
        self.max_bytes = int(_opt(options, "maxPartitionBytes", str(DEFAULT_MAX_PARTITION_BYTES)))
        self.batch_rows = int(_opt(options, "batchRows", str(DEFAULT_READ_BATCH_ROWS)))
        self.out_schema = _spark_to_arrow(schema)
        self.pushed: list[tuple] = []
        dt = DeltaTable(root, version=self.version)
        table_schema = delta_arrow_schema(dt)
        self.partition_cols = list(dt.metadata().partition_columns)
        self.partition_types = {c: table_schema.field(c).type for c in self.partition_cols}
        unknown = [f.name for f in self.out_schema if table_schema.get_field_index(f.name) < 0]
        if unknown:
            raise DeltaSchemaError(f"{NAME}: column(s) {', '.join(unknown)} are not in {root}")

    def pushFilters(self, filters: list[Filter]) -> Iterable[Filter]:
        # Filters on partition columns prune files; all filters are handed back so that
        # Spark re-checks them on the rows (cheap, and exact whatever the pruning did).
        for f in filters:
            node = filter_to_predicate(f, self.partition_types)
            if node is not None:
                self.pushed.append(node)
            yield f

    def _predicate(self) -> tuple | None:
        node = None
        for p in self.pushed:
            node = p if node is None else ("and", node, p)
        return node

    def partitions(self) -> Sequence[InputPartition]:
        version, files = plan_files(self.root, version=self.version, predicate=self._predicate(),
                                    partitions=self.partitions_spec, event_hour=self.event_hour)
        log.info("reading %d file(s) of %s at version %d", len(files), self.root, version)
        return [DeltaInputPartition(g) for g in group_files(files, self.max_bytes)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        files = getattr(partition, "files", None) or []
        out = self.out_schema
        for entry in files:
            pf = pq.ParquetFile(entry.path)
            present = set(pf.schema_arrow.names)
            wanted = [f.name for f in out if f.name not in self.partition_cols and f.name in present]
            for f in out:
                if (f.name not in self.partition_cols and f.name not in present and not f.nullable):
                    raise DeltaSchemaError(f"{NAME}: {entry.path} lacks NOT NULL column {f.name!r}")
            if not wanted:  # only partition columns requested (or all missing): use the row count
                n = pf.metadata.num_rows
                step = self.batch_rows
                for start in range(0, n, step):
                    yield self._assemble(None, min(step, n - start), entry)
                continue
            for batch in pf.iter_batches(batch_size=self.batch_rows, columns=wanted):
                if batch.num_rows:
                    yield self._assemble(batch, batch.num_rows, entry)

    def _assemble(self, batch: pa.RecordBatch | None, n: int, entry: FileEntry) -> pa.RecordBatch:
        arrays = []
        for f in self.out_schema:
            if f.name in self.partition_cols:
                v = entry.partition_values.get(f.name)
                arr = pa.nulls(n, f.type) if v is None else pa.array([v] * n, type=f.type)
            elif batch is not None and batch.schema.get_field_index(f.name) >= 0:
                arr = batch.column(f.name)
                if not arr.type.equals(f.type):
                    arr = arr.cast(f.type)
            else:
                arr = pa.nulls(n, f.type)
            arrays.append(arr)
        return pa.RecordBatch.from_arrays(arrays, schema=self.out_schema)


class DeltaWriter(DataSourceArrowWriter):
    def __init__(self, root: str, options: dict[str, str], schema, overwrite: bool):
        from deltalake import DeltaTable

        self.root = root
        self.overwrite = bool(overwrite)
        self.table_name = _opt(options, "table")
        self.description = None
        exists = DeltaTable.is_deltatable(root)
        opt_parts = _opt(options, "partitionBy")
        opt_parts = [c.strip() for c in opt_parts.split(",") if c.strip()] if opt_parts else None
        if exists:
            dt = DeltaTable(root)
            self.schema = delta_arrow_schema(dt)
            self.partition_by = list(dt.metadata().partition_columns)
            if opt_parts is not None and opt_parts != self.partition_by:
                raise DeltaSchemaError(f"{NAME}: table {root} is partitioned by {self.partition_by}, "
                                       f"but partitionBy={opt_parts}")
            if self.table_name:
                from tidemark.tables import table

                diff = schema_diff(table(self.table_name).arrow(), self.schema)
                if diff:
                    raise DeltaSchemaError(f"{NAME}: table {root} does not have the schema of "
                                           f"{self.table_name!r}: {'; '.join(diff)}")
        elif self.table_name:
            from tidemark.tables import table

            ts = table(self.table_name)
            self.schema = ts.arrow()
            self.description = ts.description
            self.partition_by = opt_parts if opt_parts is not None else list(ts.partition_by)
        else:
            self.schema = _spark_to_arrow(schema)
            self.partition_by = opt_parts or []
        for c in self.partition_by:
            if self.schema.get_field_index(c) < 0:
                raise DeltaSchemaError(f"{NAME}: partition column {c!r} is not in the schema")
            _check_partition_type(c, self.schema.field(c).type)
        if len(self.partition_by) >= len(self.schema):
            raise DeltaSchemaError(f"{NAME}: a table needs at least one non-partition column")
        # Fail fast on the driver when the DataFrame's columns do not match.
        df_names = list(schema.fieldNames())
        missing = [n for n in self.schema.names if n not in df_names]
        extra = [n for n in df_names if n not in self.schema.names]
        if missing or extra:
            raise DeltaSchemaError(
                f"{NAME}: DataFrame columns do not match the table at {root}: "
                + "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                            + ([f"unexpected {', '.join(extra)}"] if extra else [])))
        self.replace_where = _opt(options, "replaceWhere")
        if self.replace_where:
            if not self.overwrite:
                raise ValueError(f"{NAME}: option replaceWhere needs mode('overwrite')")
            parse_predicate(self.replace_where,
                            {c: self.schema.field(c).type for c in self.partition_by})
        rv = _opt(options, "readVersion")
        self.read_version = int(rv) if rv is not None else None
        if self.read_version is not None and not self.overwrite:
            raise ValueError(f"{NAME}: option readVersion only applies to mode('overwrite')")
        app, ver = _opt(options, "txnAppId"), _opt(options, "txnVersion")
        if (app is None) != (ver is None):
            raise ValueError(f"{NAME}: give both txnAppId and txnVersion, or neither")
        self.txn = (app, int(ver)) if app is not None else None
        if self.txn and self.txn[1] < 0:
            raise ValueError(f"{NAME}: txnVersion must be >= 0")
        self.max_records = int(_opt(options, "maxRecordsPerFile", str(DEFAULT_MAX_RECORDS_PER_FILE)))
        self.compression = _opt(options, "compression", "snappy")
        self.retries = int(_opt(options, "commitRetries", str(DEFAULT_COMMIT_RETRIES)))
        # Names every file of this job, so abort() also finds files of tasks whose commit
        # message never reached the driver (cancelled or finishing after the job failed).
        self.job_id = uuid.uuid4().hex[:16]

    def write(self, iterator: Iterator[pa.RecordBatch]) -> DeltaCommitMessage:
        w = TaskFileWriter(self.root, self.schema, self.partition_by,
                           max_records_per_file=self.max_records, compression=self.compression,
                           job_id=self.job_id)
        where = f" at {self.root}"
        try:
            for batch in iterator:
                w.write(batch, where)
            return DeltaCommitMessage(files=w.close())
        except BaseException:
            w.abort()
            raise

    @staticmethod
    def _files(messages) -> list[AddedFile]:
        return [f for m in messages if m is not None for f in getattr(m, "files", [])]

    def commit(self, messages) -> None:
        commit_files(self.root, self._files(messages), schema=self.schema,
                     partition_by=self.partition_by, overwrite=self.overwrite,
                     replace_where=self.replace_where, txn=self.txn,
                     read_version=self.read_version, retries=self.retries,
                     table_name=self.table_name, description=self.description)

    def abort(self, messages) -> None:
        """Delete the job's files, except any a (racing) successful commit references."""
        from deltalake import DeltaTable

        paths = sorted(set(f.path for f in self._files(messages)) | set(job_files(self.root, self.job_id)))
        keep: set[str] = set()
        try:
            if paths and DeltaTable.is_deltatable(self.root):
                keep = {a.path for a in active_files(DeltaTable(self.root))}
        except Exception as exc:  # noqa: BLE001 - never delete committed files on doubt
            log.warning("abort: could not read %s (%s); leaving %d file(s)", self.root, exc, len(paths))
            return
        n = delete_files(self.root, [p for p in paths if p not in keep])
        log.warning("aborted write to %s: deleted %d file(s)", self.root, n)
