"""Kafka records -> validated rows (valid events and dead letters side by side), in Spark SQL.

The event contract (``tidemark.contract``, documented in schemas/README.md) is applied here as
plain Spark SQL expressions: no Python UDF, no ``mapInArrow``, nothing per record leaves the JVM.
``tidemark.contract`` stays the reference implementation; both read their field rules from the
same JSON Schema (``contract.field_rules()``), and a parity test asserts that both give the same
reason code (and, for valid events, the same values) on one corpus.

How each rule is evaluated, in the order the reason codes are chosen (the first broken rule wins):

* null value: ``not_json`` ("empty message").
* ``oversize_payload``: ``length(value)`` (bytes) > max_payload_bytes. Nothing below is evaluated
  for such a payload: every later step sits behind a ``CASE WHEN`` on the earlier ones.
* ``invalid_utf8``: ``is_valid_utf8(cast(value as string))`` (strict UTF-8: no overlongs, no
  encoded surrogates, nothing above U+10FFFF).
* Reading JSON (``truncated_json``/``not_json``), bounded before the parser runs:
  - depth: if the text holds more than MAX_JSON_DEPTH ``{``/``[`` at all, the nesting depth of the
    text without its string literals is computed (``regexp_replace`` + ``aggregate`` over the
    brackets); deeper than MAX_JSON_DEPTH is unreadable and never parsed. A usual event has one
    ``{``, so this costs one ``translate`` per record.
  - ``try_parse_json('[' || text || ']')`` must give an array of exactly one element. The
    wrapper makes Spark's parser reject trailing garbage (it stops after the first value
    otherwise); when the text contains ``]`` a second parse, ``try_parse_json('{"k":' || text ||
    '}')``, rules out a value followed by ``]...``. Spark's parser also refuses duplicate keys,
    NaN/Infinity, lone-surrogate escapes, numbers over 1000 digits and keys over 50,000 UTF-16
    units; ``tidemark.contract.read_json`` refuses the same.
  - an unreadable text is ``truncated_json`` when it starts with ``{``/``[`` and, once escapes and
    complete string literals are removed (two ``regexp_replace``), a ``"`` is left or opening
    brackets outnumber closing ones; ``not_json`` otherwise.
* ``not_an_object``: the first non-whitespace character of the (readable) text is not ``{``.
* ``missing_field``: ``try_variant_get(doc, '$[0].field', 'variant') IS NULL`` (a JSON null is a
  VARIANT null, not a SQL NULL, so it counts as present).
* per field, in schema order: the JSON type comes from ``schema_of_variant`` (an integral DOUBLE
  or a DECIMAL(p,0) is an integer) -> ``wrong_type``; then const / enum (``IN``) / ``length()``
  (code points, like JSON Schema) / the pattern (``rlike``, with ``$`` as ``\\z``) -> the field's
  reason (``empty_tenant`` for ``tenant_id = ''``).
* ``unparsable_time``: an RFC 3339 string (``rlike``, then ``try_make_timestamp`` on the parts
  and the offset subtracted) or an integral number of epoch ms within range.
* ``future_time`` / ``expired_time``: against the record's own Kafka ``timestamp``, in
  microseconds, never ``now()``.

Nothing is kept in Python: every rule of the contract has an exact SQL form (the definitions that
made that possible are in schemas/README.md, "How a payload is read"). A failure to read or check
a payload is always a dead-letter row with a reason, never an exception: no expression here can
throw on any input (``try_*`` functions, casts only on regex-checked digits, ranges checked before
any narrowing cast).
"""
from __future__ import annotations

import re

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from tidemark import contract as C

VALIDATED_SCHEMA = T.StructType([
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
    T.StructField("reason", T.StringType()),       # null when valid
    T.StructField("detail", T.StringType()),
    T.StructField("raw_payload", T.BinaryType()),  # kept for dead letters only
    T.StructField("raw_key", T.BinaryType()),
    T.StructField("kafka_topic", T.StringType()),
    T.StructField("kafka_partition", T.IntegerType()),
    T.StructField("kafka_offset", T.LongType()),
    T.StructField("kafka_timestamp", T.TimestampType()),
    T.StructField("dedup_key", T.StringType()),    # event_id, or topic/partition/offset for dead letters
])

_EVENT_FIELDS = ("event_id", "tenant_id", "event_time", "user_id", "session_id", "country", "device", "page",
                 "referrer", "schema_version")
_DETAIL_CHARS = 500
_INT_TAGS = ("TINYINT", "SMALLINT", "INT", "BIGINT")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Java regexes (the same definitions as in tidemark.contract)
_RE_ESCAPE = r"(?s)\\."                 # a backslash and the character after it
_RE_STRING = r'"[^"]*"'                  # a string literal once escapes are gone
_RE_NOT_BRACKET = r"[^\[\]{}]"
_RE_OBJECT_START = r"^[ \t\n\r]*\{"
_RE_CONTAINER_START = r"^[ \t\n\r]*[\[{]"
_RE_DECIMAL_INT = r"^DECIMAL\([0-9]+,0\)$"
_RE_FRACTION = r"^.{19}\.([0-9]+)"
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
            return f"{value}L" if not -2**31 <= value < 2**31 else str(value)
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
    return (f"aggregate(split(regexp_replace({stripped}, {q.lit(_RE_NOT_BRACKET)}, ''), ''), "
            f"named_struct('d', 0, 'm', 0), "
            f"(acc, c) -> named_struct('d', acc.d + {step}, 'm', greatest(acc.m, acc.d + {step})), acc -> acc.m)")


def _json_type(q: _Sql, tag: str, field: str) -> str:
    """JSON type name (contract.json_type) from schema_of_variant's tag."""
    return (f"CASE WHEN {tag} IS NULL THEN CAST(NULL AS STRING) "
            f"WHEN {tag} = 'STRING' THEN 'string' WHEN {tag} = 'VOID' THEN 'null' "
            f"WHEN {tag} = 'BOOLEAN' THEN 'boolean' "
            f"WHEN {tag} IN {q.in_list(_INT_TAGS)} OR {tag} RLIKE {q.lit(_RE_DECIMAL_INT)} THEN 'integer' "
            f"WHEN {tag} = 'DOUBLE' THEN CASE WHEN try_variant_get({field}, '$', 'double') % 1 = 0 "
            f"THEN 'integer' ELSE 'number' END "
            f"WHEN {tag} LIKE 'DECIMAL%' OR {tag} = 'FLOAT' THEN 'number' "
            f"WHEN {tag} LIKE 'OBJECT%' THEN 'object' WHEN {tag} LIKE 'ARRAY%' THEN 'array' "
            f"ELSE lower({tag}) END")


def _quoted(q: _Sql, value: str) -> str:
    return f"concat(char(39), substring({value}, 1, 64), char(39))"


def _field_checks(q: _Sql, rule: C.FieldRule, s: str | None, n: str | None) -> list[tuple[str, str, str]]:
    """[(condition, reason, detail)] for one field, in contract.check_field's order (all SQL text)."""
    name = f"data.{rule.name}"
    f, jt = f"_f_{rule.name}", f"_jt_{rule.name}"
    present = f"{f} IS NOT NULL"
    accepted = sorted(set(rule.types) | ({"integer"} if "number" in rule.types else set()))
    checks = [(f"{present} AND NOT {jt} IN {q.in_list(accepted)}", q.lit("wrong_type"),
               f"concat({q.lit(f'{name} must be ' + ' or '.join(rule.types) + ', not ')}, {jt})")]
    if rule.has_const:
        checks.append((f"{present} AND NOT coalesce({jt} IN ('integer', 'number') AND {n} = {q.lit(rule.const)}, FALSE)",
                       q.lit(rule.reason), q.lit(f"{name} must be {rule.const}")))
    is_str = f"{present} AND {jt} = 'string'"
    if rule.name in C.EMPTY_STRING_REASONS and (rule.min_length or 0) > 0:
        checks.append((f"{is_str} AND {s} = ''", q.lit(C.EMPTY_STRING_REASONS[rule.name]), q.lit(f"{name} is empty")))
    if rule.enum is not None:
        checks.append((f"{is_str} AND NOT {s} IN {q.in_list(rule.enum)}", q.lit(rule.reason),
                       f"concat({q.lit(name + ' ')}, {_quoted(q, s)}, ' is not one of the allowed values')"))
    if rule.min_length is not None:
        checks.append((f"{is_str} AND length({s}) < {rule.min_length}", q.lit(rule.reason),
                       q.lit(f"{name} must be at least {rule.min_length} characters")))
    if rule.max_length is not None:
        checks.append((f"{is_str} AND length({s}) > {rule.max_length}", q.lit(rule.reason),
                       q.lit(f"{name} must be at most {rule.max_length} characters")))
    if rule.pattern is not None:
        checks.append((f"{is_str} AND NOT {s} RLIKE {q.lit(C.java_pattern(rule.pattern))}", q.lit(rule.reason),
                       q.lit(f"{name} must match pattern {rule.pattern}")))
    return checks


def _iso_micros(q: _Sql, s: str) -> str:
    """contract.parse_event_time for strings: epoch microseconds, or NULL when unparsable."""
    def digits(start: int, length: int) -> str:
        return f"try_cast(substring({s}, {start}, {length}) AS INT)"

    zulu = f"substring({s}, -1, 1) IN ('Z', 'z')"
    frac = f"regexp_extract({s}, {q.lit(_RE_FRACTION)}, 1)"
    micros = f"try_cast(rpad(substring({frac}, 1, 6), 6, '0') AS BIGINT)"
    off_h, off_m = digits(-5, 2), digits(-2, 2)
    offset_us = (f"CASE WHEN {zulu} THEN 0L ELSE CASE WHEN substring({s}, -6, 1) = '-' THEN -1L ELSE 1L END "
                 f"* ({off_h} * 60 + {off_m}) * 60000000L END")
    local = (f"try_make_timestamp({digits(1, 4)}, {digits(6, 2)}, {digits(9, 2)}, {digits(12, 2)}, "
             f"{digits(15, 2)}, {digits(18, 2)}, 'UTC')")
    us = f"(unix_micros({local}) + {micros} - {offset_us})"
    return (f"CASE WHEN {s} RLIKE {q.lit(C.java_pattern(C.ISO_PATTERN))} "
            f"AND {digits(1, 4)} >= 1 AND {digits(18, 2)} <= 59 AND ({zulu} OR ({off_h} <= 23 AND {off_m} <= 59)) "
            f"AND {us} BETWEEN {q.lit(C.MIN_EPOCH_US)} AND {q.lit(C.MAX_EPOCH_US)} THEN {us} END")


def validate_records(records: DataFrame, *, max_payload_bytes: int = 65536, max_future_skew_s: int = 300,
                     retention_days: int = 30) -> DataFrame:
    """Kafka-shaped rows (key, value, topic, partition, offset, timestamp) -> VALIDATED_SCHEMA rows."""
    if not 0 <= max_payload_bytes <= C.MAX_PAYLOAD_LIMIT:
        raise ValueError(f"max_payload_bytes must be within [0, {C.MAX_PAYLOAD_LIMIT}], got {max_payload_bytes}")
    rules = C.field_rules()
    required = C.required_fields()
    fields = list(dict.fromkeys([*required, *(r.name for r in rules)]))
    bad = [f for f in fields if not _NAME.match(f)]
    if bad:
        raise ValueError(f"field names the SQL validation cannot address: {bad}")
    escaped = records.sparkSession.conf.get("spark.sql.parser.escapedStringLiterals", "false").lower() == "true"
    q = _Sql(escaped)
    maxb = q.lit(max_payload_bytes)

    # 1. size and UTF-8; the text only for payloads that pass both
    df = records.selectExpr(
        "key", "value", "topic", "partition", "offset", "timestamp", "length(value) AS _size",
        f"CASE WHEN length(value) <= {maxb} THEN is_valid_utf8(CAST(value AS STRING)) END AS _utf8")
    df = df.selectExpr("*", "CASE WHEN _utf8 THEN CAST(value AS STRING) END AS _txt")
    # 2. depth bound before any parse (the exact depth only when the text has many brackets at all)
    df = df.selectExpr("*", f"CASE WHEN _txt IS NULL THEN NULL WHEN {_count(q, '_txt', '{[')} <= {C.MAX_JSON_DEPTH} "
                            f"THEN FALSE ELSE {_max_depth(q, _strip_strings(q, '_txt'))} > {C.MAX_JSON_DEPTH} END AS _deep")
    # 3. parse: exactly one JSON value
    df = df.selectExpr("*", "CASE WHEN _txt IS NOT NULL AND NOT _deep THEN try_parse_json(concat('[', _txt, ']')) END AS _j")
    df = df.selectExpr("*", "coalesce(_j IS NOT NULL AND try_variant_get(_j, '$[0]', 'variant') IS NOT NULL "
                            "AND try_variant_get(_j, '$[1]', 'variant') IS NULL "
                            "AND CASE WHEN instr(_txt, ']') = 0 THEN TRUE "
                            f"ELSE try_parse_json(concat({q.lit(_P2_PREFIX)}, _txt, "
                            "'}')) IS NOT NULL END, FALSE) AS _ok")
    df = df.selectExpr("*", f"CASE WHEN _txt IS NOT NULL AND NOT _ok THEN {_strip_strings(q, '_txt')} END AS _stripped",
                       f"_ok AND _txt RLIKE {q.lit(_RE_OBJECT_START)} AS _obj")
    df = df.selectExpr("*", *[f"CASE WHEN _obj THEN try_variant_get(_j, '$[0].{f}', 'variant') END AS _f_{f}"
                              for f in fields])
    # 4. JSON types, then the string / integral values
    df = df.selectExpr("*", *[f"schema_of_variant(_f_{r.name}) AS _tag_{r.name}" for r in rules])
    df = df.selectExpr("*", *[f"{_json_type(q, f'_tag_{r.name}', f'_f_{r.name}')} AS _jt_{r.name}" for r in rules])
    values, s_col, n_col = [], {}, {}
    for r in rules:
        if "string" in r.types:
            s_col[r.name] = f"_s_{r.name}"
            values.append(f"CASE WHEN _jt_{r.name} = 'string' THEN try_variant_get(_f_{r.name}, '$', 'string') "
                          f"END AS _s_{r.name}")
        if r.has_const or r.name == "event_time":
            n_col[r.name] = f"_n_{r.name}"
            values.append(f"CASE WHEN _jt_{r.name} = 'integer' THEN try_variant_get(_f_{r.name}, '$', "
                          f"'decimal(38,0)') END AS _n_{r.name}")
    df = df.selectExpr("*", *values)
    # 5. event time, in microseconds since the epoch (NULL: unparsable)
    df = df.selectExpr("*", f"CASE WHEN _jt_event_time = 'string' THEN {_iso_micros(q, '_s_event_time')} "
                            f"WHEN _n_event_time BETWEEN {q.lit(C.MIN_EPOCH_MS)} AND {q.lit(C.MAX_EPOCH_MS)} "
                            "THEN try_cast(_n_event_time AS BIGINT) * 1000L END AS _et")

    # 6. the first broken rule names the reason
    truncated = (f"(_txt RLIKE {q.lit(_RE_CONTAINER_START)} AND (instr(_stripped, {q.lit(chr(34))}) > 0 "
                 f"OR {_count(q, '_stripped', '{[')} > {_count(q, '_stripped', '}]')}))")
    missing = " OR ".join(f"_f_{f} IS NULL" for f in required) or "FALSE"
    missing_list = ", ".join(f"CASE WHEN _f_{f} IS NULL THEN {q.lit(repr(f))} END" for f in sorted(required))
    ts_us = "unix_micros(timestamp)"
    checks = [
        ("value IS NULL", "'not_json'", "'empty message'"),
        (f"_size > {maxb}", "'oversize_payload'", f"concat(CAST(_size AS STRING), {q.lit(f' bytes > {max_payload_bytes}')})"),
        ("NOT _utf8", "'invalid_utf8'", "'bytes are not UTF-8'"),
        ("NOT _ok", f"CASE WHEN {truncated} THEN 'truncated_json' ELSE 'not_json' END",
         f"CASE WHEN _deep THEN {q.lit(f'nested deeper than {C.MAX_JSON_DEPTH} levels')} "
         f"WHEN {truncated} THEN 'JSON cut off' ELSE 'not one JSON value' END"),
        ("NOT _obj", "'not_an_object'", "'top level is not an object'"),
        (missing, "'missing_field'", f"concat('data must contain [', concat_ws(', ', {missing_list}), '] properties')"),
    ]
    for r in rules:
        checks += _field_checks(q, r, s_col.get(r.name), n_col.get(r.name))
    checks += [
        ("_et IS NULL", "'unparsable_time'",
         f"CASE WHEN _jt_event_time = 'string' THEN concat('event_time ', {_quoted(q, '_s_event_time')}, "
         "' is not a valid RFC 3339 time') ELSE 'epoch ms out of range' END"),
        (f"_et > {ts_us} + {q.lit(max_future_skew_s * 1_000_000)}", "'future_time'",
         q.lit(f"event_time is more than {max_future_skew_s} s ahead of the Kafka timestamp")),
        (f"_et < {ts_us} - {q.lit(retention_days * 86_400_000_000)}", "'expired_time'",
         q.lit(f"event_time is older than retention ({retention_days} days)")),
    ]
    verdict = "CASE " + " ".join(
        f"WHEN {cond} THEN named_struct('reason', {reason}, 'detail', substring({detail}, 1, {_DETAIL_CHARS}))"
        for cond, reason, detail in checks) + " END"
    df = df.selectExpr("*", f"{verdict} AS _v")

    event = {
        "event_id": "lower(_s_event_id)", "tenant_id": "_s_tenant_id", "event_time": "timestamp_micros(_et)",
        "user_id": "_s_user_id", "session_id": "_s_session_id", "country": "_s_country", "device": "_s_device",
        "page": "_s_page", "referrer": "_s_referrer", "schema_version": "_n_schema_version",
    }
    out = [f"CAST(CASE WHEN _v IS NULL THEN {event[name]} END AS {VALIDATED_SCHEMA[name].dataType.simpleString()}) "
           f"AS {name}" for name in _EVENT_FIELDS]
    out += [
        "_v.reason AS reason", "_v.detail AS detail",
        "CASE WHEN _v IS NOT NULL THEN value END AS raw_payload",
        "CAST(key AS BINARY) AS raw_key",
        "CAST(topic AS STRING) AS kafka_topic",
        "CAST(partition AS INT) AS kafka_partition",
        "CAST(offset AS BIGINT) AS kafka_offset",
        "CAST(timestamp AS TIMESTAMP) AS kafka_timestamp",
        "CASE WHEN _v IS NULL THEN lower(_s_event_id) "
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
