"""The page-view event contract: parse and validate one raw Kafka payload.

This is the **reference implementation** (tests, tools, the generator's
self-checks). The speed layer applies the very same rules as Spark SQL
expressions (``tidemark.transforms.validation``); a parity test runs both on
one corpus and asserts identical reason codes and values. Every rule is
defined so that both engines can evaluate it exactly: see schemas/README.md,
"How a payload is read", for the definitions.

The JSON Schema in ``schemas/events/page_view.v1.json`` is the source of truth
for field shapes. ``field_rules()`` reads the subset of draft-07 the contract
uses (``required``, per-property ``type``, ``const``, ``enum``, ``minLength``,
``maxLength``, ``pattern``) and refuses any other keyword, so a schema change
can never be silently ignored by one engine. Rules a JSON Schema cannot
express (payload size, UTF-8, how JSON is read, time parsing, clock skew and
retention relative to the record's Kafka timestamp) are defined here.

Every rejection carries a stable reason code from ``REASONS``. The traffic
generator injects malformed events by the same codes, so rejected counts
reconcile exactly against its manifest.

Validation is deterministic: "future" and "expired" are judged against the
record's own reference time (its Kafka timestamp), never against ``now()``,
so a replayed batch classifies every record the same way.

``validate`` never raises anything but ``InvalidEvent``: nesting depth and
number sizes are bounded *before* ``json.loads`` recurses or converts (a poison
payload such as ``b"[" * 5000`` is a dead letter, not a ``RecursionError``),
and any unexpected failure while reading a payload becomes a reason code.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from tidemark.config import PROJECT_ROOT

SCHEMA_VERSION = 1
SCHEMA_PATH = PROJECT_ROOT / "schemas" / "events" / f"page_view.v{SCHEMA_VERSION}.json"

# Stable reason codes, in the order checks run. Adding one is a contract change:
# document it in schemas/README.md.
REASONS = (
    "oversize_payload",    # raw payload larger than max_payload_bytes
    "invalid_utf8",        # bytes are not UTF-8
    "truncated_json",      # not readable JSON, and it looks cut off (see looks_truncated)
    "not_json",            # not readable JSON otherwise (also: empty message)
    "not_an_object",       # JSON, but not an object
    "missing_field",       # a required field is absent
    "wrong_type",          # a field has the wrong JSON type
    "unsupported_version", # schema_version is not 1
    "invalid_event_id",    # event_id is not a UUID
    "empty_tenant",        # tenant_id is the empty string
    "invalid_tenant",      # tenant_id has characters outside the allowed set
    "invalid_field",       # user_id/session_id/referrer out of bounds
    "unknown_device",      # device outside desktop/mobile/tablet/other
    "bad_country",         # not an ISO-3166-1 alpha-2 code
    "bad_page",            # page empty, too long, or not a path
    "unparsable_time",     # event_time neither RFC 3339 (with offset) nor in-range integer epoch ms
    "future_time",         # event_time beyond the allowed clock skew
    "expired_time",        # event_time older than retention
)

# -- How a payload is read (schemas/README.md, "How a payload is read") ------------------------
JSON_WHITESPACE = " \t\n\r"
MAX_JSON_DEPTH = 64            # deepest nesting of arrays/objects accepted
MAX_NUMBER_DIGITS = 1000       # digits in one number literal (integer, fraction and exponent digits)
MAX_KEY_UTF16 = 50_000         # longest object key, in UTF-16 code units (after unescaping)
DECIMAL_MAX_DIGITS = 38        # a plain decimal literal within 38 digits/scale is exact, else a double
MAX_PAYLOAD_LIMIT = 1 << 20    # max_payload_bytes may not exceed 1 MiB (the rules are defined up to there)

# event_time: RFC 3339 date-time, plus the instant's range
ISO_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
               r"([Zz]|[+-][0-9]{2}:[0-9]{2})$")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MIN_EPOCH_MS = -62_135_596_800_000   # 0001-01-01T00:00:00Z
MAX_EPOCH_MS = 253_402_300_799_999   # 9999-12-31T23:59:59.999Z
MIN_EPOCH_US = MIN_EPOCH_MS * 1000
MAX_EPOCH_US = MAX_EPOCH_MS * 1000 + 999

_DOLLAR = re.compile(r"(?<!\\)\$")


def python_pattern(pattern: str) -> str:
    """A schema pattern for Python ``re.search``: ``$`` is the end of the string (ECMA-262), not
    "before a final newline"."""
    return _DOLLAR.sub(r"\\Z", pattern)


def java_pattern(pattern: str) -> str:
    """The same pattern for Java (Spark's ``rlike``, a search): ``$`` becomes ``\\z``."""
    return _DOLLAR.sub(r"\\z", pattern)


class InvalidEvent(ValueError):
    """A payload that breaks the contract; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class PageView:
    event_id: str
    tenant_id: str
    event_time: datetime  # aware, UTC
    user_id: str
    session_id: str
    country: str
    device: str
    page: str
    referrer: str | None
    schema_version: int


# -- the schema, as rules both engines apply ---------------------------------------------------
# field -> reason for value (not type/presence) violations
_FIELD_REASONS = {
    "schema_version": "unsupported_version",
    "event_id": "invalid_event_id",
    "tenant_id": "invalid_tenant",
    "device": "unknown_device",
    "country": "bad_country",
    "page": "bad_page",
    "user_id": "invalid_field",
    "session_id": "invalid_field",
    "referrer": "invalid_field",
}
# tenant_id == "" gets its own code (it breaks minLength)
EMPTY_STRING_REASONS = {"tenant_id": "empty_tenant"}

JSON_TYPES = ("string", "integer", "number", "boolean", "null", "object", "array")
_PROPERTY_KEYWORDS = {"type", "const", "enum", "minLength", "maxLength", "pattern", "description"}
_TOP_KEYWORDS = {"$schema", "$id", "title", "description", "type", "required", "properties",
                 "additionalProperties"}


@dataclass(frozen=True)
class FieldRule:
    """One schema property. Checks run in this order: type, const, enum, minLength, maxLength,
    pattern; a failed type check is ``wrong_type``, any other failure ``reason``."""

    name: str
    types: tuple[str, ...]
    reason: str
    has_const: bool = False
    const: int | None = None
    enum: tuple[str, ...] | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None

    def accepts_type(self, json_type: str) -> bool:
        return json_type in self.types or (json_type == "integer" and "number" in self.types)


@lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads(Path(SCHEMA_PATH).read_text())


@lru_cache(maxsize=1)
def required_fields() -> tuple[str, ...]:
    return tuple(_schema().get("required", ()))


@lru_cache(maxsize=1)
def field_rules() -> tuple[FieldRule, ...]:
    """The schema's properties, in schema order (the order checks run), as FieldRules.

    Raises ValueError for any JSON Schema keyword the two engines do not both implement."""
    schema = _schema()
    unknown = set(schema) - _TOP_KEYWORDS
    if unknown or schema.get("type") != "object" or schema.get("additionalProperties", True) is not True:
        raise ValueError(f"unsupported top-level schema keywords/values: {sorted(unknown)}")
    rules = []
    for name, prop in schema["properties"].items():
        unknown = set(prop) - _PROPERTY_KEYWORDS
        if unknown:
            raise ValueError(f"property {name}: unsupported schema keywords {sorted(unknown)}")
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        if not set(types) <= set(JSON_TYPES):
            raise ValueError(f"property {name}: unsupported types {types}")
        if "const" in prop and not (type(prop["const"]) is int and set(types) <= {"integer", "number"}):
            raise ValueError(f"property {name}: only integer const values are supported")
        if "enum" in prop and (types != ["string"] or not all(isinstance(v, str) for v in prop["enum"])):
            raise ValueError(f"property {name}: only string enums on string properties are supported")
        rules.append(FieldRule(
            name=name, types=tuple(types), reason=_FIELD_REASONS.get(name, "invalid_field"),
            has_const="const" in prop, const=prop.get("const"),
            enum=tuple(prop["enum"]) if "enum" in prop else None,
            min_length=prop.get("minLength"), max_length=prop.get("maxLength"), pattern=prop.get("pattern"),
        ))
    return tuple(rules)


@cache
def _compiled_pattern(pattern: str) -> re.Pattern:
    return re.compile(python_pattern(pattern))


def json_type(value: Any) -> str:
    """The JSON type of a value read by ``read_json``. A number is an ``integer`` when its value is
    integral: int, an integral Decimal, or a finite integral float (draft-07 semantics)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, Decimal):
        return "integer" if value == value.to_integral_value() else "number"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def check_field(rule: FieldRule, value: Any) -> InvalidEvent | None:
    """The violation of one present field, or None."""
    name = f"data.{rule.name}"
    jt = json_type(value)
    if not rule.accepts_type(jt):
        return InvalidEvent("wrong_type", f"{name} must be {' or '.join(rule.types)}, not {jt}")
    if rule.has_const and not (jt in ("integer", "number") and value == rule.const):
        return InvalidEvent(rule.reason, f"{name} must be {rule.const}")
    if isinstance(value, str):
        if value == "" and rule.name in EMPTY_STRING_REASONS and (rule.min_length or 0) > 0:
            return InvalidEvent(EMPTY_STRING_REASONS[rule.name], f"{name} is empty")
        if rule.enum is not None and value not in rule.enum:
            return InvalidEvent(rule.reason, f"{name} {value[:64]!r} is not one of the allowed values")
        if rule.min_length is not None and len(value) < rule.min_length:
            return InvalidEvent(rule.reason, f"{name} must be at least {rule.min_length} characters")
        if rule.max_length is not None and len(value) > rule.max_length:
            return InvalidEvent(rule.reason, f"{name} must be at most {rule.max_length} characters")
        if rule.pattern is not None and not _compiled_pattern(rule.pattern).search(value):
            return InvalidEvent(rule.reason, f"{name} must match pattern {rule.pattern}")
    return None


# -- reading JSON -------------------------------------------------------------------------------
class Unreadable(ValueError):
    """The payload is not one readable JSON value (internal: becomes truncated_json or not_json)."""


_ESCAPE = re.compile(r"\\.", re.S)
_STRING_LITERAL = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def strip_strings(text: str) -> str:
    """``text`` without its string literals: first every backslash and the character after it is
    removed, then every ``"..."`` without a quote inside (left to right)."""
    return _STRING_LITERAL.sub("", _ESCAPE.sub("", text))


def json_depth(text: str) -> int:
    """Deepest bracket nesting of ``strip_strings(text)`` (``{``/``[`` open, ``}``/``]`` close;
    the running count's maximum). For valid JSON it is the document's nesting depth."""
    depth = deepest = 0
    for ch in _NOT_BRACKET.sub("", strip_strings(text)):
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def looks_truncated(text: str) -> bool:
    """For an unreadable payload: ``truncated_json`` (True) or ``not_json`` (False).

    Truncated when the first non-whitespace character is ``{`` or ``[`` and, in
    ``strip_strings(text)``, a ``"`` is left (a string cut off) or there are more opening
    brackets (``{``, ``[``) than closing ones (``}``, ``]``)."""
    if not text.lstrip(JSON_WHITESPACE).startswith(("{", "[")):
        return False
    s = strip_strings(text)
    return '"' in s or s.count("{") + s.count("[") > s.count("}") + s.count("]")


def _int(literal: str):
    digits = len(literal) - literal.startswith("-")
    if digits > MAX_NUMBER_DIGITS:
        raise Unreadable(f"number with more than {MAX_NUMBER_DIGITS} digits")
    if digits <= DECIMAL_MAX_DIGITS:
        return int(literal)  # a 64-bit integer or an exact DECIMAL(p,0) in Spark's variant
    return float(literal)  # the nearest double, infinite beyond ~1.8e308, like Spark's variant


def _float(literal: str):
    if sum(ch.isdigit() for ch in literal) > MAX_NUMBER_DIGITS:
        raise Unreadable(f"number with more than {MAX_NUMBER_DIGITS} digits")
    if "e" not in literal and "E" not in literal:
        exact = Decimal(literal)
        parts = exact.as_tuple()
        exponent = parts.exponent  # a letter only for NaN and infinities, which JSON numbers never are
        if isinstance(exponent, int) and -exponent <= DECIMAL_MAX_DIGITS and len(parts.digits) <= DECIMAL_MAX_DIGITS:
            return exact
    return float(literal)  # rounded to the nearest double, like Spark's variant


def _constant(name: str):
    raise Unreadable(f"{name} is not JSON")


def _object(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise Unreadable("duplicate key in an object")
    for key in obj:
        if len(key) > MAX_KEY_UTF16 // 2 and len(key.encode("utf-16-le")) // 2 > MAX_KEY_UTF16:
            raise Unreadable(f"object key longer than {MAX_KEY_UTF16} UTF-16 units")
    return obj


def _has_surrogate(doc: Any) -> bool:
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def read_json(text: str) -> Any:
    """The one JSON value in ``text``, or raise Unreadable (never anything else).

    Beyond RFC 8259 syntax (one value, only JSON whitespace around it), a payload is unreadable
    when it nests deeper than MAX_JSON_DEPTH, has a duplicate key in an object, a key longer than
    MAX_KEY_UTF16 UTF-16 units, a number literal with more than MAX_NUMBER_DIGITS digits,
    NaN/Infinity, or a ``\\u`` escape that leaves a lone surrogate. Numbers are kept the way Spark's
    VARIANT stores them: exact (int, or Decimal for a literal with a fraction) when written without
    an exponent in at most 38 digits and 38 fraction digits, otherwise the nearest double (which is
    infinite for a literal beyond ~1.8e308)."""
    try:
        if text.count("{") + text.count("[") > MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
            raise Unreadable(f"nested deeper than {MAX_JSON_DEPTH} levels")
        doc = json.loads(text, object_pairs_hook=_object, parse_int=_int, parse_float=_float,
                         parse_constant=_constant)
        if "\\u" in text and _has_surrogate(doc):
            raise Unreadable("a \\u escape leaves a lone surrogate")
        return doc
    except Unreadable:
        raise
    except json.JSONDecodeError as exc:
        raise Unreadable(f"{exc.msg} at char {exc.pos}") from None
    except Exception as exc:  # noqa: BLE001 - RecursionError, MemoryError-free paths, anything else: never escape
        raise Unreadable(f"{type(exc).__name__}: {str(exc)[:100]}") from None


# -- event time ---------------------------------------------------------------------------------
_ISO = re.compile(python_pattern(ISO_PATTERN))


def parse_event_time(value: Any) -> datetime:
    """RFC 3339 date-time with an offset, or integral epoch milliseconds -> aware UTC.

    String: ``YYYY-MM-DD(T|t| )hh:mm:ss[.fraction](Z|z|±hh:mm)``, a real calendar date, year >= 1,
    hh <= 23, mm/ss <= 59, offset hours <= 23 and minutes <= 59; the fraction (any number of
    digits) is truncated to microseconds. Number: integral (see ``json_type``). Either way the
    instant must lie in [0001-01-01T00:00:00Z, 9999-12-31T23:59:59.999999Z] (epoch ms in
    [MIN_EPOCH_MS, MAX_EPOCH_MS])."""
    jt = json_type(value)
    if jt == "integer":
        ms = int(value)
        if not MIN_EPOCH_MS <= ms <= MAX_EPOCH_MS:
            raise InvalidEvent("unparsable_time", f"epoch ms {str(ms)[:40]} out of range")
        return EPOCH + timedelta(milliseconds=ms)
    if jt != "string":
        raise InvalidEvent("wrong_type", "event_time must be a string or an integer")
    if not _ISO.search(value):
        raise InvalidEvent("unparsable_time", f"event_time {value[:64]!r} is not RFC 3339 with an offset")
    year, month, day = int(value[0:4]), int(value[5:7]), int(value[8:10])
    hour, minute, second = int(value[11:13]), int(value[14:16]), int(value[17:19])
    zulu = value[-1] in "Zz"
    fraction = value[20:len(value) - (1 if zulu else 6)] if value[19] == "." else ""
    micros = int(fraction[:6].ljust(6, "0"))  # truncated, not rounded
    if zulu:
        offset_min = 0
    else:
        off_h, off_m = int(value[-5:-3]), int(value[-2:])
        if off_h > 23 or off_m > 59:
            raise InvalidEvent("unparsable_time", f"event_time {value[:64]!r} has an invalid offset")
        offset_min = (off_h * 60 + off_m) * (-1 if value[-6] == "-" else 1)
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        raise InvalidEvent("unparsable_time", f"event_time {value[:64]!r} is not a valid date and time") from None
    epoch_us = (local - EPOCH) // timedelta(microseconds=1) + micros - offset_min * 60_000_000
    if not MIN_EPOCH_US <= epoch_us <= MAX_EPOCH_US:
        raise InvalidEvent("unparsable_time", f"event_time {value[:64]!r} is out of range")
    return EPOCH + timedelta(microseconds=epoch_us)


# -- the whole contract -------------------------------------------------------------------------
def validate(
    payload: bytes | None,
    reference_time: datetime,
    *,
    max_payload_bytes: int = 65536,
    max_future_skew: timedelta = timedelta(minutes=5),
    retention: timedelta = timedelta(days=30),
) -> PageView:
    """Return the valid event, or raise InvalidEvent with a reason code (never anything else).

    ``reference_time`` is the record's Kafka timestamp (aware UTC; a naive one is taken as UTC).
    """
    try:
        return _validate(payload, reference_time, max_payload_bytes, max_future_skew, retention)
    except InvalidEvent:
        raise
    except Exception as exc:  # noqa: BLE001 - defensive: no payload may crash a caller
        raise InvalidEvent("not_json", f"unreadable payload ({type(exc).__name__})") from None


def _validate(payload, reference_time: datetime, max_payload_bytes: int, max_future_skew: timedelta,
              retention: timedelta) -> PageView:
    if payload is None:
        raise InvalidEvent("not_json", "empty message")
    payload = bytes(payload)
    if len(payload) > max_payload_bytes:
        raise InvalidEvent("oversize_payload", f"{len(payload)} bytes > {max_payload_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid_utf8", f"byte {exc.start} is not UTF-8") from None
    try:
        doc = read_json(text)
    except Unreadable as exc:
        if looks_truncated(text):
            raise InvalidEvent("truncated_json", f"JSON cut off ({exc})") from None
        raise InvalidEvent("not_json", str(exc) or "not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidEvent("not_an_object", f"top level is {json_type(doc)}")
    missing = [name for name in required_fields() if name not in doc]
    if missing:
        raise InvalidEvent("missing_field", f"data must contain {sorted(missing)} properties")
    for rule in field_rules():
        if rule.name in doc:
            problem = check_field(rule, doc[rule.name])
            if problem is not None:
                raise problem

    event_time = parse_event_time(doc["event_time"])
    if reference_time.tzinfo is None:
        reference_time = reference_time.replace(tzinfo=timezone.utc)
    if event_time > reference_time + max_future_skew:
        raise InvalidEvent("future_time", f"{event_time.isoformat()} is ahead of {reference_time.isoformat()}")
    if event_time < reference_time - retention:
        raise InvalidEvent("expired_time", f"{event_time.isoformat()} is older than retention")
    return PageView(
        event_id=doc["event_id"].lower(),
        tenant_id=doc["tenant_id"],
        event_time=event_time,
        user_id=doc["user_id"],
        session_id=doc["session_id"],
        country=doc["country"],
        device=doc["device"],
        page=doc["page"],
        referrer=doc.get("referrer"),
        schema_version=int(doc["schema_version"]),
    )
