"""The event schema as rules both engines apply: reason codes, the ``PageView`` record, and the
per-field rules read from ``schemas/events/page_view.v1.json`` (a draft-07 subset; any other
keyword is refused, so a schema change is never silently ignored by one engine)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from tidemark.config import PROJECT_ROOT
from tidemark.errors import TidemarkError

SCHEMA_VERSION = 1
SCHEMA_PATH = PROJECT_ROOT / "schemas" / "events" / f"page_view.v{SCHEMA_VERSION}.json"

# Stable reason codes, in the order checks run. Adding one is a contract change:
# document it in schemas/README.md.
REASONS = (
    "oversize_payload",  # raw payload larger than max_payload_bytes
    "invalid_utf8",  # bytes are not UTF-8
    "truncated_json",  # not readable JSON, and it looks cut off (see looks_truncated)
    "not_json",  # not readable JSON otherwise (also: empty message)
    "not_an_object",  # JSON, but not an object
    "missing_field",  # a required field is absent
    "wrong_type",  # a field has the wrong JSON type
    "unsupported_version",  # schema_version is not 1
    "invalid_event_id",  # event_id is not a UUID
    "empty_tenant",  # tenant_id is the empty string
    "invalid_tenant",  # tenant_id has characters outside the allowed set
    "invalid_field",  # user_id/session_id/referrer out of bounds
    "unknown_device",  # device outside desktop/mobile/tablet/other
    "bad_country",  # not an ISO-3166-1 alpha-2 code
    "bad_page",  # page empty, too long, or not a path
    "unparsable_time",  # event_time neither RFC 3339 (with offset) nor in-range integer epoch ms
    "out_of_range_time",  # event_time outside what the rollups can store (1970 .. 2106, ClickHouse DateTime)
    "implausible_kafka_time",  # the record's Kafka timestamp far from the stream's own clock
    "future_time",  # event_time beyond the allowed clock skew
    "expired_time",  # event_time older than retention
)
# Codes judged on the Kafka record against the clock of the stream that reads it, not on the payload:
# a producer (or the traffic generator, which simulates time) cannot put them in a payload.
RECORD_REASONS = ("implausible_kafka_time",)
PAYLOAD_REASONS = tuple(r for r in REASONS if r not in RECORD_REASONS)


_DOLLAR = re.compile(r"(?<!\\)\$")


def python_pattern(pattern: str) -> str:
    """A schema pattern for Python ``re.search``: ``$`` is the end of the string (ECMA-262), not
    "before a final newline"."""
    return _DOLLAR.sub(r"\\Z", pattern)


def java_pattern(pattern: str) -> str:
    """The same pattern for Java (Spark's ``rlike``, a search): ``$`` becomes ``\\z``."""
    return _DOLLAR.sub(r"\\z", pattern)


class InvalidEvent(TidemarkError, ValueError):
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
_TOP_KEYWORDS = {"$schema", "$id", "title", "description", "type", "required", "properties", "additionalProperties"}


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
        rules.append(
            FieldRule(
                name=name,
                types=tuple(types),
                reason=_FIELD_REASONS.get(name, "invalid_field"),
                has_const="const" in prop,
                const=prop.get("const"),
                enum=tuple(prop["enum"]) if "enum" in prop else None,
                min_length=prop.get("minLength"),
                max_length=prop.get("maxLength"),
                pattern=prop.get("pattern"),
            )
        )
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
