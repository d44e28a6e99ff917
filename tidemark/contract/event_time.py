"""``event_time``: RFC 3339 date-time with an offset, or integral epoch milliseconds, and the range
of instants both engines accept."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from tidemark.contract.schema import InvalidEvent, json_type, python_pattern

# event_time: RFC 3339 date-time, plus the instant's range
ISO_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MIN_EPOCH_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MIN_EPOCH_US = MIN_EPOCH_MS * 1000
MAX_EPOCH_US = MAX_EPOCH_MS * 1000 + 999
# The instants the rollups can store: ClickHouse DateTime is UInt32 seconds since the epoch, so
# 1970-01-01T00:00:00Z .. 2106-02-07T06:28:15.999999Z (the minute, hour and newest-event columns
# are all this type). Outside it a parsable event_time is ``out_of_range_time``.
MIN_STORABLE_US = 0
MAX_STORABLE_US = 2**32 * 1_000_000 - 1
# How far the record's Kafka timestamp (the producer's CreateTime) may run ahead of the clock of the
# stream that reads it: Kafka 4's own default for log.message.timestamp.after.max.ms, which the
# embedded broker and the topics Tidemark creates pin (tidemark/stack/kafka.py, io/kafka_admin.py).
MAX_RECORD_SKEW = timedelta(hours=1)

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
    fraction = value[20 : len(value) - (1 if zulu else 6)] if value[19] == "." else ""
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
