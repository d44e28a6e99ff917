from __future__ import annotations

import time

from tidemark.timing import LapTimer


def test_laps_are_consecutive_phases():
    timer = LapTimer()
    time.sleep(0.02)
    first = timer.lap("read")
    second = timer.lap("write")
    assert first >= 0.02 > second  # the second lap starts where the first ended
    assert set(timer.laps) == {"read", "write"}
    assert timer.milliseconds()["read_ms"] >= 20
    assert timer.elapsed() >= first + second
