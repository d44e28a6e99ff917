"""Kafka records -> validated rows (valid events and dead letters side by side), in Spark SQL.

(Over 400 lines on purpose: the Spark SQL mirror of ``tidemark.contract``, check by check in the
contract's order, so the two are reviewed side by side; the parity test pins them together.)

The event contract (``tidemark.contract``, defined in schemas/README.md) is applied here as plain
Spark SQL expressions: no Python UDF, no ``mapInArrow``; nothing per record leaves the JVM.
``tidemark.contract`` stays the reference implementation; both read their field rules from the same
JSON Schema (``contract.field_rules()``), and a parity test asserts that both give the same reason
code (and, for valid events, the same values) on one corpus.

How each rule is evaluated, in the order the reason codes are chosen (the first broken rule wins):

* null value: ``not_json`` ("empty message").
* ``oversize_payload``: ``length(value)`` (bytes) > max_payload_bytes. Nothing below is evaluated
  for such a payload: each later column is a ``CASE WHEN`` on the earlier ones.
* ``invalid_utf8``: ``is_valid_utf8(cast(value as string))`` (strict UTF-8).
* reading JSON (``truncated_json`` / ``not_json``), bounded before the parser runs:
  - depth: a text with at most one ``{``/``[`` (one linear regex; a usual event) or at most
    MAX_JSON_DEPTH of them (``regexp_count``) cannot be too deep; otherwise the exact depth of the
    text without its string literals is computed (``regexp_replace`` + ``aggregate`` over the
    brackets) and a deeper text is never parsed. (Spark's parser itself returns NULL, without
    throwing, at depth > 1000, for 100,000 levels and for 60 KB of ``[``: checked by a test.)
  - ``try_parse_json('[' || text || ']')`` must hold exactly one element. The wrapper makes the
    parser reject trailing garbage (it stops after the first value otherwise); when the text
    contains ``]``, ``try_parse_json('{"k":' || text || '}')`` also rules out a value followed by
    ``]...``. Spark's parser refuses duplicate keys, NaN/Infinity, lone-surrogate escapes, numbers
    over 1000 digits and keys over 50,000 UTF-16 units, as ``contract.read_json`` does.
  - an unreadable text is ``truncated_json`` or ``not_json`` by contract.looks_truncated's rule
    (two ``regexp_replace`` and bracket counts, only for unreadable rows).
* ``not_an_object``: the first non-whitespace character of the readable text is not ``{``.
* fields: one ``try_variant_get(doc, '$[0]', 'struct<field: variant, ...>')`` (case-sensitive; a
  JSON null is a VARIANT null, a missing field a SQL NULL) -> ``missing_field``.
* per field, in schema order: the JSON type from ``schema_of_variant`` (an integral DOUBLE or a
  DECIMAL(p,0) is an integer) -> ``wrong_type``; then const / enum (``IN``) / ``length()`` (code
  points, like JSON Schema) / the pattern (``RLIKE``, ``$`` written ``\\z``) -> the field's reason
  (``empty_tenant`` for ``tenant_id = ''``).
* ``unparsable_time``: an RFC 3339 string (``RLIKE``, then the civil date turned into days by
  integer arithmetic: no timestamp function, no session time zone) or an integral number of epoch
  ms, within range.
* ``out_of_range_time``: the event time, in microseconds, outside
  [contract.MIN_STORABLE_US, contract.MAX_STORABLE_US] (what ClickHouse's DateTime stores).
* ``implausible_kafka_time``: the Kafka ``timestamp`` (the producer's CreateTime) outside
  [ingest_time - max_record_age_days, ingest_time + contract.MAX_RECORD_SKEW], in microseconds.
  ``ingest_time`` is the records' own column when they carry one, else ``current_timestamp()``:
  in a stream that is the micro-batch's timestamp, recorded in the checkpoint, so a replayed batch
  judges every record against the same instant.
* ``future_time`` / ``expired_time``: against the record's own Kafka ``timestamp``, in
  microseconds, never ``now()``.

Nothing is kept in Python: every rule has an exact SQL form (the definitions that made this possible
are in schemas/README.md, "How a payload is read"). No expression here can throw on any input
(``try_*`` functions; casts only as ``try_cast``; ranges checked before narrowing), so a payload can
only ever become a dead letter.

The SQL is built as text (``selectExpr``: a dozen Py4J calls instead of thousands). Performance note:
the whole chain compiles into one whole-stage-codegen method far above HotSpot's 8,000-byte JIT
limit; ``spark.sql.codegen.hugeMethodLimit=8000`` (Spark's own advice on HotSpot) makes Spark fall
back to split, JIT-compiled projections for it, about 10-20 % faster here.
"""

from __future__ import annotations

import re

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from tidemark import contract as C

VALIDATED_SCHEMA = T.StructType(
    [
        T.StructField("event_id", T.StringType()),
        T.StructField("tenant_id", T.StringType()),
        T.StructField("event_time", T.TimestampType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("session_id", T.StringType()),
        T.StructField("country", T.StringType()),
        T.StructField("device", T.StringType()),
        T.StructField("page", T.StringType()),
        T.StructField("referrer", T.StringType()),
        T.StructField("schema_version", T.IntegerType()),
        T.StructField("reason", T.StringType()),  # null when valid
        T.StructField("detail", T.StringType()),
        T.StructField("raw_payload", T.BinaryType()),  # kept for dead letters only
        T.StructField("raw_key", T.BinaryType()),
        T.StructField("kafka_topic", T.StringType()),
        T.StructField("kafka_partition", T.IntegerType()),
        T.StructField("kafka_offset", T.LongType()),
        T.StructField("kafka_timestamp", T.TimestampType()),
        T.StructField("ingest_time", T.TimestampType()),  # the reading micro-batch's time
        # tenant_id/event_id, or topic/partition/offset for dead letters (see transforms.dedup)
        T.StructField("dedup_key", T.StringType()),
    ]
)
_DETAIL_CHARS = 500
_INT_TAGS = ("TINYINT", "SMALLINT", "INT", "BIGINT")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Java regexes (the same definitions as in tidemark.contract)
_RE_ESCAPE = r"(?s)\\."  # a backslash and the character after it
_RE_STRING = r'"[^"]*"'  # a string literal once escapes are gone
_RE_NOT_BRACKET = r"[^\[\]{}]"
_RE_OBJECT_START = r"^[ \t\n\r]*\{"
_RE_CONTAINER_START = r"^[ \t\n\r]*[\[{]"
_RE_DECIMAL_INT = r"^DECIMAL\([0-9]+,0\)$"
_RE_AT_MOST_ONE_OPEN = r"^[^\[{]*+[\[{]?[^\[{]*+\z"  # at most one '{' or '[' in the whole text
_RE_OPEN = r"[\[{]"
_RE_STARTS_WITH_VALUE = r"^[ \t\n\r]*+[^ \t\n\r\]]"  # a non-whitespace character other than ']' first
_P2_PREFIX = '{"k":'


class _Sql:
    """Builds the SQL text (one expression per column: a few Py4J calls instead of thousands)."""

    def __init__(self, escaped_literals: bool):
        self.escaped_literals = escaped_literals  # spark.sql.parser.escapedStringLiterals

    def lit(self, value) -> str:
        """A SQL literal for a str/int/bool/None, whatever the session's string-literal mode."""
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int):
            return f"{value}L" if not -(2**31) <= value < 2**31 else str(value)
        pieces = value.split("'")
        if not self.escaped_literals:
            pieces = [p.replace("\\", "\\\\") for p in pieces]
        quoted = [f"'{p}'" for p in pieces]
        return quoted[0] if len(quoted) == 1 else "concat(" + ", char(39), ".join(quoted) + ")"

    def in_list(self, values) -> str:
        return "(" + ", ".join(self.lit(v) for v in values) + ")"


def _strip_strings(q: _Sql, text: str) -> str:
    """contract.strip_strings: drop backslash+next char, then every complete "..." literal."""
    return f"regexp_replace(regexp_replace({text}, {q.lit(_RE_ESCAPE)}, ''), {q.lit(_RE_STRING)}, '')"


def _count(q: _Sql, text: str, chars: str) -> str:
    return f"(length({text}) - length(translate({text}, {q.lit(chars)}, '')))"


def _max_depth(q: _Sql, stripped: str) -> str:
    """contract.json_depth: the running bracket count's maximum (a SQL lambda, not a UDF)."""
    step = "CASE WHEN c IN ('[', '{') THEN 1 WHEN c IN (']', '}') THEN -1 ELSE 0 END"
    return (
        f"aggregate(split(regexp_replace({stripped}, {q.lit(_RE_NOT_BRACKET)}, ''), ''), "
        f"named_struct('d', 0, 'm', 0), "
        f"(acc, c) -> named_struct('d', acc.d + {step}, 'm', greatest(acc.m, acc.d + {step})), acc -> acc.m)"
    )


def _json_type(q: _Sql, tag: str, field: str) -> str:
    """JSON type name (contract.json_type) from schema_of_variant's tag."""
    return (
        f"CASE WHEN {tag} IS NULL THEN CAST(NULL AS STRING) "
        f"WHEN {tag} = 'STRING' THEN 'string' WHEN {tag} = 'VOID' THEN 'null' "
        f"WHEN {tag} = 'BOOLEAN' THEN 'boolean' "
        f"WHEN {tag} IN {q.in_list(_INT_TAGS)} OR {tag} RLIKE {q.lit(_RE_DECIMAL_INT)} THEN 'integer' "
        f"WHEN {tag} = 'DOUBLE' THEN CASE WHEN try_variant_get({field}, '$', 'double') % 1 = 0 "
        f"THEN 'integer' ELSE 'number' END "
        f"WHEN {tag} LIKE 'DECIMAL%' OR {tag} = 'FLOAT' THEN 'number' "
        f"WHEN {tag} LIKE 'OBJECT%' THEN 'object' WHEN {tag} LIKE 'ARRAY%' THEN 'array' "
        f"ELSE lower({tag}) END"
    )


def _quoted(q: _Sql, value: str) -> str:
    return f"concat(char(39), substring({value}, 1, 64), char(39))"


def _field_checks(q: _Sql, rule: C.FieldRule, s: str | None, n: str | None) -> list[tuple[str, str, str]]:
    """[(condition, reason, detail)] for one field, in contract.check_field's order (all SQL text)."""
    name = f"data.{rule.name}"
    f, jt = f"_f_{rule.name}", f"_jt_{rule.name}"
    present = f"{f} IS NOT NULL"
    accepted = sorted(set(rule.types) | ({"integer"} if "number" in rule.types else set()))
    checks = [
        (
            f"{present} AND NOT {jt} IN {q.in_list(accepted)}",
            q.lit("wrong_type"),
            f"concat({q.lit(f'{name} must be ' + ' or '.join(rule.types) + ', not ')}, {jt})",
        )
    ]
    if rule.has_const:
        checks.append(
            (
                f"{present} AND NOT coalesce({jt} IN ('integer', 'number') AND {n} = {q.lit(rule.const)}, FALSE)",
                q.lit(rule.reason),
                q.lit(f"{name} must be {rule.const}"),
            )
        )
    if s is None:  # not a string field: string keywords (enum, lengths, pattern) never apply to it
        return checks
    is_str = f"{present} AND {jt} = 'string'"
    if rule.name in C.EMPTY_STRING_REASONS and (rule.min_length or 0) > 0:
        checks.append((f"{is_str} AND {s} = ''", q.lit(C.EMPTY_STRING_REASONS[rule.name]), q.lit(f"{name} is empty")))
    if rule.enum is not None:
        checks.append(
            (
                f"{is_str} AND NOT {s} IN {q.in_list(rule.enum)}",
                q.lit(rule.reason),
                f"concat({q.lit(name + ' ')}, {_quoted(q, s)}, ' is not one of the allowed values')",
            )
        )
    if rule.min_length is not None:
        checks.append(
            (
                f"{is_str} AND length({s}) < {rule.min_length}",
                q.lit(rule.reason),
                q.lit(f"{name} must be at least {rule.min_length} characters"),
            )
        )
    if rule.max_length is not None:
        checks.append(
            (
                f"{is_str} AND length({s}) > {rule.max_length}",
                q.lit(rule.reason),
                q.lit(f"{name} must be at most {rule.max_length} characters"),
            )
        )
    if rule.pattern is not None:
        checks.append(
            (
                f"{is_str} AND NOT {s} RLIKE {q.lit(C.java_pattern(rule.pattern))}",
                q.lit(rule.reason),
                q.lit(f"{name} must match pattern {rule.pattern}"),
            )
        )
    return checks


def _iso_parts(q: _Sql, s: str) -> dict[str, str]:
    """The parts of an RFC 3339 string (NULL unless _iso_ok: it matches contract.ISO_PATTERN), as INTs."""
    ok = "_iso_ok"
    zulu = f"substring({s}, -1, 1) IN ('Z', 'z')"

    def part(expr: str) -> str:
        return f"CASE WHEN {ok} THEN {expr} END"

    def digits(start: int, length: int) -> str:
        return f"try_cast(substring({s}, {start}, {length}) AS INT)"

    frac_len = f"length({s}) - 20 - CASE WHEN {zulu} THEN 1 ELSE 6 END"
    return {
        "_iy": part(digits(1, 4)),
        "_imo": part(digits(6, 2)),
        "_id": part(digits(9, 2)),
        "_ih": part(digits(12, 2)),
        "_imi": part(digits(15, 2)),
        "_is": part(digits(18, 2)),
        # the fraction truncated to microseconds (a fraction is digits only: the pattern says so)
        "_ius": part(
            f"CASE WHEN substring({s}, 20, 1) = '.' "
            f"THEN try_cast(rpad(substring({s}, 21, least(6, {frac_len})), 6, '0') AS INT) ELSE 0 END"
        ),
        "_ioh": part(f"CASE WHEN {zulu} THEN 0 ELSE {digits(-5, 2)} END"),
        "_iom": part(f"CASE WHEN {zulu} THEN 0 ELSE {digits(-2, 2)} END"),
        "_isign": part(f"CASE WHEN substring({s}, -6, 1) = '-' AND NOT {zulu} THEN -1 ELSE 1 END"),
    }


def _iso_micros() -> str:
    """contract.parse_event_time for strings, from _iso_parts: epoch microseconds, or NULL.

    Days from the civil date by integer arithmetic (H. Hinnant's days_from_civil), after checking
    the date is real; no timestamp functions, so nothing depends on the session time zone."""
    leap = "((_iy % 4 = 0 AND _iy % 100 != 0) OR _iy % 400 = 0)"
    days_in_month = f"CASE WHEN _imo = 2 THEN CASE WHEN {leap} THEN 29 ELSE 28 END ELSE 31 - (_imo - 1) % 7 % 2 END"
    y = "(_iy - CASE WHEN _imo <= 2 THEN 1 ELSE 0 END)"
    doy = "((153 * (_imo + CASE WHEN _imo > 2 THEN -3 ELSE 9 END) + 2) div 5 + _id - 1)"
    yoe = f"({y} - ({y} div 400) * 400)"
    days = f"(({y} div 400) * 146097L + {yoe} * 365 + {yoe} div 4 - {yoe} div 100 + {doy} - 719468)"
    local_us = f"(({days} * 86400L + _ih * 3600 + _imi * 60 + _is) * 1000000L + _ius)"
    us = f"({local_us} - _isign * (_ioh * 60 + _iom) * 60000000L)"
    valid = (
        f"_iy >= 1 AND _imo BETWEEN 1 AND 12 AND _id BETWEEN 1 AND {days_in_month} AND _ih <= 23 "
        f"AND _imi <= 59 AND _is <= 59 AND _ioh <= 23 AND _iom <= 59"
    )
    return f"CASE WHEN {valid} AND {us} BETWEEN {C.MIN_EPOCH_US}L AND {C.MAX_EPOCH_US}L THEN {us} END"


def validate_records(
    records: DataFrame,
    *,
    max_payload_bytes: int = 65536,
    max_future_skew_s: int = 300,
    retention_days: int = 30,
    max_record_age_days: int = 365,
) -> DataFrame:
    """Kafka-shaped rows (key, value, topic, partition, offset, timestamp[, ingest_time]) ->
    VALIDATED_SCHEMA rows. Without an ``ingest_time`` column, ingest time is ``current_timestamp()``."""
    if not 0 <= max_payload_bytes <= C.MAX_PAYLOAD_LIMIT:
        raise ValueError(f"max_payload_bytes must be within [0, {C.MAX_PAYLOAD_LIMIT}], got {max_payload_bytes}")
    if max_record_age_days < 1:
        raise ValueError(f"max_record_age_days must be at least 1, got {max_record_age_days}")
    rules = C.field_rules()
    required = C.required_fields()
    fields = list(dict.fromkeys([*required, *(r.name for r in rules)]))
    bad = [f for f in fields if not _NAME.match(f)]
    if bad:
        raise ValueError(f"field names the SQL validation cannot address: {bad}")
    escaped = (records.sparkSession.conf.get("spark.sql.parser.escapedStringLiterals", "false") or "").lower() == "true"
    q = _Sql(escaped)
    maxb = q.lit(max_payload_bytes)

    # 1. size and UTF-8; the text only for payloads that pass both
    df = records.selectExpr(
        "key",
        "value",
        "topic",
        "partition",
        "offset",
        "timestamp",
        "CAST(ingest_time AS TIMESTAMP) AS ingest_time"
        if "ingest_time" in records.columns
        else "current_timestamp() AS ingest_time",
        "length(value) AS _size",
        f"CASE WHEN length(value) <= {maxb} THEN is_valid_utf8(CAST(value AS STRING)) END AS _utf8",
    )
    df = df.selectExpr("*", "CASE WHEN _utf8 THEN CAST(value AS STRING) END AS _txt")
    # 2. depth bound before any parse (the exact depth only when the text has many brackets at all)
    # (a usual event has a single '{': one linear regex; else count them; the exact depth only beyond)
    df = df.selectExpr(
        "*",
        f"CASE WHEN _txt IS NULL THEN NULL "
        f"WHEN _txt RLIKE {q.lit(_RE_AT_MOST_ONE_OPEN)} THEN FALSE "
        f"WHEN regexp_count(_txt, {q.lit(_RE_OPEN)}) <= {C.MAX_JSON_DEPTH} THEN FALSE "
        f"ELSE {_max_depth(q, _strip_strings(q, '_txt'))} > {C.MAX_JSON_DEPTH} END AS _deep",
    )
    # 3. parse: exactly one JSON value
    df = df.selectExpr(
        "*", "CASE WHEN _txt IS NOT NULL AND NOT _deep THEN try_parse_json(concat('[', _txt, ']')) END AS _j"
    )
    # ('$[0]' exists: the text starts with a value; not '$[1]': nothing after it but whitespace)
    df = df.selectExpr(
        "*",
        "coalesce(_j IS NOT NULL AND try_variant_get(_j, '$[1]', 'variant') IS NULL "
        f"AND _txt RLIKE {q.lit(_RE_STARTS_WITH_VALUE)} "
        "AND CASE WHEN instr(_txt, ']') = 0 THEN TRUE "
        f"ELSE try_parse_json(concat({q.lit(_P2_PREFIX)}, _txt, "
        "'}')) IS NOT NULL END, FALSE) AS _ok",
    )
    df = df.selectExpr(
        "*",
        f"CASE WHEN _txt IS NOT NULL AND NOT _ok THEN {_strip_strings(q, '_txt')} END AS _stripped",
        f"_ok AND _txt RLIKE {q.lit(_RE_OBJECT_START)} AS _obj",
    )
    # all fields in one pass over the object: a struct of VARIANTs (case-sensitive; JSON null stays a
    # VARIANT null, a missing field is a SQL NULL)
    doc_type = "struct<" + ", ".join(f"{f}: variant" for f in fields) + ">"
    df = df.selectExpr("*", f"CASE WHEN _obj THEN try_variant_get(_j, '$[0]', '{doc_type}') END AS _doc")
    df = df.selectExpr("*", *[f"_doc.{f} AS _f_{f}" for f in fields])
    # 4. JSON types, then the string / integral values
    df = df.selectExpr("*", *[f"schema_of_variant(_f_{r.name}) AS _tag_{r.name}" for r in rules])
    df = df.selectExpr("*", *[f"{_json_type(q, f'_tag_{r.name}', f'_f_{r.name}')} AS _jt_{r.name}" for r in rules])
    values, s_col, n_col = [], {}, {}
    for r in rules:
        if "string" in r.types:
            s_col[r.name] = f"_s_{r.name}"
            values.append(
                f"CASE WHEN _jt_{r.name} = 'string' THEN try_variant_get(_f_{r.name}, '$', 'string') END AS _s_{r.name}"
            )
        if r.has_const or r.name == "event_time":
            n_col[r.name] = f"_n_{r.name}"
            values.append(
                f"CASE WHEN _jt_{r.name} = 'integer' THEN try_variant_get(_f_{r.name}, '$', "
                f"'decimal(38,0)') END AS _n_{r.name}"
            )
    df = df.selectExpr("*", *values)
    # 5. event time, in microseconds since the epoch (NULL: unparsable)
    df = df.selectExpr("*", f"_s_event_time RLIKE {q.lit(C.java_pattern(C.ISO_PATTERN))} AS _iso_ok")
    df = df.selectExpr("*", *[f"{expr} AS {name}" for name, expr in _iso_parts(q, "_s_event_time").items()])
    df = df.selectExpr(
        "*",
        f"CASE WHEN _jt_event_time = 'string' THEN {_iso_micros()} "
        f"WHEN _n_event_time BETWEEN {q.lit(C.MIN_EPOCH_MS)} AND {q.lit(C.MAX_EPOCH_MS)} "
        "THEN try_cast(_n_event_time AS BIGINT) * 1000L END AS _et",
    )

    # 6. the first broken rule names the reason
    truncated = (
        f"(_txt RLIKE {q.lit(_RE_CONTAINER_START)} AND (instr(_stripped, {q.lit(chr(34))}) > 0 "
        f"OR {_count(q, '_stripped', '{[')} > {_count(q, '_stripped', '}]')}))"
    )
    missing = " OR ".join(f"_f_{f} IS NULL" for f in required) or "FALSE"
    missing_list = ", ".join(f"CASE WHEN _f_{f} IS NULL THEN {q.lit(repr(f))} END" for f in sorted(required))
    ts_us = "unix_micros(timestamp)"
    ingest_us = "unix_micros(ingest_time)"
    checks = [
        ("value IS NULL", "'not_json'", "'empty message'"),
        (
            f"_size > {maxb}",
            "'oversize_payload'",
            f"concat(CAST(_size AS STRING), {q.lit(f' bytes > {max_payload_bytes}')})",
        ),
        ("NOT _utf8", "'invalid_utf8'", "'bytes are not UTF-8'"),
        (
            "NOT _ok",
            f"CASE WHEN {truncated} THEN 'truncated_json' ELSE 'not_json' END",
            f"CASE WHEN _deep THEN {q.lit(f'nested deeper than {C.MAX_JSON_DEPTH} levels')} "
            f"WHEN {truncated} THEN 'JSON cut off' ELSE 'not one JSON value' END",
        ),
        ("NOT _obj", "'not_an_object'", "'top level is not an object'"),
        (missing, "'missing_field'", f"concat('data must contain [', concat_ws(', ', {missing_list}), '] properties')"),
    ]
    for r in rules:
        checks += _field_checks(q, r, s_col.get(r.name), n_col.get(r.name))
    checks += [
        (
            "_et IS NULL",
            "'unparsable_time'",
            f"CASE WHEN _jt_event_time = 'string' THEN concat('event_time ', {_quoted(q, '_s_event_time')}, "
            "' is not a valid RFC 3339 time') ELSE 'epoch ms out of range' END",
        ),
        (
            f"_et < {q.lit(C.MIN_STORABLE_US)} OR _et > {q.lit(C.MAX_STORABLE_US)}",
            "'out_of_range_time'",
            q.lit("event_time is outside 1970-01-01T00:00:00Z..2106-02-07T06:28:15Z"),
        ),
        (
            f"{ts_us} < {ingest_us} - {q.lit(max_record_age_days * 86_400_000_000)} "
            f"OR {ts_us} > {ingest_us} + {q.lit(int(C.MAX_RECORD_SKEW.total_seconds()) * 1_000_000)}",
            "'implausible_kafka_time'",
            f"concat('Kafka timestamp ', CAST(timestamp AS STRING), "
            f"{q.lit(f' is outside [ingest time - {max_record_age_days} days, + ')}, "
            f"{q.lit(str(int(C.MAX_RECORD_SKEW.total_seconds())))}, ' s] of ', CAST(ingest_time AS STRING))",
        ),
        (
            f"_et > {ts_us} + {q.lit(max_future_skew_s * 1_000_000)}",
            "'future_time'",
            q.lit(f"event_time is more than {max_future_skew_s} s ahead of the Kafka timestamp"),
        ),
        (
            f"_et < {ts_us} - {q.lit(retention_days * 86_400_000_000)}",
            "'expired_time'",
            q.lit(f"event_time is older than retention ({retention_days} days)"),
        ),
    ]
    verdict = (
        "CASE "
        + " ".join(
            f"WHEN {cond} THEN named_struct('reason', {reason}, 'detail', substring({detail}, 1, {_DETAIL_CHARS}))"
            for cond, reason, detail in checks
        )
        + " END"
    )
    df = df.selectExpr("*", f"{verdict} AS _v")

    event = {
        "event_id": "lower(_s_event_id)",
        "tenant_id": "_s_tenant_id",
        "event_time": "timestamp_micros(_et)",
        "user_id": "_s_user_id",
        "session_id": "_s_session_id",
        "country": "_s_country",
        "device": "_s_device",
        "page": "_s_page",
        "referrer": "_s_referrer",
        "schema_version": "_n_schema_version",
    }
    out = [
        f"CAST(CASE WHEN _v IS NULL THEN {expr} END AS {VALIDATED_SCHEMA[name].dataType.simpleString()}) AS {name}"
        for name, expr in event.items()
    ]
    out += [
        "_v.reason AS reason",
        "_v.detail AS detail",
        "CASE WHEN _v IS NOT NULL THEN value END AS raw_payload",
        "CAST(key AS BINARY) AS raw_key",
        "CAST(topic AS STRING) AS kafka_topic",
        "CAST(partition AS INT) AS kafka_partition",
        "CAST(offset AS BIGINT) AS kafka_offset",
        "CAST(timestamp AS TIMESTAMP) AS kafka_timestamp",
        "ingest_time",
        "CASE WHEN _v IS NULL THEN concat(_s_tenant_id, '/', lower(_s_event_id)) "
        "ELSE concat_ws('/', topic, CAST(partition AS STRING), CAST(offset AS STRING)) END AS dedup_key",
    ]
    return df.selectExpr(*out)


def valid_events(validated: DataFrame, allowed_lateness_s: int) -> DataFrame:
    """Valid rows with partition columns and the late flag (arrival minus event time > allowed lateness)."""
    lateness = F.col("kafka_timestamp").cast("double") - F.col("event_time").cast("double")
    return (
        validated.where(F.col("reason").isNull())
        .withColumn("is_late", lateness > F.lit(float(allowed_lateness_s)))
        .withColumn("event_date", F.to_date("event_time"))
        .withColumn("event_hour", F.hour("event_time"))
    )


def rejected_events(validated: DataFrame) -> DataFrame:
    return validated.where(F.col("reason").isNotNull())
