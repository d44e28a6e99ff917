"""The seasonal baseline and the score of each new hour (and minute): pure, frames in, frames out.

A series is (tenant, metric, dimension, value): events or distinct users of a tenant overall
(dimension 'all') or of one of its top values per dimension (the ``top_values`` with the most events
in the history read). For an hour H its history is the same hour of week, 1..``weeks`` weeks back:

* expected = the median of the history (one anomalous week in four moves it little);
* relative spread = 1.4826 x the median absolute deviation of history / expected - 1 (the MAD,
  scaled to a standard deviation), less the counting noise it contains, kept within
  [rel_floor, rel_cap];
* variance = expected (counting noise: traffic is Poisson-like) + (spread x expected)^2, inflated by
  1 + 1.57 / n for the error of a median of n points; score = (observed - expected) / sqrt(variance).

An hour is an anomaly when |score| >= threshold AND it is at least ``min_ratio`` off the baseline AND
``min_delta`` off in absolute terms: a large tenant's tiny relative wobble, or a small value's few
events, is not worth an operator's look. Hours of history before a tenant's data starts are unknown
(NaN), not zero; a series needs ``min_weeks`` known weeks to be scored.

Hand-written with numpy rather than a library: the baseline is a median and a MAD over a handful of
aligned points per series, vectorized over all series and hours at once in a few lines; seasonal
decomposition (statsmodels' STL) would need long regular series per (tenant, value) and fit each on
its own, for a baseline no more robust than this median. ClickHouse could compute the medians
(quantileExact) but not the MAD of a ratio without nested array functions that 18.16 lacks, and the
read it would need is the same one done here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

HOUR = 3600
WEEK = 7 * 24 * HOUR
SERIES = ["tenant_id", "metric", "dimension", "value"]
OUTPUT = ["tenant_id", "at", "metric", "dimension", "value", "kind", "observed", "expected", "score", "weeks"]
MEDIAN_ERROR = 1.57  # var(median of n normal points) ~ (pi / 2) var / n


@dataclass(frozen=True)
class Params:
    weeks: int = 4  # history: the same hour of week, this many weeks back
    min_weeks: int = 3  # fewer known weeks: not scored (a median of two points is their mean)
    top_values: int = 5  # per dimension, the values with the most events in the history
    threshold: float = 5.0
    min_ratio: float = 0.3
    min_delta: float = 10.0  # per hour; per minute it is min_delta_minute
    min_delta_minute: float = 5.0
    rel_floor: float = 0.05
    rel_cap: float = 1.0


DEFAULT_PARAMS = Params()


def history_hours(targets: Sequence[int], weeks: int) -> list[int]:
    """Every hour a scoring of ``targets`` reads: each target and its same hour of week back."""
    return sorted({t - k * WEEK for t in targets for k in range(weeks + 1)})


def _long(frame: pd.DataFrame) -> pd.DataFrame:
    """(tenant_id, dimension, value, hour, events, users) -> one row per metric with its count x."""
    return frame.melt(
        id_vars=["tenant_id", "dimension", "value", "hour"],
        value_vars=["events", "users"],
        var_name="metric",
        value_name="x",
    )


def _top(long: pd.DataFrame, history: set[int], top_values: int) -> pd.DataFrame:
    """The series scored: every tenant's overall ('all') and its top values per dimension."""
    events = long[(long["metric"] == "events") & long["hour"].isin(history)]
    if events.empty:
        events = long[long["metric"] == "events"]
    sums = events.groupby(["tenant_id", "dimension", "value"], as_index=False)["x"].sum()
    sums = sums.sort_values(["tenant_id", "dimension", "x", "value"], ascending=[True, True, False, True])
    keep = sums[sums["dimension"] == "all"]
    top = sums[sums["dimension"] != "all"].groupby(["tenant_id", "dimension"]).head(top_values)
    chosen = pd.concat([keep, top])[["tenant_id", "dimension", "value"]]
    both = chosen.merge(pd.DataFrame({"metric": ["events", "users"]}), how="cross")
    return both[SERIES]


def baseline(frame: pd.DataFrame, targets: Sequence[int], params: Params) -> pd.DataFrame:
    """Per scored series and target hour: observed, expected, rel (relative spread), n (known weeks)."""
    columns = [*SERIES, "hour", "observed", "expected", "rel", "n"]
    targets = sorted(set(targets))
    if frame.empty or not targets:
        return pd.DataFrame(columns=columns)
    hours = history_hours(targets, params.weeks)
    long = _long(frame)
    series = _top(long, set(hours) - set(targets), params.top_values)
    grid = long.merge(series, on=SERIES).pivot_table(
        index=SERIES, columns="hour", values="x", aggfunc="sum", fill_value=0
    )
    grid = grid.reindex(index=pd.MultiIndex.from_frame(series), columns=hours, fill_value=0).astype(float)
    # An hour in which a tenant has no row at all is unknown history (before its data), not zero.
    known = frame[frame["dimension"] == "all"].groupby("tenant_id")["hour"].apply(set)
    tenants = grid.index.get_level_values("tenant_id")
    matrix = grid.to_numpy(copy=True)
    for col, hour in enumerate(hours):
        unknown = np.array([hour not in known.get(t, ()) for t in tenants])
        matrix[unknown, col] = np.nan
    position = {h: i for i, h in enumerate(hours)}
    target_idx = np.array([position[t] for t in targets])
    hist_idx = np.array([[position[t - k * WEEK] for k in range(1, params.weeks + 1)] for t in targets])
    observed = np.nan_to_num(matrix[:, target_idx])  # a silent tenant's hour counts as 0
    hist = matrix[:, hist_idx]  # (series, targets, weeks)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN history: no baseline (n = 0)
        expected = np.nanmedian(hist, axis=2)
        rel = 1.4826 * np.nanmedian(np.abs(hist / expected[:, :, None] - 1.0), axis=2)
    n = (~np.isnan(hist)).sum(axis=2)
    out = pd.DataFrame(
        {
            **{name: np.repeat(grid.index.get_level_values(name).to_numpy(), len(targets)) for name in SERIES},
            "hour": np.tile(np.array(targets), len(grid)),
            "observed": observed.ravel(),
            "expected": expected.ravel(),
            "rel": rel.ravel(),
            "n": n.ravel(),
        }
    )
    return out[columns]


def _flag(base: pd.DataFrame, observed: np.ndarray, expected: np.ndarray, params: Params, min_delta: float):
    """(score, is anomaly) for observed counts against a baseline's expected counts."""
    n = base["n"].to_numpy()
    expected = np.nan_to_num(expected)
    # The weeks' spread holds their own counting noise (relative variance 1 / expected, added back
    # below): only what exceeds it is the series' own variability.
    rel = np.nan_to_num(base["rel"].to_numpy(float), nan=params.rel_cap)
    with np.errstate(divide="ignore"):
        extra = np.sqrt(np.maximum(rel**2 - 1.0 / np.maximum(base["expected"].to_numpy(float), 1e-9), 0.0))
    rel = np.clip(np.nan_to_num(extra, nan=params.rel_cap), params.rel_floor, params.rel_cap)
    variance = (expected + (rel * expected) ** 2 + 1.0) * (1.0 + MEDIAN_ERROR / np.maximum(n, 1))
    score = (observed - expected) / np.sqrt(variance)
    delta = np.abs(observed - expected)
    flagged = (
        (n >= params.min_weeks)
        & (np.abs(score) >= params.threshold)
        & (delta >= min_delta)
        & (delta >= params.min_ratio * expected)
    )
    return score, flagged


def _anomalies(base: pd.DataFrame, at: np.ndarray, observed, expected, score, flagged) -> pd.DataFrame:
    out = base.loc[flagged, SERIES].copy()
    out["at"] = at[flagged]
    out["observed"] = observed[flagged]
    out["expected"] = expected[flagged]
    out["score"] = np.round(score[flagged], 3)
    out["kind"] = np.where(out["observed"] > out["expected"], "spike", "drop")
    out["weeks"] = base.loc[flagged, "n"].to_numpy()
    return out[OUTPUT].sort_values(["tenant_id", "at", "metric", "dimension", "value"]).reset_index(drop=True)


def score_hours(frame: pd.DataFrame, targets: Sequence[int], params: Params = DEFAULT_PARAMS) -> pd.DataFrame:
    """The anomalous (series, hour) of ``targets`` (epoch seconds of hour starts).

    ``frame``: the merged hourly rollups (tenant_id, dimension, value, hour, events, users) of the
    targets and their history hours (``history_hours``); an absent row is a count of 0."""
    base = baseline(frame, targets, params)
    observed = base["observed"].to_numpy(float)
    expected = base["expected"].to_numpy(float)
    score, flagged = _flag(base, observed, expected, params, params.min_delta)
    return _anomalies(base, base["hour"].to_numpy(), observed, np.nan_to_num(expected), score, flagged)


def score_minutes(
    minutes: pd.DataFrame, hourly: pd.DataFrame, start: int, end: int, params: Params = DEFAULT_PARAMS
) -> pd.DataFrame:
    """The anomalous (series, minute) of [start, end), events only: the live tail.

    ``minutes``: (tenant_id, dimension, value, minute, events), merged minute rollups; ``hourly`` as
    for ``score_hours``, over the hours of the minutes and their history. A minute is expected to
    hold 1/60 of its hour's baseline. Distinct users are left out: a minute's distinct users are
    not a sixtieth of the hour's."""
    first, last = start // HOUR * HOUR, (end - 1) // HOUR * HOUR
    base = baseline(hourly, list(range(first, last + 1, HOUR)), params)
    base = base[base["metric"] == "events"]
    grid_minutes = np.arange(start // 60 * 60, end, 60)
    if base.empty or not len(grid_minutes):
        return pd.DataFrame(columns=OUTPUT)
    frame = pd.DataFrame({"minute": grid_minutes, "hour": grid_minutes // HOUR * HOUR})
    base = base.merge(frame, on="hour").reset_index(drop=True)
    counts = minutes.groupby(["tenant_id", "dimension", "value", "minute"], as_index=False)["events"].sum()
    base = base.merge(counts, on=["tenant_id", "dimension", "value", "minute"], how="left")
    observed = base["events"].fillna(0).to_numpy(float)
    expected = base["expected"].to_numpy(float) / 60.0
    score, flagged = _flag(base, observed, expected, params, params.min_delta_minute)
    return _anomalies(base, base["minute"].to_numpy(), observed, np.nan_to_num(expected), score, flagged)
