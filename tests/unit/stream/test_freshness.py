"""The measured freshness histogram a micro-batch records (pure; no Spark, no ClickHouse)."""

from datetime import datetime, timedelta, timezone

from tidemark.stream.sink import FRESHNESS_STEP_MS, BatchMetrics, weighted_quantile

COMMIT = datetime(2026, 11, 25, 3, 0, 10, tzinfo=timezone.utc)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_histogram_counts_every_event_at_its_step_midpoint():
    m = BatchMetrics("s", 1, 1)
    # 7 events in the step starting 2.0 s before commit, 3 in the step starting 9.95 s before
    m.event_time_steps = {_ms(COMMIT - timedelta(seconds=2)): 7, _ms(COMMIT - timedelta(milliseconds=9950)): 3}
    m.committed_at = COMMIT
    lags, counts = m.freshness_histogram()
    assert lags == [1900, 9900] and counts == [7, 3]
    assert sum(counts) == 10  # nothing lost or duplicated
    assert all(lag % FRESHNESS_STEP_MS == 0 for lag in lags)


def test_event_time_ahead_of_the_commit_counts_as_zero_not_negative():
    m = BatchMetrics("s", 1, 1, event_time_steps={_ms(COMMIT + timedelta(seconds=3)): 4})
    m.committed_at = COMMIT
    assert m.freshness_histogram() == ([0], [4])


def test_uncommitted_batch_has_no_freshness():
    m = BatchMetrics("s", 1, 1, event_time_steps={_ms(COMMIT): 1})
    assert m.freshness_histogram() == ([], []) and m.freshness_quantile_s(0.95) == 0.0


def test_weighted_quantile_matches_clickhouse_quantile_exact_weighted():
    # ClickHouse 18.16 answers [100, 3000, 3000] and, for [900, 29900] x [19, 1], [900, 900, 29900]
    values, weights = [100, 200, 3000], [10, 5, 1]
    assert [weighted_quantile(values, weights, q) for q in (0.5, 0.95, 0.99)] == [100, 3000, 3000]
    assert [weighted_quantile([900, 29900], [19, 1], q) for q in (0.5, 0.95, 0.99)] == [900, 900, 29900]
    assert weighted_quantile([1, 2], [1, 1], 0.5) == 1
    assert weighted_quantile([], [], 0.5) == 0.0
    assert weighted_quantile([5], [1], 0.0) == 5 and weighted_quantile([5, 9], [1, 1], 1.0) == 9


def test_row_carries_quantiles_and_the_histogram():
    m = BatchMetrics(
        "s",
        1,
        1,
        valid_rows=20,
        event_time_steps={_ms(COMMIT - timedelta(seconds=1)): 19, _ms(COMMIT - timedelta(seconds=30)): 1},
    )
    m.committed_at = COMMIT
    row = m.row()
    p50, p95, mx, lags, counts = row[-5:]
    assert (p50, p95, mx) == (0.9, 0.9, 29.9)  # 19 of 20 events are 0.9 s old: p95 is 0.9, the max 29.9
    assert lags == [900, 29900] and counts == [19, 1]


def test_report_shows_backfill_apart_from_live_freshness():
    from tidemark.stream.reconcile import Backfill, StreamReport

    report = StreamReport(10, 10, 1, [], 0.0, 1, [], freshness_p95_s=2.5, freshness_live_within_s=600)
    assert not any(line.startswith("backfill") for line in report.lines())
    report.backfill = Backfill(400, 7200.0, 7300.0)
    shown = report.lines()
    assert "queryable within 600 s" in next(line for line in shown if line.startswith("freshness"))
    assert "400 on-time events" in next(line for line in shown if line.startswith("backfill"))
