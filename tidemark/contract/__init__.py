"""The page-view event contract: parse and validate one raw Kafka payload.

Modules: ``schema`` (reason codes, field rules from the JSON Schema), ``json_text`` (how a
payload's JSON is read), ``event_time`` (time parsing); ``validate`` here composes them. Every
public name is re-exported here, so callers import from ``tidemark.contract``.

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

from datetime import datetime, timedelta, timezone

from tidemark.contract.event_time import (
    EPOCH,
    ISO_PATTERN,
    MAX_EPOCH_MS,
    MAX_EPOCH_US,
    MIN_EPOCH_MS,
    MIN_EPOCH_US,
    parse_event_time,
)
from tidemark.contract.json_text import (
    DECIMAL_MAX_DIGITS,
    JSON_WHITESPACE,
    MAX_JSON_DEPTH,
    MAX_KEY_UTF16,
    MAX_NUMBER_DIGITS,
    MAX_PAYLOAD_LIMIT,
    Unreadable,
    json_depth,
    looks_truncated,
    read_json,
    strip_strings,
)
from tidemark.contract.schema import (
    EMPTY_STRING_REASONS,
    JSON_TYPES,
    REASONS,
    SCHEMA_PATH,
    SCHEMA_VERSION,
    FieldRule,
    InvalidEvent,
    PageView,
    check_field,
    field_rules,
    java_pattern,
    json_type,
    python_pattern,
    required_fields,
)

__all__ = [
    "DECIMAL_MAX_DIGITS",
    "EMPTY_STRING_REASONS",
    "EPOCH",
    "FieldRule",
    "ISO_PATTERN",
    "InvalidEvent",
    "JSON_TYPES",
    "JSON_WHITESPACE",
    "MAX_EPOCH_MS",
    "MAX_EPOCH_US",
    "MAX_JSON_DEPTH",
    "MAX_KEY_UTF16",
    "MAX_NUMBER_DIGITS",
    "MAX_PAYLOAD_LIMIT",
    "MIN_EPOCH_MS",
    "MIN_EPOCH_US",
    "PageView",
    "REASONS",
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "Unreadable",
    "check_field",
    "field_rules",
    "java_pattern",
    "json_depth",
    "json_type",
    "looks_truncated",
    "parse_event_time",
    "python_pattern",
    "read_json",
    "required_fields",
    "strip_strings",
    "validate",
]


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


def _validate(
    payload, reference_time: datetime, max_payload_bytes: int, max_future_skew: timedelta, retention: timedelta
) -> PageView:
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
