"""The page-view event contract: parse and validate one raw Kafka payload.

The JSON Schema in ``schemas/events/page_view.v1.json`` is the source of truth
for field shapes; it is compiled once with fastjsonschema. Rules a JSON Schema
cannot express (time parsing, clock skew and retention relative to the
record's Kafka timestamp, payload size, UTF-8) are checked here.

Every rejection carries a stable reason code from ``REASONS``. The traffic
generator injects malformed events by the same codes, so rejected counts
reconcile exactly against its manifest.

Validation is deterministic: "future" and "expired" are judged against the
record's own reference time (its Kafka timestamp), never against ``now()``,
so a replayed batch classifies every record the same way.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastjsonschema

from tidemark.config import PROJECT_ROOT

SCHEMA_VERSION = 1
SCHEMA_PATH = PROJECT_ROOT / "schemas" / "events" / f"page_view.v{SCHEMA_VERSION}.json"

# Stable reason codes, in the order checks run. Adding one is a contract change:
# document it in schemas/README.md.
REASONS = (
    "oversize_payload",    # raw payload larger than max_payload_bytes
    "invalid_utf8",        # bytes are not UTF-8
    "truncated_json",      # JSON cut off before its end
    "not_json",            # not JSON at all
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
    "unparsable_time",     # event_time neither ISO-8601 with offset nor epoch ms
    "future_time",         # event_time beyond the allowed clock skew
    "expired_time",        # event_time older than retention
)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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


@lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads(Path(SCHEMA_PATH).read_text())


@lru_cache(maxsize=1)
def _compiled():
    return fastjsonschema.compile(_schema())


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


def _schema_reason(exc: fastjsonschema.JsonSchemaValueException, doc: dict) -> InvalidEvent:
    field = (exc.path[1] if exc.path and len(exc.path) > 1 else None)
    if exc.rule == "required":
        return InvalidEvent("missing_field", exc.message)
    if exc.rule == "type":
        return InvalidEvent("wrong_type", exc.message)
    if field == "tenant_id" and doc.get("tenant_id") == "":
        return InvalidEvent("empty_tenant", "tenant_id is empty")
    return InvalidEvent(_FIELD_REASONS.get(field, "invalid_field"), exc.message)


def parse_event_time(value: Any) -> datetime:
    """ISO-8601 with an explicit offset, or integer epoch milliseconds -> aware UTC."""
    if isinstance(value, bool):
        raise InvalidEvent("wrong_type", "event_time must be a string or an integer")
    if isinstance(value, int):
        try:
            return EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            raise InvalidEvent("unparsable_time", f"epoch ms {value} out of range") from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent("unparsable_time", f"event_time {value[:64]!r} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise InvalidEvent("unparsable_time", f"event_time {value[:64]!r} has no UTC offset")
    return parsed.astimezone(timezone.utc)


def validate(
    payload: bytes,
    reference_time: datetime,
    *,
    max_payload_bytes: int = 65536,
    max_future_skew: timedelta = timedelta(minutes=5),
    retention: timedelta = timedelta(days=30),
) -> PageView:
    """Return the valid event, or raise InvalidEvent with a reason code.

    ``reference_time`` is the record's Kafka timestamp (aware UTC).
    """
    if payload is None:
        raise InvalidEvent("not_json", "empty message")
    if len(payload) > max_payload_bytes:
        raise InvalidEvent("oversize_payload", f"{len(payload)} bytes > {max_payload_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid_utf8", f"byte {exc.start} is not UTF-8") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        stripped = text.rstrip()
        # A cut-off document fails at its very end, after a plausible start.
        if stripped.startswith(("{", "[")) and (exc.pos >= len(stripped) or exc.msg.startswith("Unterminated")):
            raise InvalidEvent("truncated_json", f"ends at char {exc.pos}") from None
        raise InvalidEvent("not_json", f"{exc.msg} at char {exc.pos}") from None
    if not isinstance(doc, dict):
        raise InvalidEvent("not_an_object", f"top level is {type(doc).__name__}")
    try:
        _compiled()(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise _schema_reason(exc, doc) from None

    event_time = parse_event_time(doc["event_time"])
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
        schema_version=doc["schema_version"],
    )
