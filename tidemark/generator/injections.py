"""Anomalies injected into generated traffic, and a daily/weekly traffic shape: the ground truth
the anomaly detector (tidemark/anomalies) is measured against (bench/anomalies.py).

* ``spike``: a tenant's valid events multiplied by ``factor`` (> 1) during [start, end): each event
  is followed by ``factor - 1`` extra on-time events of the same tenant on average;
* ``drop``: a tenant keeps a ``factor`` (< 1) share of its valid events during the window;
* ``dead_page``: a tenant's ``page`` gets no page views during the window (default page: the
  tenant's most visited one, "/").

The shape (``seasonality`` a in [0, 0.9]) thins valid events by time of week: a daily cosine with
its low at 03:00 UTC (kept share 1 - a at the low) and weekends at 1 - 0.4 a of that. Thinning
keeps the traffic Poisson-like, as real traffic is.

Every decision here draws from its own random generator (seeded from the options), never from the
main one: with no injection and no shape the records are byte-identical to those without this
module, and with them the rest of the stream keeps its draws.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

KINDS = ("spike", "drop", "dead_page")
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
LOW_HOUR = 3  # the daily low of the shape, UTC
WEEKEND_FACTOR = 0.4  # weekends keep 1 - 0.4 a of the weekday share


@dataclass(frozen=True)
class Injection:
    kind: str
    tenant: str
    start_ms: int
    end_ms: int
    factor: float = 1.0  # spike: multiplier (> 1); drop: share kept (< 1); dead_page: unused
    page: str = "/"  # dead_page only

    def check(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown injection kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.end_ms <= self.start_ms:
            raise ValueError(f"injection {self.kind} for {self.tenant}: its end is not after its start")
        if self.kind == "spike" and not 1.0 < self.factor <= 50.0:
            raise ValueError(f"a spike's factor must be within (1, 50], got {self.factor}")
        if self.kind == "drop" and not 0.0 <= self.factor < 1.0:
            raise ValueError(f"a drop's factor (the share kept) must be within [0, 1), got {self.factor}")

    def active(self, tenant: str, ms: int) -> bool:
        return tenant == self.tenant and self.start_ms <= ms < self.end_ms

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["start"] = _iso(self.start_ms)
        doc["end"] = _iso(self.end_ms)
        if self.kind != "dead_page":
            doc.pop("page")
        return doc


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_injection(text: str) -> Injection:
    """``kind=spike,tenant=acme,start=2026-11-02T10:00Z,hours=3,factor=4`` (``page=/x`` for a dead
    page; ``hours`` may be fractional)."""
    fields = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"invalid injection {text!r}: expected name=value pairs separated by commas")
        fields[name.strip()] = value.strip()
    unknown = set(fields) - {"kind", "tenant", "start", "hours", "factor", "page"}
    missing = {"kind", "tenant", "start", "hours"} - set(fields)
    if unknown or missing:
        raise ValueError(
            f"invalid injection {text!r}: unknown {sorted(unknown)}, missing {sorted(missing)} "
            "(example: kind=spike,tenant=acme,start=2026-11-02T10:00Z,hours=3,factor=4)"
        )
    try:
        start = datetime.fromisoformat(fields["start"].replace("Z", "+00:00"))
        hours = float(fields["hours"])
        factor = float(fields.get("factor", "0" if fields["kind"] != "spike" else "3"))
    except ValueError as exc:
        raise ValueError(f"invalid injection {text!r}: {exc}") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    start_ms = int(start.timestamp() * 1000)
    injection = Injection(
        fields["kind"], fields["tenant"], start_ms, start_ms + int(hours * HOUR_MS), factor, fields.get("page", "/")
    )
    injection.check()
    return injection


def shape_share(ms: int, seasonality: float) -> float:
    """The share of valid events kept at ``ms`` under the traffic shape (1.0 without one)."""
    if not seasonality:
        return 1.0
    hour = (ms % DAY_MS) / HOUR_MS
    daily = 1.0 - seasonality * (1.0 + math.cos(2 * math.pi * (hour - LOW_HOUR) / 24)) / 2
    weekday = (ms // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    return daily * (1.0 - WEEKEND_FACTOR * seasonality if weekday >= 5 else 1.0)


class Shaper:
    """Per valid event: how many copies to send (0: none, 1: the event, more: a spike's extras)."""

    def __init__(self, injections: tuple[Injection, ...], seasonality: float, seed: int):
        self.injections = injections
        self.seasonality = seasonality
        self.rng = random.Random(f"injections:{seed}")

    @property
    def on(self) -> bool:
        return bool(self.injections) or bool(self.seasonality)

    def copies(self, tenant: str, ms: int, page: str) -> int:
        rnd = self.rng.random
        if self.seasonality and rnd() >= shape_share(ms, self.seasonality):
            return 0
        copies = 1
        for inj in self.injections:
            if not inj.active(tenant, ms):
                continue
            if inj.kind == "dead_page" and page == inj.page:
                return 0
            if inj.kind == "drop" and rnd() >= inj.factor:
                return 0
            if inj.kind == "spike":
                extra = inj.factor - 1.0
                copies += int(extra) + (1 if rnd() < extra - int(extra) else 0)
        return copies
