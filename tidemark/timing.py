"""Lap timers: how long each phase of a job took, for its log lines and run summaries.

One implementation for the speed layer's micro-batches and the batch layer's recomputes, so
both report phases the same way (monotonic clock; a lap is the time since the previous lap).
"""

from __future__ import annotations

import time


class LapTimer:
    """Times consecutive phases.

    >>> timer = LapTimer()
    >>> timer.lap("read") >= 0.0
    True
    """

    def __init__(self) -> None:
        self._started = self._mark = time.monotonic()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> float:
        """End the phase ``name`` now; returns its seconds (also kept in ``laps``, to the ms)."""
        now = time.monotonic()
        seconds = now - self._mark
        self.laps[name] = round(seconds, 3)
        self._mark = now
        return seconds

    def elapsed(self) -> float:
        """Seconds since the timer started."""
        return time.monotonic() - self._started

    def milliseconds(self) -> dict[str, int]:
        """The laps as ``{"<name>_ms": ms}``, the form log lines use."""
        return {f"{name}_ms": int(round(s * 1000)) for name, s in self.laps.items()}
