"""The batch layer on the real stack: generator -> stream (spark-submit) -> Delta -> recompute -> ClickHouse.

One stream run lands four hours of traffic; each test owns one of those hours
(the published-hours registry is shared by the whole test database).
"""

import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from support.clickhouse import expected_minute_counts, forget_rows, served_minute_counts
from support.lake import append_raw
from support.stream import StreamRun
from support.wait import wait_until

from tidemark.batch import planning, registry
from tidemark.batch.recompute import QualityGateFailed, conclude, recompute
from tidemark.hours import HOUR
from tidemark.io.clickhouse import client
from tidemark.lambda_merge import hour_totals

H = lambda hh: datetime(2026, 11, 10, hh, tzinfo=timezone.utc)  # noqa: E731
IDEMPOTENT, BAD, ATOMIC, LATE = H(9), H(10), H(11), H(12)


def _forget_hours(cfg, start, end):
    """Remove every trace of [start, end) from ClickHouse (the hours are fixed)."""
    forget_rows(
        cfg,
        start,
        end,
        {
            "minute_rollups": "minute",
            "hour_rollups": "hour",
            "late_event_hours": "event_hour",
            "published_hours": "hour",
            "lake_commits": "event_hour",
        },
    )


@pytest.fixture(scope="module")
def pipeline(stack, tmp_path_factory):
    _forget_hours(stack, H(0), H(23))
    run = StreamRun.create(tmp_path_factory.mktemp("batch"), "batch")
    manifest = run.generate(
        "--count",
        "28000",
        "--rate",
        "2",
        "--start-time",
        "2026-11-10T09:00:10Z",
        "--seed",
        "5",
        "--late-fraction",
        "0",
        "--duplicate-fraction",
        "0.02",
        "--malformed-fraction",
        "0.01",
    )
    run.run_available_now("--max-offsets-per-trigger", "10000")
    return run, manifest


def _stream_only(cfg, hour):
    rows = client(cfg.clickhouse).execute(
        f"SELECT tenant_id, minute, country, device, page, sum(events) FROM {cfg.clickhouse.database}.minute_rollups "
        f"WHERE layer = 'stream' AND minute >= %(s)s AND minute < %(e)s GROUP BY tenant_id, minute, "
        f"country, device, page",
        {"s": hour, "e": hour + HOUR},
    )
    return {(t, m.strftime("%Y-%m-%dT%H:%M"), c, d, p): n for t, m, c, d, p, n in rows}


def _batch_rows(cfg, hour):
    return client(cfg.clickhouse).execute(
        f"SELECT version, tenant_id, minute, country, device, page, sum(events), uniqCombinedMerge(users) "
        f"FROM {cfg.clickhouse.database}.minute_rollups WHERE layer = 'batch' AND minute >= %(s)s AND minute < %(e)s "
        f"GROUP BY version, tenant_id, minute, country, device, page ORDER BY version, tenant_id, minute, country, "
        f"device, page",
        {"s": hour, "e": hour + HOUR},
    )


def _raw_row(event_time, hour, tenant="tenant-inject", user="u-inject", partition_hour=None):
    ph = partition_hour or hour
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    return (
        str(uuid.uuid4()),
        tenant,
        event_time,
        user,
        "s1",
        "US",
        "desktop",
        "/injected",
        None,
        1,
        False,
        "manual",
        0,
        0,
        event_time,
        now,
        0,
        ph.date(),
        ph.hour,
    )


def test_recompute_is_exact_and_three_runs_are_identical(spark, pipeline):
    run, manifest = pipeline
    cfg = run.cfg
    first = recompute(spark, cfg, IDEMPOTENT, run_id="r1")
    assert first.status == "published", first.reason
    assert first.dedup_rows == sum(expected_minute_counts([manifest], IDEMPOTENT).values())
    assert first.raw_rows >= first.dedup_rows
    assert served_minute_counts(cfg, IDEMPOTENT) == expected_minute_counts([manifest], IDEMPOTENT)
    content = _batch_rows(cfg, IDEMPOTENT)

    second = recompute(spark, cfg, IDEMPOTENT, run_id="r2")
    assert second.status == "up_to_date" and second.version == first.version
    assert _batch_rows(cfg, IDEMPOTENT) == content  # the second run wrote nothing
    # A forced re-run of unchanged content stages a new version and switches to it; the old one
    # stays readable (superseded, removed after the grace period), so there is no gap.
    third = conclude(cfg, recompute(spark, cfg, IDEMPOTENT, run_id="r3", publish_now=False, force=True))
    assert third.status == "published" and third.version != first.version
    assert registry.current(cfg, [IDEMPOTENT])[IDEMPOTENT].version == third.version
    assert _content(cfg, IDEMPOTENT, third.version) == _content(cfg, IDEMPOTENT, first.version)
    assert served_minute_counts(cfg, IDEMPOTENT) == expected_minute_counts([manifest], IDEMPOTENT)
    assert IDEMPOTENT not in planning.dirty_hours(cfg, IDEMPOTENT, IDEMPOTENT + HOUR)


def _content(cfg, hour, version):
    return [row[1:] for row in _batch_rows(cfg, hour) if row[0] == version]


def test_bad_hour_fails_the_gate_and_streaming_rows_stay(spark, pipeline):
    run, _ = pipeline
    cfg = run.cfg
    before = served_minute_counts(cfg, BAD)
    assert before and before == _stream_only(cfg, BAD)
    # A corrupt writer put an event of 08:00 into the 10:00 partition.
    append_raw(spark, cfg, [_raw_row(BAD - timedelta(hours=2), BAD, partition_hour=BAD)])

    summary = recompute(spark, cfg, BAD, run_id="bad", publish_now=False)
    assert not summary.passed
    assert "event_time" in summary.reason
    with pytest.raises(QualityGateFailed, match="not published"):
        conclude(cfg, summary)

    assert BAD not in registry.current(cfg, [BAD])
    ((status, reason),) = client(cfg.clickhouse).execute(
        f"SELECT status, reason FROM {cfg.clickhouse.database}.published_hours WHERE hour = %(h)s "
        f"ORDER BY sequence DESC LIMIT 1",
        {"h": BAD},
    )
    assert status == "failed_quality" and "event_time" in reason
    assert _batch_rows(cfg, BAD) == []  # the staged version was removed
    assert served_minute_counts(cfg, BAD) == before  # readers still see the streaming rows


def test_publish_is_atomic_for_a_polling_reader(spark, pipeline):
    run, manifest = pipeline
    cfg = run.cfg
    tenant = "tenant-atomic"
    # Extra raw events only the batch layer will see, so old and new totals differ.
    append_raw(
        spark, cfg, [_raw_row(ATOMIC + timedelta(minutes=m), ATOMIC, tenant=tenant, user=f"u{m}") for m in range(40)]
    )
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database

    def total():
        rows = hour_totals(ch_reader, db, tenant, ATOMIC, ATOMIC + HOUR)
        return sum(r[2] for r in rows)

    ch_reader = client(cfg.clickhouse)
    seen, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            seen.append(total())

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        first = recompute(spark, cfg, ATOMIC, run_id="atomic-1")
        assert first.status == "published"
        append_raw(spark, cfg, [_raw_row(ATOMIC + timedelta(minutes=50), ATOMIC, tenant=tenant, user="late")])
        second = recompute(spark, cfg, ATOMIC, run_id="atomic-2")
        assert second.status == "published" and second.version != first.version
        # The reader goes on until a look after the second publish has seen it.
        looked = len(seen)
        wait_until(lambda: len(seen) > looked and seen[-1] == 41, 60, "the reader to see the second version")
    finally:
        stop.set()
        reader.join()
    assert len(seen) > 20
    assert set(seen) <= {0, 40, 41}, Counter(seen)
    assert seen[0] == 0 and seen[-1] == 41
    # once a newer total is seen, an older one never comes back
    assert seen == sorted(seen)
    assert (
        ch.execute(
            f"SELECT count() FROM {db}.published_hours WHERE hour = %(h)s AND status = 'published'", {"h": ATOMIC}
        )[0][0]
        == 2
    )


def test_late_events_for_a_published_hour_are_folded_in(spark, pipeline):
    run, manifest = pipeline
    cfg = run.cfg
    assert recompute(spark, cfg, LATE, run_id="late-1").status == "published"
    assert served_minute_counts(cfg, LATE) == expected_minute_counts([manifest], LATE)

    # Mobile clients come back online: events of 12:xx arrive from 13:30 on.
    late = run.generate(
        "--count",
        "2000",
        "--rate",
        "2",
        "--start-time",
        "2026-11-10T13:30:00Z",
        "--seed",
        "6",
        "--late-fraction",
        "0.5",
        "--min-lateness",
        "40m",
        "--max-lateness",
        "75m",
        "--duplicate-fraction",
        "0.02",
        "--malformed-fraction",
        "0",
    )
    run.run_available_now()
    late_in_hour = sum(n for h, n in late["late_events_per_hour"].items() if h == "2026-11-10T12")
    assert late_in_hour > 100

    dirty = planning.dirty_hours(cfg, LATE - timedelta(days=1), LATE + timedelta(days=1))
    assert LATE in dirty
    summary = recompute(spark, cfg, LATE, run_id="late-2")
    assert summary.status == "published"
    assert served_minute_counts(cfg, LATE) == expected_minute_counts([manifest, late], LATE)


def test_duplicates_past_the_watermark_count_once_after_recompute(spark, stack, tmp_path):
    run = StreamRun.create(tmp_path, "dups")
    run_env = {"TIDEMARK_DEDUP_WINDOW": "1 seconds"}
    hour = datetime(2026, 11, 10, 15, tzinfo=timezone.utc)
    args = (
        "--count",
        "3000",
        "--rate",
        "2",
        "--start-time",
        "2026-11-10T15:00:10Z",
        "--seed",
        "9",
        "--late-fraction",
        "0",
        "--duplicate-fraction",
        "0.05",
        "--malformed-fraction",
        "0",
    )
    manifest = run.generate(*args)
    run.run_available_now(extra_env=run_env)
    # The dedup's watermark runs on ingest time (the batch timestamp): the first copies arrived by then.
    first_copies_ms = max(b.timestamp_ms for b in run.spark_batches())
    # Spark advances a watermark one batch late: a little unrelated traffic (hour 16) moves it past
    # the first copies, and the no-data batch that follows evicts their ids.
    run.generate(
        "--count",
        "50",
        "--rate",
        "2",
        "--start-time",
        "2026-11-10T16:00:10Z",
        "--seed",
        "10",
        "--late-fraction",
        "0",
        "--duplicate-fraction",
        "0",
        "--malformed-fraction",
        "0",
    )
    run.run_available_now(extra_env=run_env)
    last = run.spark_batches()[-1]
    assert last.watermark_ms > first_copies_ms + 1000, (last, first_copies_ms)  # past their 1 s window: evicted
    replay = run.generate(*args)  # the same bytes again, after the stream forgot the ids
    assert replay["minute_counts"] == manifest["minute_counts"]
    run.run_available_now(extra_env=run_env)

    cfg = run.cfg
    import deltalake

    raw = deltalake.DeltaTable(cfg.lake.events_raw).to_pyarrow_table(columns=["event_id"])
    assert raw.num_rows > manifest["valid_events"]  # duplicates past the watermark reached the lake
    assert sum(_stream_only(cfg, hour).values()) > manifest["on_time_events"]  # and the stream counted them

    summary = recompute(spark, cfg, hour, run_id="dups")
    assert summary.dedup_rows == manifest["valid_events"] and summary.raw_rows == 2 * manifest["valid_events"]
    assert served_minute_counts(cfg, hour) == expected_minute_counts([manifest], hour)


def test_on_time_events_that_arrive_after_the_publish_are_folded_in(spark, pipeline):
    """On time is not the same as before the publish: an event may arrive up to the allowed lateness
    after its hour and still be on time, so never flagged late. The Delta log makes the hour dirty."""
    run, _ = pipeline
    cfg = run.cfg
    hour = H(18)
    first = run.generate(
        "--count",
        "1200",
        "--rate",
        "2",
        "--start-time",
        "2026-11-10T18:00:10Z",
        "--seed",
        "11",
        "--late-fraction",
        "0",
        "--duplicate-fraction",
        "0",
        "--malformed-fraction",
        "0",
    )
    run.run_available_now()
    assert recompute(spark, cfg, hour, run_id="ontime-1").status == "published"

    # Stragglers sent from 19:00 on, each up to 10 min (the allowed lateness) after its event time.
    stragglers = run.generate(
        "--count",
        "600",
        "--rate",
        "1",
        "--start-time",
        "2026-11-10T19:00:00Z",
        "--seed",
        "12",
        "--late-fraction",
        "0",
        "--ontime-max-lateness",
        "10m",
        "--duplicate-fraction",
        "0",
        "--malformed-fraction",
        "0",
    )
    run.run_available_now()
    into_hour = sum(r[5] for r in stragglers["minute_counts"] if r[1].startswith("2026-11-10T18"))
    assert into_hour > 20 and stragglers["late_events"] == 0  # on time, and in the published hour

    due = planning.due_hours(cfg, hour + timedelta(hours=3), window=timedelta(hours=4))
    assert hour in due.dirty
    assert recompute(spark, cfg, hour, run_id="ontime-2").status == "published"
    assert served_minute_counts(cfg, hour) == expected_minute_counts([first, stragglers], hour)
    assert hour not in planning.dirty_hours(cfg, hour, hour + HOUR)
