"""Placeholder values for the suites: what a caller passes to ``validate`` and ``apply_drops``.

``raw_hour_params`` gives the hour's bounds, the lake's column set, the contract's value sets and
the expected volume band (the median of comparable past hours times ``VOLUME_BAND``);
``hour_rollups_params`` the hour's deduplicated raw count. Placeholders left None skip their
rules (no history yet: no volume rule).

Datetimes reach the rules naive or aware; ``as_utc`` is how the whole package reads them (the
drop predicates and the messages too), so a naive value always means UTC.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

VOLUME_BAND = (0.5, 2.0)  # expected hour volume: median of history times these factors


@lru_cache(maxsize=1)
def contract_value_sets() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(devices, countries) allowed by the page_view contract, read from its JSON Schema."""
    from tidemark.contract import SCHEMA_PATH

    props = json.loads(SCHEMA_PATH.read_text())["properties"]
    return tuple(props["device"]["enum"]), tuple(props["country"]["enum"])


def as_utc(moment: datetime) -> datetime:
    """The same instant as an aware UTC datetime.

    Parameters
    ----------
    moment : datetime
        Naive (taken as UTC) or aware.

    Returns
    -------
    datetime
        ``moment`` with ``tzinfo=timezone.utc``.
    """
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def volume_bounds(history_rows: Sequence[int | None]) -> tuple[int | None, int | None]:
    """Expected row-count band for an hour: median of its history times VOLUME_BAND; None without history."""
    history = [int(n) for n in history_rows if n is not None]
    if not history:
        return None, None
    median = statistics.median(history)
    return math.floor(median * VOLUME_BAND[0]), math.ceil(median * VOLUME_BAND[1])


def raw_hour_params(hour_start: datetime, history_rows: Sequence[int | None]) -> dict[str, Any]:
    """Placeholders for the raw_hour suite. A naive hour_start is taken as UTC.

    ``history_rows``: deduplicated row counts of comparable past hours (e.g. the same hour of the
    last 7-28 days); empty when there is none, which skips the volume rule.
    """
    from tidemark.tables import EVENTS_RAW, table

    start = as_utc(hour_start)
    if start != start.replace(minute=0, second=0, microsecond=0):
        raise ValueError(f"hour_start must be the start of an hour, got {hour_start.isoformat()}")
    devices, countries = contract_value_sets()
    volume_min, volume_max = volume_bounds(history_rows)
    return {
        "hour_start": start,
        "hour_end": start + timedelta(hours=1),
        "raw_columns": list(table(EVENTS_RAW).names),
        "devices": list(devices),
        "countries": list(countries),
        "volume_min": volume_min,
        "volume_max": volume_max,
    }


def hour_rollups_params(expected_rows: int | None = None) -> dict[str, Any]:
    """Placeholders for the hour_rollups suite: the hour's deduplicated raw count, if known."""
    return {"expected_rows": None if expected_rows is None else int(expected_rows)}
