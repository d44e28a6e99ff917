"""The one way tests wait: until a fact holds (a committed batch, a running query, an entry gone
stale, a process gone), never for a guessed number of seconds.

This module holds the only sleep of the test suite: the pause between two looks at the fact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    what: str | Callable[[], str],
    *,
    interval_s: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Fails (AssertionError, so pytest reports a test failure) once ``timeout_s`` passed, naming
    ``what`` did not happen and the last value seen (``what`` may be a function, called then, to
    tell the state at that moment: a log tail, the rows left). Exceptions of the ``ignoring`` types count as
    "not yet" (a server still starting); any other exception, an assertion inside the predicate
    included, ends the wait at once.
    """
    started = time.monotonic()
    last: object = None
    while True:
        try:
            value = predicate()
        except ignoring as exc:
            value, last = None, exc
        else:
            if value:
                return value
            last = value
        waited = time.monotonic() - started
        if waited >= timeout_s:
            said = what() if callable(what) else what
            raise AssertionError(f"{said}: did not happen within {timeout_s:g} s (last seen: {last!r})")
        time.sleep(min(interval_s, max(0.0, timeout_s - waited)))
