"""Issue 23: every value the stream sends to ClickHouse fits its column (pure; no Spark, no ClickHouse).

The poison record of the issue (Kafka timestamp 1970-01-01T00:00:05Z, event_time the epoch) made the
registry row carry a freshness of ~56 years in a UInt32-millisecond column, which clickhouse-driver
refused on every retry and every replay: the stream stopped for every tenant."""

from datetime import datetime, timedelta, timezone

import pytest

from tidemark.stream.sink import (
    BATCH_COLUMNS,
    UINT32_MAX,
    BatchMetrics,
    epoch_seconds,
    fit_rows,
    fits_datetime,
    stored_datetime,
)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 12, 4, 16, 0, tzinfo=timezone.utc)


def test_freshness_of_an_epoch_event_fits_uint32_milliseconds():
    m = BatchMetrics("s", 1, 1, event_time_steps={0: 1, 100: 2})
    m.newest_event_time = EPOCH
    m.committed_at = NOW
    lags, counts = m.freshness_histogram()
    assert counts == [3] and all(0 <= lag <= UINT32_MAX for lag in lags)
    row = dict(zip(BATCH_COLUMNS, m.row(), strict=True))
    assert all(0 <= f <= UINT32_MAX for f in row["freshness_ms"])
    assert row["freshness_max_s"] <= UINT32_MAX / 1000


@pytest.mark.parametrize(
    "newest, stored",
    [
        (EPOCH - timedelta(days=7), EPOCH),
        (None, EPOCH),
        (EPOCH + timedelta(seconds=2**32 + 5), EPOCH + timedelta(seconds=UINT32_MAX)),
        (NOW, NOW),
    ],
)
def test_newest_event_time_is_clamped_into_datetime(newest, stored):
    m = BatchMetrics("s", 1, 1, newest_event_time=newest)
    m.committed_at = NOW
    row = dict(zip(BATCH_COLUMNS, m.row(), strict=True))
    assert row["newest_event_time"] == stored == stored_datetime(newest)


def test_rows_outside_datetime_are_left_out_not_sent():
    rows = [("stream", 1, "t", -60, "US", "mobile", "/", 1, ["u"]), ("stream", 1, "t", 120, "US", "mobile", "/", 1, [])]
    assert fit_rows("rollup_input", rows, [3]) == rows[1:]
    late = [("t", EPOCH - timedelta(hours=1), 1, 3, NOW), ("t", EPOCH, 1, 3, NOW)]
    assert fit_rows("late_event_hours", late, [1, 4]) == late[1:]


def test_datetime_values_are_epoch_seconds_or_aware_never_naive():
    """collect() gives naive datetimes in the driver's local zone; the driver would read them as UTC."""
    assert epoch_seconds(EPOCH + timedelta(seconds=61, microseconds=5)) == 61
    assert epoch_seconds(61) == 61
    assert fits_datetime(0) and fits_datetime(UINT32_MAX) and not fits_datetime(-1)
    assert not fits_datetime(UINT32_MAX + 1)
    with pytest.raises(ValueError, match="naive"):
        epoch_seconds(datetime(2026, 12, 4, 16, 0))
