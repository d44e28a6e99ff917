"""A current ClickHouse in process (PyPI ``chdb-core``) behind clickhouse-driver's ``execute``.

``client()`` returns one for a host written ``chdb:<directory>``: MergeTree tables live on disk
under the directory. The code's SQL reaches it unchanged: parameters are substituted by
clickhouse-driver's own escaper (the driver substitutes client-side for servers too, so the text
is what a server receives), INSERT rows are rendered as VALUES with the same escaper (inlined
values only hang the driver's native protocol, not chdb), and results come back as the Python
values the driver would return (DateTime('UTC') as aware datetimes, Enum as str, Array as list,
Tuple as tuple, ...), typed from the result's column types. ``external_tables`` (the driver
sends them beside the query) become temporary tables of the session for that one query.

Limits (chdb's, not Tidemark's): one data directory per process (chdb's embedded server is
process-wide), no users, roles or row policies (access control is refused), no ZooKeeper, so no
Replicated engines. ``formatQuery`` still parses what cannot run here (see
tidemark/clickhouse_ddl.py).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import threading
import uuid
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from clickhouse_driver.errors import ServerException
from clickhouse_driver.util.escape import escape_param, escape_params

_LOCK = threading.Lock()
_EXTERNAL_LOCK = threading.Lock()  # one query with external tables at a time: their names are session-wide
_SESSION: dict[str, Any] = {}  # "path", "session", "database" (the session's current database)
# JSON output that round-trips: NaN/inf as strings (JSON has none), decimals as exact strings.
_SESSION_SETTINGS = (
    "SET output_format_json_quote_denormals = 1",
    "SET output_format_json_quote_decimals = 1",
    "SET output_format_json_quote_64bit_integers = 0",
)
_INSERT_VALUES = re.compile(r"^\s*INSERT\s+INTO\s+.+\bVALUES\s*$", re.IGNORECASE | re.DOTALL)
_CODE = re.compile(r"Code:\s*(\d+)")


def _session(path: str):
    """The process's chdb session (opened on first use). A second directory is refused: chdb's
    embedded server is process-wide."""
    from chdb import session as chdb_session

    if _SESSION and _SESSION["path"] != path:
        raise RuntimeError(
            f"chdb is already open on {_SESSION['path']}; one process can use one chdb directory "
            f"(asked for {path}). Use one directory per process and a database per test"
        )
    if not _SESSION:
        sess = chdb_session.Session(path)
        for statement in _SESSION_SETTINGS:
            sess.query(statement)
        _SESSION.update(path=path, session=sess, database="default")
    return _SESSION["session"]


class _Context:
    """What clickhouse-driver's escaper needs: the server's time zone."""

    class _ServerInfo:
        def __init__(self, tz: str):
            self._tz = tz

        def get_timezone(self) -> str:
            return self._tz

    def __init__(self, tz: str):
        self.server_info = self._ServerInfo(tz)


class InProcessClient:
    """clickhouse-driver's ``Client.execute`` over chdb (the subset Tidemark uses)."""

    def __init__(self, path: str, database: str = "default"):
        if not path:
            raise ValueError("chdb host needs a directory: chdb:/path/to/data")
        self.path = path
        self.database = database
        self._context: _Context | None = None

    # -- the driver's interface -------------------------------------------------------------

    def execute(
        self,
        query: str,
        params: Any = None,
        with_column_types: bool = False,
        columnar: bool = False,
        settings: dict | None = None,
        external_tables: list[dict] | None = None,
        **_ignored: Any,
    ) -> Any:
        if external_tables:
            with _EXTERNAL_LOCK:
                for table in external_tables:
                    self._temporary_table(table)
                try:
                    return self.execute(query, params, with_column_types, columnar, settings)
                finally:
                    for table in external_tables:
                        self._raw(f"DROP TEMPORARY TABLE IF EXISTS `{table['name']}`")
        if _INSERT_VALUES.match(query):
            rows = list(params or [])
            if columnar:
                rows = [tuple(r) for r in zip(*rows, strict=True)] if rows else []
            if not rows:
                return 0
            values = ", ".join(self._tuple(r) for r in rows)
            self._run(f"{query} {values}", settings)
            return len(rows)
        if params is not None:
            if not isinstance(params, dict):
                raise ValueError("Parameters are expected in dict form")
            query = query % escape_params(params, self._ctx())
        meta, data = self._run(query, settings)
        rows = [tuple(_value(t, v) for t, v in zip(meta, row, strict=True)) for row in data]
        if columnar:
            rows = [tuple(col) for col in zip(*rows, strict=True)] if rows else [() for _ in meta]
        if with_column_types:
            return rows, [(name, t) for name, t in zip(self._names, meta, strict=True)]
        return rows

    def disconnect(self) -> None:
        """Nothing to close: the session lives as long as the process."""

    def substitute(self, query: str, params: dict) -> str:
        """The SQL text a server would receive for ``query`` with ``params``."""
        return query % escape_params(params, self._ctx())

    # -- internals -------------------------------------------------------------------------

    def _ctx(self) -> _Context:
        if self._context is None:
            ((tz,),) = self._raw("SELECT timezone()")[1]
            self._context = _Context(tz)
        return self._context

    def _temporary_table(self, table: dict) -> None:
        """clickhouse-driver's external table ({"name", "structure": [(column, type)], "data": rows
        as dicts or tuples}) as a temporary table of the session."""
        names = [n for n, _ in table["structure"]]
        self._raw(f"DROP TEMPORARY TABLE IF EXISTS `{table['name']}`")
        columns = ", ".join(f"`{n}` {t}" for n, t in table["structure"])
        self._raw(f"CREATE TEMPORARY TABLE `{table['name']}` ({columns})")
        rows = [tuple(r[n] for n in names) if isinstance(r, dict) else tuple(r) for r in table["data"]]
        if rows:
            self._raw(f"INSERT INTO `{table['name']}` VALUES " + ", ".join(self._tuple(r) for r in rows))

    def _tuple(self, row: Sequence) -> str:
        ctx = self._ctx()
        return "(" + ", ".join(str(escape_param(int(v) if isinstance(v, bool) else v, ctx)) for v in row) + ")"

    def _run(self, query: str, settings: dict | None) -> tuple[list[str], list]:
        if settings:
            pairs = (f"{k} = {escape_param(v, self._ctx())}" for k, v in settings.items())
            query = f"{query} SETTINGS " + ", ".join(pairs)
        return self._raw(query)

    def _raw(self, query: str) -> tuple[list[str], list]:
        with _LOCK:
            sess = _session(self.path)
            try:
                if _SESSION["database"] != self.database:
                    sess.query(f"USE `{self.database}`")
                    _SESSION["database"] = self.database
                result = sess.query(query, "JSONCompact")
            except Exception as exc:  # chdb raises plain errors; re-raised as the driver would
                text = str(exc)
                code = _CODE.search(text)
                raise ServerException(text, int(code.group(1)) if code else None) from exc
        body = result.bytes()
        if not body.strip():  # DDL, INSERT, ALTER: no result set
            self._names = []
            return [], []
        doc = json.loads(body)
        self._names = [c["name"] for c in doc["meta"]]
        return [c["type"] for c in doc["meta"]], doc["data"]


# -- typing results like clickhouse-driver -----------------------------------------------------


def _split_args(inner: str) -> list[str]:
    """Top-level comma-separated arguments of a type, e.g. 'String, Array(UInt8)'."""
    out, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(inner):
        if ch == "'" and (i == 0 or inner[i - 1] != "\\"):
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        elif not quote and depth == 0 and ch == ",":
            out.append(inner[start:i].strip())
            start = i + 1
    out.append(inner[start:].strip())
    return [a for a in out if a]


def _unwrap(t: str) -> tuple[str, str]:
    name, _, rest = t.partition("(")
    return name.strip(), rest[:-1] if rest else ""


def _datetime(text: str, tz: str | None) -> dt.datetime:
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    value = dt.datetime.strptime(text, fmt)
    return value.replace(tzinfo=ZoneInfo(tz)) if tz else value


def _value(t: str, v: Any) -> Any:
    if v is None:
        return None
    name, inner = _unwrap(t)
    if name in ("Nullable", "LowCardinality", "SimpleAggregateFunction"):
        return _value(_split_args(inner)[-1], v)
    if name == "Array":
        return [_value(inner, x) for x in v]
    if name == "Tuple":
        # named elements are written "name Type"
        types = [a.split(" ", 1)[1] if re.match(r"^[A-Za-z_]\w* [A-Z]", a) else a for a in _split_args(inner)]
        return tuple(_value(et, x) for et, x in zip(types, v, strict=True))
    if name == "Map":
        kt, vt = _split_args(inner)
        return {_value(kt, k): _value(vt, x) for k, x in v.items()}
    if name in ("DateTime", "DateTime64"):
        args = _split_args(inner)
        tz = next((a.strip("'") for a in args if a.startswith("'")), None)
        return _datetime(v, tz)
    if name in ("Date", "Date32"):
        return dt.date.fromisoformat(v)
    if name.startswith(("Float", "BFloat")):
        return float(v)
    if name.startswith(("Int", "UInt")):
        return int(v)
    if name.startswith("Decimal"):
        return decimal.Decimal(v)
    if name == "UUID":
        return uuid.UUID(v)
    if name == "Bool":
        return bool(v)
    return v  # String, FixedString, Enum (names), IPv4/6 (text)
