from __future__ import annotations

from support.wait import wait_until

from tidemark.timing import LapTimer


def test_laps_are_consecutive_phases():
    timer = LapTimer()
    wait_until(lambda: timer.elapsed() >= 0.02, 1, "20 ms to pass on the timer's clock", interval_s=0.005)
    first = timer.lap("read")
    second = timer.lap("write")
    assert first >= 0.02 > second  # the second lap starts where the first ended
    assert set(timer.laps) == {"read", "write"}
    assert timer.milliseconds()["read_ms"] >= 20
    assert timer.elapsed() >= first + second
