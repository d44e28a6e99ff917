"""A day already in the cold tier receives events again (a fresh checkpoint replaying the topic from
earliest, a long stream outage, producer timestamps): the next cold move must add them to the cold
day, never replace the day with them, and delete from the hot lake only what is cold. Real Spark and
Delta, the real tiering code, a lake of the test's own."""

from collections import Counter
from datetime import timedelta

import pytest
from support.tiering import INTERVAL_END, events, lake_counts, lake_keys, tiering_cfg, write_lake

from tidemark.batch import lake
from tidemark.tiering import cold
from tidemark.tiering.options import RunOptions

LAKE_HOT_DAYS, RETENTION_DAYS = 3, 2
COLD_DAYS = [INTERVAL_END - timedelta(days=d) for d in (5, 4)]  # before the lake boundary
HOT_DAY = INTERVAL_END - timedelta(days=2)
HOURS = [d + timedelta(hours=h) for d in (*COLD_DAYS, HOT_DAY) for h in (2, 14)]
DAY = COLD_DAYS[0].date().isoformat()  # the cold day that receives data again


def _cfg(stack, tmp_path):
    return tiering_cfg(
        stack, tmp_path / "lake", stack.clickhouse.database, lake_hot_days=LAKE_HOT_DAYS, retention_days=RETENTION_DAYS
    )


def _keys(rows) -> Counter:
    return Counter((r[1], r[0]) for r in rows)


def _move(spark, cfg):
    return cold.run(spark, cfg, RunOptions(INTERVAL_END).boundaries(cfg))


def test_a_cold_day_that_receives_events_again_keeps_every_event_of_both_sets(stack, spark, tmp_path):
    cfg = _cfg(stack, tmp_path)
    first = events(HOURS, 10, seed="first")
    write_lake(spark, cfg, first)
    assert [r.day for r in _move(spark, cfg) if r.moved] == [d.date().isoformat() for d in COLD_DAYS]
    first_day = [r for r in first if r[17].isoformat() == DAY]
    assert lake_keys(spark, cfg.tiering.cold_path, DAY) == _keys(first_day)

    # The day lands again in the hot lake: new events, re-sends of events already cold (same tenant and
    # id, another arrival), and another tenant's events that reuse ids of the cold ones.
    new = events([h for h in HOURS if h.date().isoformat() == DAY], 6, seed="second")
    resent = [(*r[:15], r[15] + timedelta(days=3), *r[16:]) for r in first_day[:7]]
    other_tenant = [(r[0], "tenant-c", *r[2:]) for r in first_day[:4]]
    write_lake(spark, cfg, new + resent + other_tenant, appends=2)
    assert lake_counts(spark, cfg.lake.events_raw)[DAY] == len(new) + len(resent) + len(other_tenant)

    moved = _move(spark, cfg)
    assert [(r.day, r.moved) for r in moved] == [(DAY, True)], [r.reason for r in moved]
    expected = _keys(first_day) + _keys(new) + _keys(other_tenant)  # each event once, none lost
    assert lake_keys(spark, cfg.tiering.cold_path, DAY) == expected
    assert DAY not in lake_counts(spark, cfg.lake.events_raw)
    hot_day = HOT_DAY.date().isoformat()
    assert lake_counts(spark, cfg.lake.events_raw) == {hot_day: sum(r[17].isoformat() == hot_day for r in first)}
    whole_cold = lake_keys(spark, cfg.tiering.cold_path)

    # Twice: a run with nothing to move changes nothing; the same re-sends landing once more add nothing
    # to the cold day and still leave the hot lake.
    assert _move(spark, cfg) == []
    write_lake(spark, cfg, new + resent, appends=1)
    assert [(r.day, r.moved) for r in _move(spark, cfg)] == [(DAY, True)]
    assert lake_keys(spark, cfg.tiering.cold_path) == whole_cold
    assert DAY not in lake_counts(spark, cfg.lake.events_raw)


def test_rows_landing_in_a_day_while_it_moves_are_never_deleted_uncopied(stack, spark, tmp_path):
    cfg = _cfg(stack, tmp_path)
    first = events(HOURS, 8, seed="mid")
    write_lake(spark, cfg, first)
    day = COLD_DAYS[1].date()
    landing = events([COLD_DAYS[1] + timedelta(hours=5)], 5, seed="landing")

    def land():  # after the cold write and its check, before the hot delete
        write_lake(spark, cfg, landing, appends=1)

    hot_bytes = cold.hot_days_to_move(cfg, RunOptions(INTERVAL_END).boundaries(cfg))[day][1]
    result = cold.move_day(spark, cfg, day, hot_bytes, after_copy=land)
    assert result.moved and "5 rows that landed during the move stay hot" in result.reason
    copied = _keys(r for r in first if r[17] == day)
    assert lake_keys(spark, cfg.tiering.cold_path, day.isoformat()) == copied
    assert lake_keys(spark, cfg.lake.events_raw, day.isoformat()) == _keys(landing)  # kept, not deleted

    cold.move_day(spark, cfg, day, hot_bytes)  # the next run moves them
    assert lake_keys(spark, cfg.tiering.cold_path, day.isoformat()) == copied + _keys(landing)
    assert not lake_keys(spark, cfg.lake.events_raw, day.isoformat())


def test_an_hour_of_a_cold_day_with_new_hot_rows_is_refused_not_published_short(stack, spark, tmp_path):
    from tidemark.batch.recompute import recompute

    cfg = _cfg(stack, tmp_path)
    write_lake(spark, cfg, events(HOURS, 10, seed="short"))
    assert DAY in [r.day for r in _move(spark, cfg) if r.moved]
    hour = next(h for h in HOURS if h.date().isoformat() == DAY)
    # Late rows of the cold day land in the hot lake: a recompute would see only them.
    write_lake(spark, cfg, events([hour], 3, seed="late-again"), appends=1)
    with pytest.raises(lake.ColdHourRefused, match="cold tier"):
        recompute(spark, cfg, hour)
