"""Range normalization: the bucket follows the span; ends align to the bucket; 1 minute .. 90 days."""

import pytest

from tidemark.serving.ranges import DAY, HOUR, RangeError, realtime_window, resolve

NOW = 1_796_142_437  # 2026-12-01T17:47:17Z


@pytest.mark.parametrize(
    "preset,bucket,n",
    [
        ("1h", "minute", 60),
        ("6h", "minute", 360),
        ("24h", "hour", 24),
        ("7d", "hour", 168),
        ("14d", "hour", 336),
        ("30d", "day", 30),
        ("90d", "day", 90),
    ],
)
def test_presets(preset, bucket, n):
    r = resolve(NOW, preset)
    assert r.bucket == bucket and len(r.buckets()) == n
    assert r.start % r.step == 0 and r.end % r.step == 0
    assert r.start <= NOW < r.end  # the current, partial bucket is included


def test_explicit_range_and_previous_period():
    r = resolve(NOW, start="2026-11-20T00:00:00Z", end="2026-11-21T00:00:00+00:00")
    assert (r.bucket, r.span) == ("hour", DAY)
    assert r.previous().end == r.start and r.previous().span == r.span
    assert r.with_previous().start == r.start - DAY


def test_requests_seconds_apart_share_one_range():
    assert resolve(NOW, "7d") == resolve(NOW + 100, "7d")


@pytest.mark.parametrize(
    "kw",
    [
        {"range_": "91d"},
        {"range_": "0d"},
        {"range_": "7x"},
        {"range_": "' OR 1=1"},
        {"start": "2026-11-20T00:00:00"},
        {"start": "yesterday"},
        {"start": "2026-11-21T00:00:00Z", "end": "2026-11-20T00:00:00Z"},
        {"range_": "1h", "start": "0"},
        {"start": str(NOW - 100 * DAY)},
        {"start": str(NOW), "end": str(NOW + 2 * HOUR)},
        # extremes must be a RangeError (400), never an OverflowError or ValueError (500)
        {"start": "0001-01-01T00:00:00+14:00"},
        {"start": "0001-01-01T00:00:00+14:00", "end": "0001-01-01T02:00:00+14:00"},
        {"start": "0", "end": "3600"},
        {"start": "0001-01-01T00:00:00Z", "end": "0001-01-02T00:00:00Z"},
        {"start": "9999-12-31T23:59:59-14:00"},
        {"start": "1999-12-31T23:00:00Z", "end": "2000-01-01T01:00:00Z"},
        {"start": "²"},
        {"start": "٣٣٣٣٣٣٣"},
        {"start": "99999999999999999999"},
        {"start": "-1"},
        {"start": "1e9"},
        {"start": "NaN"},
        {"start": "2026-02-30T00:00:00Z"},
        {"start": "2026-11-25T00:00:00+25:00"},
        {"start": str(NOW - DAY), "end": "0"},
    ],
)
def test_rejected(kw):
    with pytest.raises(RangeError):
        resolve(NOW, **kw)


def test_the_earliest_range_is_accepted_with_its_previous_period():
    r = resolve(NOW, start="2000-01-01T00:00:00Z", end="2000-01-02T00:00:00Z")
    assert r.start == 946684800 and r.with_previous().start > 0


def test_realtime_window_is_the_last_five_minutes():
    w = realtime_window(NOW)
    assert w.end - w.start == 300 and w.start < NOW < w.end and w.bucket == "minute"
