"""Event-hour arithmetic shared by every layer (parsing, labels, ranges). Every job reads one
explicit hour (the Airflow data interval or the operator's --hour), never the clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

HOUR = timedelta(hours=1)


def parse_hour(text: str) -> datetime:
    """'2026-11-25T03', '2026-11-25T03:00', '2026-11-25T03:00:00+00:00' -> aware UTC hour start."""
    raw = text.strip().replace("Z", "+00:00")
    if len(raw) == 13:  # YYYY-MM-DDTHH
        raw += ":00"
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"invalid hour {text!r}: use YYYY-MM-DDTHH, e.g. 2026-11-25T03") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    if moment.minute or moment.second or moment.microsecond:
        raise ValueError(f"hour {text!r} is not on an hour boundary")
    return moment


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Hour starts in [start, end)."""
    out, cur = [], start
    while cur < end:
        out.append(cur)
        cur += HOUR
    return out


def label(hour: datetime) -> str:
    return hour.astimezone(timezone.utc).strftime("%Y-%m-%dT%H")
