"""The SLO arithmetic, pure (no I/O): objectives, error budgets, burn rates, histogram quantiles.

Every SLO is a ratio of good to total: events fresh within 60 s, queries answered within their
limit, probes answered healthy, events counted as produced. Its objective is the good fraction it
promises (0.95 for "freshness p95 < 60 s", 0.99 for "query p99 < 3 s"), so its error budget is the
bad fraction it allows, ``1 - objective``. The *value* each prints is the figure the promise is
stated in (a p95, a p99, a ratio)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from tidemark.errors import TidemarkError


class SloError(TidemarkError):
    """A bad SLO argument (a window that does not parse)."""


@dataclass(frozen=True)
class Objective:
    name: str  # stable id: a Prometheus label value and a slo_status row
    title: str
    objective: float  # the good fraction promised
    threshold: float | None  # seconds a good event/query stays within (None: a plain ratio)
    unit: str  # of the value: "s" or "ratio"


FRESHNESS = Objective("freshness_p95", "freshness p95 < 60 s", 0.95, 60.0, "s")
QUERY_7D = Objective("query_7d_p99", "7-day query p99 < 3 s", 0.99, 3.0, "s")
QUERY_90D = Objective("query_90d_p99", "90-day query p99 < 10 s", 0.99, 10.0, "s")
AVAILABILITY = Objective("availability", "availability >= 99.9 %", 0.999, None, "ratio")
INGEST = Objective("events_ingested", "events ingested >= 99.9 %", 0.999, None, "ratio")
OBJECTIVES = (FRESHNESS, QUERY_7D, QUERY_90D, AVAILABILITY, INGEST)

# Burning: over the last hour AND the last 5 minutes the budget is spent faster than the window
# allows (burn rate > 1). The long window makes it significant, the short one says it still is, so
# the alert clears soon after the cause does (the multiwindow rule of Google's SRE workbook).
BURN_LONG_S = 3600
BURN_SHORT_S = 300
BURN_ALERT = 1.0


@dataclass(frozen=True)
class Figure:
    """One SLO over one window: good of total, and the value it is stated in."""

    objective: Objective
    good: float
    total: float
    value: float | None  # None: nothing measured in the window

    @property
    def measured(self) -> bool:
        return self.total > 0

    @property
    def bad_fraction(self) -> float:
        return bad_fraction(self.good, self.total)

    @property
    def budget_left(self) -> float:
        return budget_left(self.good, self.total, self.objective.objective)

    @property
    def burn_rate(self) -> float:
        return burn_rate(self.good, self.total, self.objective.objective)

    @property
    def met(self) -> bool:
        return not self.measured or self.bad_fraction <= 1.0 - self.objective.objective + 1e-12


def bad_fraction(good: float, total: float) -> float:
    if total <= 0:
        return 0.0
    return min(1.0, max(0.0, (total - good) / total))


def burn_rate(good: float, total: float, objective: float) -> float:
    """How fast the budget goes: the bad fraction over the budget (1.0 spends it exactly over the
    window; 2.0 in half of it). Nothing measured burns nothing."""
    return bad_fraction(good, total) / (1.0 - objective)


def budget_left(good: float, total: float, objective: float) -> float:
    """The share of the window's error budget not yet spent: 1.0 untouched, 0 spent, below 0 overspent."""
    return 1.0 - burn_rate(good, total, objective)


def burning(long_rate: float, short_rate: float, threshold: float = BURN_ALERT) -> bool:
    return long_rate > threshold and short_rate > threshold


def ingest_good(expected: int, counted: int) -> float:
    """Events rightly counted of those produced: a missing event and a doubled one are both errors."""
    return float(max(0, expected - abs(expected - counted)))


def bucket_ms(seconds: float) -> int:
    """A latency in ms rounded *up* to two significant digits (1234 ms -> 1300): a histogram of at most
    ~370 buckets up to 100 s whose quantiles err by under 10 %, and never call a slow query fast."""
    ms = max(1, math.ceil(seconds * 1000.0))
    if ms < 100:
        return ms
    step = 10 ** (len(str(ms)) - 2)
    return -(-ms // step) * step


def quantile(histogram: Iterable[tuple[float, float]], q: float) -> float | None:
    """The q-quantile of a weighted histogram [(value, weight)]: the smallest value with at least
    q of the weight at or below it (ClickHouse's quantileExactWeighted picks the same one)."""
    pairs = sorted((v, w) for v, w in histogram if w > 0)
    total = sum(w for _, w in pairs)
    if not total:
        return None
    seen = 0.0
    for value, weight in pairs:
        seen += weight
        if seen >= q * total:
            return value
    return pairs[-1][0]


def within(histogram: Iterable[tuple[float, float]], limit: float) -> tuple[float, float]:
    """(weight at or below ``limit``, total weight)."""
    good = total = 0.0
    for value, weight in histogram:
        total += weight
        if value <= limit:
            good += weight
    return good, total


_WINDOW = re.compile(r"^(\d+)([mhd])$")


def parse_window(text: str) -> int:
    """'90m', '24h', '7d' -> seconds."""
    found = _WINDOW.match(text.strip())
    if not found or int(found.group(1)) <= 0:
        raise SloError(f"window {text[:20]!r} does not parse; give minutes, hours or days, e.g. 90m, 24h or 7d")
    return int(found.group(1)) * {"m": 60, "h": 3600, "d": 86400}[found.group(2)]
