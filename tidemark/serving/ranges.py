"""Time ranges of dashboard queries: parsing, the bucket that follows the span, and alignment.

A range is normalized before anything else happens, so two requests that ask the same question
(e.g. "last 7 days" a few seconds apart) share one cache key and one ClickHouse query:

* the bucket follows the span: minute up to 6 h, hour up to 14 days, day beyond (at most 90 days);
* both ends are aligned to the bucket: the end is rounded up (the current, partial bucket is
  included), the start is the end minus a whole number of buckets covering the asked span;
* the previous period is the same span immediately before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from tidemark.errors import TidemarkError

MINUTE, HOUR, DAY = 60, 3600, 86400
BUCKETS = {"minute": MINUTE, "hour": HOUR, "day": DAY}
MIN_SPAN = MINUTE
MAX_SPAN = 90 * DAY
MINUTE_BUCKET_MAX = 6 * HOUR
HOUR_BUCKET_MAX = 14 * DAY

# The earliest instant a range may name: nothing older is ever stored, and it keeps every derived
# bound (the previous period, ClickHouse's unsigned DateTime) well inside what each layer represents.
EARLIEST = 946684800  # 2000-01-01T00:00:00Z
PRESETS = {"1h": HOUR, "6h": 6 * HOUR, "24h": DAY, "7d": 7 * DAY, "14d": 14 * DAY, "30d": 30 * DAY, "90d": 90 * DAY}
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNIT = {"m": MINUTE, "h": HOUR, "d": DAY}
_EPOCH_SECONDS = re.compile(r"^[0-9]{1,12}$")  # ASCII only: str.isdigit() also accepts '²', which int() refuses


class RangeError(TidemarkError, ValueError):
    """A range the API cannot answer; the message says what is allowed (answered as 400)."""


def parse_duration(text: str) -> int:
    """'90m', '24h', '7d' (or a preset name) -> seconds."""
    if text in PRESETS:
        return PRESETS[text]
    match = _DURATION.match(text)
    if not match:
        raise RangeError(f"range {text!r} is not a duration like 15m, 24h or 7d")
    return int(match.group(1)) * _UNIT[match.group(2)]


def parse_instant(text: str) -> int:
    """ISO 8601 (a zone is required unless it is UTC by 'Z') or epoch seconds -> epoch seconds,
    from 2000-01-01 on. Anything else, however extreme (year 1 at +14:00, year 9999), is a RangeError."""
    if _EPOCH_SECONDS.match(text):
        moment_s = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise RangeError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-25T03:00:00Z) or epoch seconds") from None
        if moment.tzinfo is None:
            raise RangeError(f"{text!r} has no time zone; add Z for UTC")
        try:  # converting to UTC can leave datetime's range (year 1 at +14:00)
            moment_s = int(moment.timestamp())
        except (OverflowError, ValueError):
            raise RangeError(f"{text!r} is out of range; times from 2000-01-01 on") from None
    if moment_s < EARLIEST:
        raise RangeError(f"{text!r} is before 2000-01-01; no data is that old")
    return moment_s


def bucket_for(span_s: int) -> str:
    if span_s <= MINUTE_BUCKET_MAX:
        return "minute"
    if span_s <= HOUR_BUCKET_MAX:
        return "hour"
    return "day"


def _ceil(t: int, step: int) -> int:
    return -(-t // step) * step


@dataclass(frozen=True)
class TimeRange:
    """[start, end) in epoch seconds, aligned to ``bucket``."""

    start: int
    end: int
    bucket: str

    @property
    def step(self) -> int:
        return BUCKETS[self.bucket]

    @property
    def span(self) -> int:
        return self.end - self.start

    def previous(self) -> TimeRange:
        return TimeRange(self.start - self.span, self.start, self.bucket)

    def with_previous(self) -> TimeRange:
        """The range and its previous period, as one range (one query answers both)."""
        return TimeRange(self.start - self.span, self.end, self.bucket)

    def buckets(self) -> list[int]:
        return list(range(self.start, self.end, self.step))

    def touches_live(self, now: float, margin_s: int = 2 * MINUTE) -> bool:
        return self.end > now - margin_s

    def as_dict(self) -> dict:
        iso = lambda t: datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")  # noqa: E731
        return {"start": iso(self.start), "end": iso(self.end), "bucket": self.bucket}


def resolve(now: float, range_: str | None = None, start: str | None = None, end: str | None = None) -> TimeRange:
    """The normalized range of a request: ``range`` (a duration ending now), or ``start`` [+ ``end``,
    default now]. Raises RangeError for anything outside 1 minute .. 90 days."""
    if range_ is not None and start is not None:
        raise RangeError("give either range or start/end, not both")
    end_s = parse_instant(end) if end is not None else int(now)
    if start is not None:
        span = end_s - parse_instant(start)
    elif end is not None:
        raise RangeError("end goes with start; range always ends now")
    else:
        if range_ is None:
            range_ = "24h"
        span = parse_duration(range_)
    if span < MIN_SPAN:
        raise RangeError("a range must be at least 1 minute long (start before end)")
    if span > MAX_SPAN:
        raise RangeError("a range can be at most 90 days long")
    if end_s > now + HOUR:
        raise RangeError("the range ends more than an hour in the future")
    bucket = bucket_for(span)
    step = BUCKETS[bucket]
    aligned_end = _ceil(end_s, step) if end_s % step else end_s
    if range_ is not None and end_s % step == 0:
        aligned_end = end_s + step  # "last 24h" at 10:00:00 includes the 10:00 bucket just begun
    n = _ceil(span, step) // step
    n = min(n, MAX_SPAN // step)
    return TimeRange(aligned_end - n * step, aligned_end, bucket)


def realtime_window(now: float, minutes: int = 5) -> TimeRange:
    """The last ``minutes`` minutes, the current one included."""
    end = (int(now) // MINUTE + 1) * MINUTE
    return TimeRange(end - minutes * MINUTE, end, "minute")
