"""The publication protocol at the edges the generator never hits: two runs of one hour at once,
a forced re-run, an older snapshot finishing last, data landing mid-run, and clean-up never
touching what a reader or a live run needs. Real Spark, Delta and ClickHouse."""

import dataclasses
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from support.clickhouse import forget_rows
from support.lake import append_raw
from support.wait import wait_until

from tidemark.batch import planning, publication, registry
from tidemark.batch.recompute import recompute
from tidemark.config import LakeSettings
from tidemark.hours import HOUR
from tidemark.io.clickhouse import client
from tidemark.lambda_merge import hour_totals
from tidemark.tables import table

H = lambda hh: datetime(2026, 11, 12, hh, tzinfo=timezone.utc)  # noqa: E731
RACE, MIDRUN, STALE, CLEAN, DUE = H(3), H(4), H(5), H(6), H(8)
DISCARDED, EMPTIED = H(14), H(15)
TENANT = "tenant-publication"


@pytest.fixture(scope="module")
def cfg(stack, tmp_path_factory):
    lake = tmp_path_factory.mktemp("publication") / "lake"
    forget_rows(
        stack,
        H(0),
        H(23),
        {
            "minute_rollups": "minute",
            "hour_rollups": "hour",
            "day_rollups": "hour",
            "published_hours": "hour",
            "lake_commits": "event_hour",
        },
    )
    return dataclasses.replace(stack, lake=LakeSettings(root=str(lake)))


def _rows(hour, n, *, first=0, late=False):
    now = hour + HOUR + timedelta(minutes=30 if late else 0)
    out = []
    for i in range(first, first + n):
        t = hour + timedelta(minutes=i % 60, seconds=i % 50)
        out.append(
            (
                str(uuid.uuid4()),
                TENANT,
                t,
                f"u-{i}",
                "s1",
                "US",
                "desktop",
                "/p",
                None,
                1,
                late,
                "manual",
                0,
                i,
                now if late else t,
                now,
                0,
                hour.date(),
                hour.hour,
            )
        )
    return out


def _total(cfg, hour, ch=None):
    ch = ch or client(cfg.clickhouse)
    return sum(r[2] for r in hour_totals(ch, cfg.clickhouse.database, TENANT, hour, hour + HOUR))


def test_two_runs_at_once_and_a_forced_rerun_never_show_a_gap(spark, cfg):
    append_raw(spark, cfg, _rows(RACE, 30))
    assert recompute(spark, cfg, RACE, run_id="race-0").status == "published"
    append_raw(spark, cfg, _rows(RACE, 12, first=30))  # the next runs see 42 events

    seen, stop = [], threading.Event()
    reader = client(cfg.clickhouse)

    def poll():
        while not stop.is_set():
            seen.append(_total(cfg, RACE, reader))

    poller = threading.Thread(target=poll)
    poller.start()
    env = {**os.environ, "TIDEMARK_LAKE_ROOT": cfg.lake.root, "TIDEMARK_LOG_LEVEL": "WARNING"}
    other = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tidemark.cli",
            "recompute",
            "--hour",
            "2026-11-12T03",
            "--run-id",
            "race-other",
            "--force",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        mine = recompute(spark, cfg, RACE, run_id="race-mine", force=True)
        out, _ = other.communicate(timeout=600)
        forced = recompute(spark, cfg, RACE, run_id="race-forced", force=True)  # unchanged content, forced
        # Two more looks: the second of them began after the forced switch (the first may have been
        # in flight during it).
        looked = len(seen)
        wait_until(lambda: len(seen) >= looked + 2, 60, "the reader to look again after the forced switch")
    finally:
        stop.set()
        poller.join()
        if other.poll() is None:
            other.kill()
    assert other.returncode == 0, out.decode(errors="replace")[-3000:]
    assert mine.status == "published" and forced.status == "published"
    # Every total a reader saw is a whole published hour: never 0 (a gap), never partial, never doubled.
    assert len(seen) > 20 and set(seen) <= {30, 42}, Counter(seen)
    assert seen == sorted(seen) and seen[-1] == 42
    cur = registry.current(cfg, [RACE])[RACE]
    assert cur.version == forced.version and cur.dedup_rows == 42
    # Superseded versions stay for readers until the grace period, then go; the current one stays.
    later = datetime.now(timezone.utc) + publication.SUPERSEDED_GRACE + timedelta(seconds=1)
    assert len(publication.present_versions(cfg, RACE)) == 4
    publication.cleanup(cfg, RACE, now=later)
    assert publication.present_versions(cfg, RACE) == [forced.version]
    assert _total(cfg, RACE) == 42


def test_data_that_lands_while_the_recompute_runs_makes_the_hour_dirty(spark, cfg):
    append_raw(spark, cfg, _rows(MIDRUN, 20))
    landed = []

    def land_mid_run(delta_version):  # after the snapshot is pinned, before the publish
        append_raw(spark, cfg, _rows(MIDRUN, 3, first=100, late=True))
        landed.append(delta_version)

    first = recompute(spark, cfg, MIDRUN, run_id="midrun-1", on_snapshot=land_mid_run)
    assert first.status == "published" and first.dedup_rows == 20 and landed
    assert MIDRUN in planning.dirty_hours(cfg, MIDRUN, MIDRUN + HOUR)

    second = recompute(spark, cfg, MIDRUN, run_id="midrun-2")
    assert second.status == "published" and second.dedup_rows == 23
    assert MIDRUN not in planning.dirty_hours(cfg, MIDRUN, MIDRUN + HOUR)
    assert _total(cfg, MIDRUN) == 23
    # Compaction rewrites files without changing data: the hour stays clean.
    spark.sql(f"OPTIMIZE delta.`{cfg.lake.events_raw}` WHERE event_date = '2026-11-12' AND event_hour = 4")
    assert MIDRUN not in planning.dirty_hours(cfg, MIDRUN, MIDRUN + HOUR)


def test_an_older_snapshot_finishing_last_does_not_win(spark, cfg):
    append_raw(spark, cfg, _rows(STALE, 10))
    slow = recompute(spark, cfg, STALE, run_id="stale-slow", publish_now=False)  # reads 10 events
    append_raw(spark, cfg, _rows(STALE, 5, first=10))
    fast = recompute(spark, cfg, STALE, run_id="stale-fast")  # reads 15, publishes first
    assert fast.status == "published" and fast.delta_version > slow.delta_version

    from tidemark.batch.recompute import conclude

    assert conclude(cfg, slow).status == "superseded"
    assert registry.current(cfg, [STALE])[STALE].version == fast.version
    assert slow.version not in publication.present_versions(cfg, STALE)  # it removed its own rows
    assert _total(cfg, STALE) == 15


def test_cleanup_keeps_a_live_runs_staging_and_removes_an_abandoned_one(spark, cfg):
    append_raw(spark, cfg, _rows(CLEAN, 8))
    pub = recompute(spark, cfg, CLEAN, run_id="clean-pub")
    assert pub.status == "published"
    # Another run has staged its version and is still gating it.
    other = recompute(spark, cfg, CLEAN, run_id="clean-live", publish_now=False, force=True)
    assert other.status == "staged" and other.version in publication.present_versions(cfg, CLEAN)

    publication.cleanup(cfg, CLEAN, now=datetime.now(timezone.utc) + publication.SUPERSEDED_GRACE * 2)
    assert set(publication.present_versions(cfg, CLEAN)) == {pub.version, other.version}

    # The run died: after the staging timeout its version is thrown away (and recorded), never the current one.
    publication.cleanup(cfg, CLEAN, now=datetime.now(timezone.utc) + publication.STAGING_TIMEOUT + timedelta(minutes=1))
    assert publication.present_versions(cfg, CLEAN) == [pub.version]
    assert registry.versions(cfg, CLEAN)[other.version].status == "discarded"
    assert _total(cfg, CLEAN) == 8


def test_a_version_discarded_by_cleanup_is_never_published(spark, cfg):
    """A publish task that runs long after its staging (a scheduler or worker outage), after clean-up
    discarded the version as abandoned, must not publish the now empty hour."""
    from tidemark.batch.recompute import conclude

    append_raw(spark, cfg, _rows(DISCARDED, 10))
    first = recompute(spark, cfg, DISCARDED, run_id="discarded-1")
    assert first.status == "published"
    append_raw(spark, cfg, _rows(DISCARDED, 5, first=10))
    late = recompute(spark, cfg, DISCARDED, run_id="discarded-late", publish_now=False)  # the publish task waits
    assert late.status == "staged" and late.dedup_rows == 15

    later = datetime.now(timezone.utc) + publication.STAGING_TIMEOUT + timedelta(minutes=1)
    assert publication.cleanup(cfg, DISCARDED, now=later) == [late.version]
    with pytest.raises(publication.PublishRefused, match="was discarded"):
        conclude(cfg, late)

    # The hour stays as it was: the previous version serves, and the hour is still dirty...
    assert registry.current(cfg, [DISCARDED])[DISCARDED].version == first.version
    assert publication.present_versions(cfg, DISCARDED) == [first.version]
    assert _total(cfg, DISCARDED) == 10
    end = datetime.now(timezone.utc)
    assert DISCARDED in planning.due_hours(cfg, end, window=end - DISCARDED).dirty
    # ...so the next run recomputes and publishes it.
    again = recompute(spark, cfg, DISCARDED, run_id="discarded-2")
    assert again.status == "published" and _total(cfg, DISCARDED) == 15
    assert DISCARDED not in planning.dirty_hours(cfg, DISCARDED, DISCARDED + HOUR)


def test_a_staged_version_whose_rows_are_not_whole_is_never_published(spark, cfg):
    """The registry still says 'staged', but the version's hour rows are gone (a clean-up that died
    midway, a stray delete): the switch counts the rows it is about to publish."""
    from tidemark.batch.recompute import conclude

    append_raw(spark, cfg, _rows(EMPTIED, 6))
    staged = recompute(spark, cfg, EMPTIED, run_id="emptied", publish_now=False)
    assert staged.status == "staged" and staged.version in publication.present_versions(cfg, EMPTIED)
    ch = client(cfg.clickhouse)
    db, params = cfg.clickhouse.database, {"h": int(EMPTIED.timestamp()), "v": staged.version}
    cond = "layer = 'batch' AND hour = toDateTime(%(h)s) AND version = %(v)s"
    ch.execute(f"ALTER TABLE {db}.hour_rollups DELETE WHERE {cond}", params)
    wait_until(
        lambda: not ch.execute(f"SELECT count() FROM {db}.hour_rollups WHERE {cond}", params)[0][0],
        120,
        "the delete of the staged version's hour rows to apply",
        interval_s=0.2,
    )

    with pytest.raises(publication.PublishRefused, match="hour_rollups holds 0 events, staging wrote 6"):
        conclude(cfg, staged)
    assert EMPTIED not in registry.current(cfg, [EMPTIED])
    assert registry.versions(cfg, EMPTIED)[staged.version].status == "discarded"
    assert publication.present_versions(cfg, EMPTIED) == []  # what was left of it is gone too
    assert recompute(spark, cfg, EMPTIED, run_id="emptied-2").status == "published"
    assert _total(cfg, EMPTIED) == 6


def test_due_hours_cover_unpublished_and_failed_hours_with_back_off(spark, cfg):
    never, failed = DUE, DUE + HOUR
    append_raw(spark, cfg, _rows(never, 4) + _rows(failed, 4))
    # The run's data interval ends now (back-off counts from the failures' real times).
    end = datetime.now(timezone.utc)
    window = end - DUE  # reaches back to this module's hours
    due = planning.due_hours(cfg, end, window=window)
    assert never in due.unpublished and failed in due.unpublished
    assert planning.due_hours(cfg, end, window=window).to_run(1) == [never]  # bounded per run, oldest first

    # The hour fails its gate repeatedly: retried after the back-off, then reported as failing.
    for n in range(1, planning.FAILING_AFTER + 1):
        registry.record(
            cfg, failed, 10 + n, "failed_quality", delta_version=1, run_id=f"f{n}", reason="row count out of range"
        )
    due = planning.due_hours(cfg, end + timedelta(seconds=5), window=window)
    assert failed in due.backing_off and failed not in due.to_run(24)
    assert failed in due.failing and "4 failures in a row" in due.failing_report()
    much_later = end + planning.retry_delay(planning.FAILING_AFTER) + timedelta(minutes=1)
    due = planning.due_hours(cfg, much_later, window=much_later - DUE)
    assert failed in due.retry and failed in due.to_run(24)

    # A publish ends the streak.
    assert recompute(spark, cfg, failed, run_id="due-ok").status == "published"
    due = planning.due_hours(cfg, much_later, window=much_later - DUE)
    assert failed not in due.failing and failed not in due.to_run(24)


def test_dirty_hour_index_survives_cleaned_up_commit_files(spark, cfg, tmp_path):
    """When the Delta log no longer has the commit files the index needs (log retention), the index
    records every hour of the oldest readable snapshot instead: published hours look dirty (a
    recompute too many), never clean (data missed)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from tidemark.batch import lake_log

    lake = dataclasses.replace(cfg, lake=LakeSettings(root=str(tmp_path / "lake")))
    schema = table("events_raw")
    path = lake.lake.events_raw
    for hh in (10, 11, 12):
        rows = _rows(H(hh), 3)
        write_deltalake(
            path,
            pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows], schema.arrow()),
            mode="append",
            partition_by=list(schema.partition_by),
        )
    DeltaTable(path).create_checkpoint()
    for old in (0, 1):
        os.remove(f"{path}/_delta_log/{old:020d}.json")
    assert lake_log.index(lake) == 1  # commit 2 read from the checkpointed snapshot; 0 and 1 are gone
    assert lake_log.indexed_version(lake, "events_raw") == 2
    assert sorted(lake_log.hours_with_data(lake, H(0), H(23))) == [H(10), H(11), H(12)]
