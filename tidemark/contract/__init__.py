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
express (payload size, UTF-8, how JSON is read, time parsing, the range of
storable instants, clock skew and retention relative to the record's Kafka
timestamp, the Kafka timestamp's own plausible window) are defined here.

Every rejection carries a stable reason code from ``REASONS``. The traffic
generator injects malformed events by the same codes, so rejected counts
reconcile exactly against its manifest.

Validation is deterministic: "future" and "expired" are judged against the
record's own reference time (its Kafka timestamp), never against ``now()``,
so a replayed batch classifies every record the same way. The Kafka timestamp
is set by the producer (CreateTime), so it is itself checked: it must lie within
``[ingest_time - max_record_age, ingest_time + MAX_RECORD_SKEW]``, where
``ingest_time`` is the reading stream's micro-batch time (fixed per batch in
Spark's checkpoint, so a replay sees the same one), else ``implausible_kafka_time``.
And whatever the Kafka timestamp, an event_time the rollups cannot store (before
1970, after 2106-02-07T06:28:15Z) is ``out_of_range_time``: no accepted event
can put a value outside a ClickHouse column's range.

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
    MAX_RECORD_SKEW,
    MAX_STORABLE_US,
    MIN_EPOCH_MS,
    MIN_EPOCH_US,
    MIN_STORABLE_US,
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
    PAYLOAD_REASONS,
    REASONS,
    RECORD_REASONS,
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
    "MAX_RECORD_SKEW",
    "MAX_STORABLE_US",
    "MIN_EPOCH_MS",
    "MIN_EPOCH_US",
    "MIN_STORABLE_US",
    "PAYLOAD_REASONS",
    "PageView",
    "REASONS",
    "RECORD_REASONS",
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
    ingest_time: datetime | None = None,
    max_payload_bytes: int = 65536,
    max_future_skew: timedelta = timedelta(minutes=5),
    retention: timedelta = timedelta(days=30),
    max_record_age: timedelta = timedelta(days=365),
) -> PageView:
    """Return the valid event, or raise InvalidEvent with a reason code (never anything else).

    ``reference_time`` is the record's Kafka timestamp (aware UTC; a naive one is taken as UTC).
    ``ingest_time`` is when the stream read it (its micro-batch time); the Kafka timestamp must lie
    within [ingest_time - max_record_age, ingest_time + MAX_RECORD_SKEW]. None (tools that judge a
    payload alone, e.g. the generator's self-checks) means "read at its own timestamp": the
    Kafka-timestamp check then cannot fail.
    """
    try:
        return _validate(
            payload, reference_time, ingest_time, max_payload_bytes, max_future_skew, retention, max_record_age
        )
    except InvalidEvent:
        raise
    except Exception as exc:  # noqa: BLE001 - defensive: no payload may crash a caller
        raise InvalidEvent("not_json", f"unreadable payload ({type(exc).__name__})") from None


def _validate(
    payload,
    reference_time: datetime,
    ingest_time: datetime | None,
    max_payload_bytes: int,
    max_future_skew: timedelta,
    retention: timedelta,
    max_record_age: timedelta,
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
    if not MIN_STORABLE_US <= (event_time - EPOCH) // timedelta(microseconds=1) <= MAX_STORABLE_US:
        raise InvalidEvent(
            "out_of_range_time",
            f"event_time {event_time.isoformat()} is outside 1970-01-01T00:00:00Z..2106-02-07T06:28:15Z",
        )
    if reference_time.tzinfo is None:
        reference_time = reference_time.replace(tzinfo=timezone.utc)
    if ingest_time is not None:
        if ingest_time.tzinfo is None:
            ingest_time = ingest_time.replace(tzinfo=timezone.utc)
        if not ingest_time - max_record_age <= reference_time <= ingest_time + MAX_RECORD_SKEW:
            raise InvalidEvent(
                "implausible_kafka_time",
                f"Kafka timestamp {reference_time.isoformat()} is outside [ingest time - {max_record_age.days} days, "
                f"+ {int(MAX_RECORD_SKEW.total_seconds())} s] of {ingest_time.isoformat()}",
            )
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
