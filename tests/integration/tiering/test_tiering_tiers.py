"""A whole tiering run on the real stack (ClickHouse, Spark, Delta) over synthetic data spanning
14 days, more than HOT_DAYS (7) and LAKE_HOT_DAYS (10): what leaves each tier, what stays, and that
readers' answers do not change. A database and lake of the module's own."""

import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from support.tiering import (
    DAYS,
    FIRST_DAY,
    INTERVAL_END,
    all_hours,
    drop_database,
    events,
    fresh_database,
    is_published,
    lake_counts,
    lake_ids,
    merged_hour_totals,
    minute_partitions,
    tiering_cfg,
    write_lake,
    write_rollups,
)

from tidemark.batch import planning, publication
from tidemark.io.clickhouse import client
from tidemark.tiering import delta_maintenance, inventory
from tidemark.tiering.options import RunOptions
from tidemark.tiering.run import run, spark_steps

START = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=timezone.utc)
HOT_FROM = (INTERVAL_END - timedelta(days=7)).date()
LAKE_FROM = (INTERVAL_END - timedelta(days=10)).date()
PER_HOUR = 24


@pytest.fixture(scope="module")
def world(stack, spark, tmp_path_factory):
    cfg = tiering_cfg(stack, tmp_path_factory.mktemp("tiering") / "lake", f"{stack.clickhouse.database}_tiers")
    fresh_database(cfg)
    raw = events(all_hours(), PER_HOUR)
    data_version = write_lake(spark, cfg, raw)
    current = write_rollups(cfg, raw, data_version)
    state = {
        "cfg": cfg,
        "raw": raw,
        "current": current,
        "data_version": data_version,
        "lake": lake_counts(spark, cfg.lake.events_raw),
        "ids": lake_ids(spark, cfg.lake.events_raw),
        "minute": merged_hour_totals(cfg, "minute_rollups", START, INTERVAL_END),
        "inventory": inventory.take(cfg),
        "dirty_before": planning.dirty_hours(cfg, START, INTERVAL_END),
    }
    started = time.monotonic()
    state["report"] = run(
        cfg, RunOptions(INTERVAL_END, run_id="tiering-test-1"), spark_runner=lambda o: spark_steps(spark, cfg, o)
    )
    print(f"tiering run: {time.monotonic() - started:.1f}s")
    print("\n".join(state["report"].lines()))
    yield state
    if os.environ.get("TIDEMARK_KEEP_STACK") != "1":
        drop_database(cfg)


def _day(d) -> str:
    return d.strftime("%Y%m%d")


def test_minute_tier_keeps_only_hot_days_and_warm_totals_equal_minute_totals(world):
    cfg = world["cfg"]
    assert world["report"].alerts == []
    expected = [_day(HOT_FROM + timedelta(days=i)) for i in range(7)]
    assert minute_partitions(cfg) == expected
    minute_now = merged_hour_totals(cfg, "minute_rollups", START, INTERVAL_END)
    hour_now = merged_hour_totals(cfg, "hour_rollups", START, INTERVAL_END)
    day_now = merged_hour_totals(cfg, "day_rollups", START, INTERVAL_END)
    hot_start = int(datetime(HOT_FROM.year, HOT_FROM.month, HOT_FROM.day, tzinfo=timezone.utc).timestamp())
    # Over the overlap (the hot days) the three grains agree, per tenant and hour, users included.
    assert minute_now and all(h >= hot_start for _t, h in minute_now)
    assert {k: v for k, v in hour_now.items() if k[1] >= hot_start} == minute_now
    assert {k: v for k, v in day_now.items() if k[1] >= hot_start} == minute_now
    # Nothing readers counted changed: every hour of the 14 days, dropped ones included, still reads the
    # same totals from the warm tier as from the minute tier before the run.
    assert hour_now == world["minute"] and day_now == world["minute"]
    # ...and the published hours read their current batch version (late events included).
    hour = next(h for h in all_hours() if is_published(h))
    assert sum(e for (t, h), (e, _u) in hour_now.items() if h == int(hour.timestamp())) == PER_HOUR


def test_clickhouse_care_removed_what_no_reader_counts_and_kept_the_rest(world):
    cfg = world["cfg"]
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    care = world["report"].steps["clickhouse"]
    published = [h for h in all_hours() if is_published(h)]
    assert care["versions_removed"] == len(published) and care["published_hours_with_stream_rows"] == len(published)
    for hour in published[:3] + published[-3:]:
        assert publication.present_versions(cfg, hour) == [world["current"][hour]]
    stream_hours = {
        int(h) for (h,) in ch.execute(f"SELECT DISTINCT toUInt32(hour) FROM {db}.hour_rollups WHERE layer = 'stream'")
    }
    assert stream_hours == {int(h.timestamp()) for h in all_hours() if not is_published(h)}  # unpublished stay
    ((n,),) = ch.execute(
        f"SELECT count() FROM {db}.day_rollups WHERE layer = 'stream' AND toUInt32(hour) IN %(h)s",
        {"h": tuple(int(h.timestamp()) for h in published)},
    )
    assert n == 0


def test_cold_plus_hot_equals_the_original_and_no_hour_became_dirty(world, spark):
    cfg = world["cfg"]
    hot, cold = lake_counts(spark, cfg.lake.events_raw), lake_counts(spark, cfg.tiering.cold_path)
    cold_days = sorted(d for d in world["lake"] if d < LAKE_FROM.isoformat())
    assert sorted(cold) == cold_days and len(cold_days) == DAYS - 10
    assert not set(hot) & set(cold)
    assert {**hot, **cold} == world["lake"]
    assert lake_ids(spark, cfg.lake.events_raw) | lake_ids(spark, cfg.tiering.cold_path) == world["ids"]
    assert world["report"].steps["cold"]["days_moved"] == len(cold_days)
    # OPTIMIZE (dataChange=false) and the cold move's delete (remove actions only) add no data.
    assert world["dirty_before"] == []
    assert planning.dirty_hours(cfg, START, INTERVAL_END) == []


def test_compaction_drops_small_files_and_keeps_query_results(world, spark):
    cfg = world["cfg"]
    before = [s for s in world["inventory"] if s.table == "events_raw"]
    after = [s for s in inventory.take(cfg) if s.table == "events_raw"]
    assert all(s.files == 3 for s in before)  # one file per append: the stream's small files
    assert after and all(s.files == 1 for s in after)  # every closed partition compacted
    assert sum(s.small_files for s in after) < sum(s.small_files for s in before)
    tiers = world["report"].tier_totals()
    assert tiers["lake_hot"]["after"]["files"] < tiers["lake_hot"]["before"]["files"]
    hot_days = {d: n for d, n in world["lake"].items() if d >= LAKE_FROM.isoformat()}
    assert lake_counts(spark, cfg.lake.events_raw) == hot_days
    rows = client(cfg.clickhouse).execute(
        f"SELECT phase, count() FROM {cfg.clickhouse.database}.tiering_reports WHERE run_id = 'tiering-test-1' "
        f"GROUP BY phase ORDER BY phase"
    )
    assert [p for p, _n in rows] == ["before", "after"]


def test_vacuum_keeps_time_travel_inside_retention_and_removes_old_orphans(world, spark):
    cfg = world["cfg"]
    path = cfg.lake.events_raw
    partition = f"{path}/event_date={(INTERVAL_END - timedelta(days=2)).date()}/event_hour=1"
    old_orphan, new_orphan = f"{partition}/part-orphan-old.parquet", f"{partition}/part-orphan-new.parquet"
    for orphan in (old_orphan, new_orphan):  # what a writer that died before its commit leaves behind
        with open(orphan, "wb") as f:
            f.write(b"PAR1 not committed")
    eight_days_ago = time.time() - 8 * 86400
    os.utime(old_orphan, (eight_days_ago, eight_days_ago))

    results = delta_maintenance.run(spark, cfg, RunOptions(INTERVAL_END).boundaries(cfg))
    raw = next(r for r in results if r.table == "events_raw")
    assert raw.files_compacted == 0  # idempotent: already compacted
    assert raw.vacuumed_files == 1 and not os.path.exists(old_orphan) and os.path.exists(new_orphan)
    # The snapshot before compaction and the cold move is inside the 7-day retention: still readable, same rows.
    assert lake_counts(spark, path, version=world["data_version"]) == world["lake"]


def test_a_second_run_changes_nothing_and_a_cold_hour_is_not_recomputed(world, spark):
    from tidemark.batch.lake import ColdHourRefused
    from tidemark.batch.recompute import recompute

    cfg = world["cfg"]
    partitions = minute_partitions(cfg)
    again = run(
        cfg, RunOptions(INTERVAL_END, run_id="tiering-test-2"), spark_runner=lambda o: spark_steps(spark, cfg, o)
    )
    assert again.steps["hot"]["days_dropped"] == 0 and again.steps["cold"]["days_moved"] == 0
    assert again.steps["clickhouse"]["versions_removed"] == 0 and again.steps["clickhouse"]["stream_rows_deleted"] == 0
    assert minute_partitions(cfg) == partitions
    with pytest.raises(ColdHourRefused, match="cold tier"):
        recompute(spark, cfg, datetime.combine(FIRST_DAY, datetime.min.time(), timezone.utc) + timedelta(hours=1))
