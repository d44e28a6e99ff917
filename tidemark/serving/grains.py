"""Which rollup table answers a dashboard question (``choose_grain``), and the grains themselves.

The coarsest table that answers: ranges of up to 6 hours (minute buckets) and ranges not aligned to
hours read minute_rollups; everything else reads day_rollups, whose rows are per (hour, dimension
value). That table holds one dimension per row, so a question combining two dimensions reads the
minute grain, which has all of them.

The minute tier's horizon: minute rows before it were dropped by the hot tier
(tidemark/tiering/hot.py). A question needing the minute grain there is answered from the hour
grain where that is the same answer, else refused (MinuteDetailDropped, a 400 that says why):
never a silent partial answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from tidemark.serving.ranges import HOUR, RangeError, TimeRange


@dataclass(frozen=True)
class Grain:
    name: str
    table: str
    time_col: str  # the row's time column (range conditions)
    merge_time: str  # the row's hour as epoch seconds, for merged_filter
    bucket_exprs: dict  # bucket name -> expression of the bucket start
    users: str  # distinct-user merge (state precision differs per table)
    per_dimension: bool  # rows carry (dimension, value) instead of all dimension columns

    def bucket(self, name: str) -> str:
        return self.bucket_exprs[name]


MINUTE_GRAIN = Grain(
    "minute",
    "minute_rollups",
    "minute",
    "toUInt32(toStartOfHour(minute))",
    {"minute": "minute", "hour": "toStartOfHour(minute)", "day": "toStartOfDay(minute)"},
    "uniqCombinedMerge(users)",
    per_dimension=False,
)
# day_rollups keeps the hour (the lambda-merge unit) in its key, so it answers hour and day buckets;
# it is read instead of hour_rollups for its fine index granularity (see 010_day_rollups.sql).
HOURLY_GRAIN = Grain(
    "hourly",
    "day_rollups",
    "hour",
    "toUInt32(hour)",
    {"hour": "hour", "day": "toStartOfDay(hour)"},
    "uniqCombinedMerge(15)(users)",
    per_dimension=True,
)


# hour_rollups: per (hour, dimension value) like day_rollups, but with the minute grain's distinct-user
# states (uniqCombined, precision 17): its states merge with minute_rollups' into the same answer.
HOUR_ROLLUPS_GRAIN = replace(HOURLY_GRAIN, table="hour_rollups", users="uniqCombinedMerge(users)")
# A range reaching before the minute horizon from a whole hour: hour_rollups before the horizon,
# minute_rollups from it on, read as one source (``_source``: rows of (t, value, events, users)).
# Exactly the minute grain's answer for at most one dimension and no minute buckets.
STRADDLE_GRAIN = Grain(
    "hour+minute",
    "",
    "t",
    "",
    {"hour": "toStartOfHour(t)", "day": "toStartOfDay(t)"},
    "uniqCombinedMerge(users)",
    per_dimension=True,
)
# Grains whose answer depends on the minute horizon (core.py keys their cache entries by it).
HORIZON_GRAINS = (MINUTE_GRAIN, STRADDLE_GRAIN)


class MinuteDetailDropped(RangeError):
    """The question needs the minute grain for a time the hot tier no longer keeps (answered 400)."""

    code = "minute_detail_dropped"


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def choose_grain(
    rng: TimeRange, dims: set[str], *, read_start: int | None = None, minute_from: int = 0, buckets: bool = True
) -> Grain:
    """The coarsest grain answering a question over ``rng`` that involves the dimensions ``dims``.

    ``minute_from``: minute rows before it were dropped by the hot tier; a minute-grain question
    reading from ``read_start`` (default ``rng.start``) before it would come back partial. Such a
    question is answered from the hour grain when that gives the same answer (whole hours, at most
    one dimension, and no minute buckets asked: ``buckets`` is False for totals and top lists; a
    range ending after the horizon off an hour boundary reads whole hours before the horizon and
    minutes after it, STRADDLE_GRAIN), else refused with the reason (MinuteDetailDropped)."""
    hour_aligned = rng.start % HOUR == 0 and rng.end % HOUR == 0
    minute_buckets = buckets and rng.bucket == "minute"
    if not (minute_buckets or not hour_aligned or len(dims) > 1):
        return HOURLY_GRAIN
    start = rng.start if read_start is None else read_start
    if start >= minute_from:
        return MINUTE_GRAIN
    # the part before the horizon is whole hours (the hour grain holds it)
    hours_before = start % HOUR == 0 and min(rng.end, minute_from) % HOUR == 0
    if len(dims) <= 1 and not minute_buckets and hours_before:
        # whole hours throughout, else whole hours before the horizon and minutes after it
        return HOURLY_GRAIN if hour_aligned else STRADDLE_GRAIN
    why = (
        "combines filters on two dimensions"
        if len(dims) > 1
        else "is not made of whole hours before the horizon"
        if not hours_before
        else "asks minute buckets (ranges up to 6 h)"
    )
    raise MinuteDetailDropped(
        f"this question {why}, which only the minute grain answers, and minute rows before "
        f"{_iso(minute_from)} are no longer kept (the hot tier keeps recent days only): the answer "
        f"would be partial. Ask whole hours (before it) with at most one filter (answered from the hour grain), "
        f"or a range starting at {_iso(minute_from)} or later"
    )
