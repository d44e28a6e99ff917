"""The seasonal baseline and scores on small frames: a spike, a drop and a dead page are found; the
same hour of ordinary traffic, a small value's wobble and a past anomaly in the history are not."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tidemark.anomalies.scoring import HOUR, WEEK, Params, baseline, history_hours, score_hours, score_minutes

T0 = 1_700_000_000 // WEEK * WEEK + 5 * WEEK  # an hour start with five weeks before it


def frame(overrides: dict | None = None, weeks: int = 4, noise: int = 0) -> pd.DataFrame:
    """One tenant: 1000 events/hour overall, '/' 200 and '/a' 100 of them, '/rare' 4; users = half.
    ``overrides``: {(value, week back): events} (week back 0 = the scored hour)."""
    rng = np.random.default_rng(7)
    overrides = overrides or {}
    rows = []
    for k in range(weeks + 1):
        hour = T0 - k * WEEK
        for dim, value, events in (("all", "", 1000), ("page", "/", 200), ("page", "/a", 100), ("page", "/rare", 4)):
            events = overrides.get((value, k), events) + (int(rng.integers(-noise, noise + 1)) if noise else 0)
            if events:
                rows.append(("t1", dim, value, hour, float(events), float(events // 2)))
    return pd.DataFrame(rows, columns=["tenant_id", "dimension", "value", "hour", "events", "users"])


def test_history_hours_are_the_same_hour_of_week():
    assert history_hours([T0], 2) == [T0 - 2 * WEEK, T0 - WEEK, T0]


def test_ordinary_traffic_is_no_anomaly():
    assert score_hours(frame(noise=20), [T0]).empty


def test_spike_on_the_total_is_found_with_its_baseline():
    found = score_hours(frame({("", 0): 3000}), [T0])
    total = found[(found["dimension"] == "all") & (found["metric"] == "events")]
    assert total[["kind", "observed", "expected"]].values.tolist() == [["spike", 3000.0, 1000.0]]
    assert total["weeks"].tolist() == [4]
    assert (found["metric"] == "users").any()  # users follow the spike


def test_a_dead_page_is_a_drop_of_that_page_only():
    found = score_hours(frame({("/", 0): 0}), [T0])
    assert found[["dimension", "value", "kind"]].drop_duplicates().values.tolist() == [["page", "/", "drop"]]


def test_small_values_and_small_relative_moves_are_not_reported():
    assert score_hours(frame({("/rare", 0): 0, ("", 0): 1150}), [T0]).empty


def test_one_anomalous_week_in_the_history_does_not_move_the_baseline():
    found = score_hours(frame({("", 0): 3000, ("", 2): 5000}), [T0])
    total = found[(found["dimension"] == "all") & (found["metric"] == "events")]
    assert total["expected"].tolist() == [1000.0]


def test_too_little_history_is_not_scored():
    assert score_hours(frame({("", 0): 3000}, weeks=2), [T0], Params(weeks=4, min_weeks=3)).empty


def test_a_tenants_hour_without_any_row_is_unknown_history_not_zero():
    f = frame({("", 0): 3000})
    f = f[f["hour"] != T0 - WEEK]  # no row at all that week: before its data, not a dead hour
    base = baseline(f, [T0], Params())
    assert base[(base["dimension"] == "all") & (base["metric"] == "events")]["n"].tolist() == [3]


def test_top_values_limit_the_series():
    base = baseline(frame(), [T0], Params(top_values=1))
    assert sorted(base["value"].unique()) == ["", "/"]


def test_minutes_are_scored_against_a_sixtieth_of_their_hour():
    minutes = pd.DataFrame(
        [("t1", "all", "", T0 + 60 * m, 17.0 if m != 30 else 200.0) for m in range(60)],
        columns=["tenant_id", "dimension", "value", "minute", "events"],
    )
    found = score_minutes(minutes, frame(), T0, T0 + HOUR)
    assert found[["at", "dimension", "kind"]].values.tolist() == [[T0 + 1800, "all", "spike"]]


def test_nothing_read_scores_nothing():
    empty = pd.DataFrame(columns=["tenant_id", "dimension", "value", "hour", "events", "users"])
    assert score_hours(empty, [T0]).empty
    no_minutes = pd.DataFrame(columns=["tenant_id", "dimension", "value", "minute", "events"])
    assert score_minutes(no_minutes, empty, T0, T0 + 600).empty
