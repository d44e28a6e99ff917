"""The generator's record of truth: what it sent, aggregated the way the pipeline reports it.

Reconciliation tests compare the pipeline's output with this manifest exactly,
so every number here is defined on *distinct* events (a duplicate re-send is
counted in ``duplicates_sent`` and ``messages_sent`` only) and bucketed by the
UTC minute/hour/day of the EVENT time.

Rejected records: ``malformed`` counts the malformed kinds (one per payload reason), each named
by the contract reason that rejects it. ``poison`` counts deeply nested JSON
(``{"count", "expected_reason"}``; 0 unless asked for), which is not one of the
malformed kinds; ``rejected_by_reason`` is the sum of both by expected reason, i.e. what
a validator's rejection counts must equal. ``messages_sent`` = valid_events +
duplicates_sent + sum(malformed) + poison.count.

``hour_boundary_events`` counts the distinct valid events whose event time is
exactly on an hour boundary (``end_of_hour``: xx:59:59.999, ``start_of_hour``:
xx:00:00.000; ``late``: how many of them are late events), whether put there by
``hour_boundary_fraction`` or drawn there by chance.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# The reason a validator gives a poison (deeply nested) record. The contract has no reason of its
# own for it yet; ``not_json`` is the provisional choice, to be reconciled with the validator.
POISON_REASON = "not_json"


def _fmt(ms: int, pattern: str) -> str:
    return time.strftime(pattern, time.gmtime(ms // 1000))


def minute_str(minute: int) -> str:
    return _fmt(minute * MINUTE_MS, "%Y-%m-%dT%H:%M")


def hour_str(hour: int) -> str:
    return _fmt(hour * HOUR_MS, "%Y-%m-%dT%H")


def day_str(day: int) -> str:
    return _fmt(day * DAY_MS, "%Y-%m-%d")


def iso_ms(ms: int) -> str:
    return f"{_fmt(ms, '%Y-%m-%dT%H:%M:%S')}.{ms % 1000:03d}Z"


class Manifest:
    """Accumulates counts as records are generated; ``to_dict`` renders the manifest."""

    def __init__(self) -> None:
        self.valid_events = 0
        self.late_events = 0
        self.duplicates_sent = 0
        self.malformed: dict[str, int] = {}
        self.poison = 0
        self.boundary_end = 0  # event time xx:59:59.999
        self.boundary_start = 0  # event time xx:00:00.000
        self.boundary_late = 0
        self._minutes: dict[tuple, list[int]] = {}
        self._late_hour: dict[int, int] = {}
        self._late_tenant_hour: dict[tuple[str, int], int] = {}
        self._users_hour: dict[tuple[str, int], set[str]] = {}
        self._users_hour_on_time: dict[tuple[str, int], set[str]] = {}

    @property
    def on_time_events(self) -> int:
        return self.valid_events - self.late_events

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    @property
    def records(self) -> int:
        """Records generated so far (valid + duplicates + malformed + poison)."""
        return self.valid_events + self.duplicates_sent + self.malformed_total + self.poison

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        """Expected rejections by reason: the malformed kinds plus poison under POISON_REASON."""
        out = dict(self.malformed)
        if self.poison:
            out[POISON_REASON] = out.get(POISON_REASON, 0) + self.poison
        return dict(sorted(out.items()))

    def add_valid(
        self, tenant: str, event_ms: int, country: str, device: str, page: str, user: str, late: bool
    ) -> None:
        self.valid_events += 1
        minute = event_ms // MINUTE_MS
        hour = minute // 60
        th = (tenant, hour)
        key = (tenant, minute, country, device, page)
        counts = self._minutes.get(key)
        if counts is None:
            counts = self._minutes[key] = [0, 0]
        counts[0] += 1
        users = self._users_hour.get(th)
        if users is None:
            users = self._users_hour[th] = set()
        users.add(user)  # distinct users per day are the union of the day's hours (to_dict)
        if late:
            self.late_events += 1
            self._late_hour[hour] = self._late_hour.get(hour, 0) + 1
            self._late_tenant_hour[th] = self._late_tenant_hour.get(th, 0) + 1
        else:
            counts[1] += 1
            users = self._users_hour_on_time.get(th)
            if users is None:
                users = self._users_hour_on_time[th] = set()
            users.add(user)

    def add_duplicate(self) -> None:
        self.duplicates_sent += 1

    def add_malformed(self, kind: str) -> None:
        self.malformed[kind] = self.malformed.get(kind, 0) + 1

    def add_poison(self) -> None:
        self.poison += 1

    def add_hour_boundary(self, end_of_hour: bool, late: bool) -> None:
        """Count a valid event (also passed to add_valid) whose event time is exactly on an hour boundary."""
        if end_of_hour:
            self.boundary_end += 1
        else:
            self.boundary_start += 1
        self.boundary_late += late

    def to_dict(self, *, messages_sent: int, **header: Any) -> dict[str, Any]:
        """The manifest; ``header`` adds seed, start_time, end_time, topic, options..."""
        empty: set[str] = set()
        minute_s = _memo(minute_str)
        hour_s = _memo(hour_str)
        users_day: dict[tuple[str, int], set[str]] = {}
        for (t, h), users in self._users_hour.items():
            day = users_day.get((t, h // 24))
            if day is None:
                users_day[(t, h // 24)] = set(users)
            else:
                day |= users
        doc: dict[str, Any] = dict(header)
        doc.update(
            messages_sent=messages_sent,
            valid_events=self.valid_events,
            on_time_events=self.on_time_events,
            late_events=self.late_events,
            duplicates_sent=self.duplicates_sent,
            malformed=dict(sorted(self.malformed.items())),
            poison={"count": self.poison, "expected_reason": POISON_REASON},
            rejected_by_reason=self.rejected_by_reason,
            hour_boundary_events={
                "end_of_hour": self.boundary_end,
                "start_of_hour": self.boundary_start,
                "late": self.boundary_late,
            },
            late_events_per_hour={hour_s(h): n for h, n in sorted(self._late_hour.items())},
            late_events_per_tenant_hour=sorted([t, hour_s(h), n] for (t, h), n in self._late_tenant_hour.items()),
            minute_counts=sorted(
                [t, minute_s(mi), c, d, p, n[0], n[1]] for (t, mi, c, d, p), n in self._minutes.items()
            ),
            distinct_users_hour=sorted(
                [t, hour_s(h), len(users), len(self._users_hour_on_time.get((t, h), empty))]
                for (t, h), users in self._users_hour.items()
            ),
            distinct_users_day=sorted([t, day_str(d), len(users)] for (t, d), users in users_day.items()),
        )
        return doc


def _memo(fn):
    """``fn`` with a per-call-site cache: a run has far fewer distinct minutes than rows."""
    cache: dict[int, str] = {}

    def cached(value: int) -> str:
        text = cache.get(value)
        if text is None:
            text = cache[value] = fn(value)
        return text

    return cached


def write_manifest(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``doc`` as JSON with sorted keys, atomically (temp file + rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, sort_keys=True, separators=(",", ":"))
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
