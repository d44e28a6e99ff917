"""The SLO arithmetic: budgets, burn rates, histogram quantiles, buckets, windows, alert transitions."""

from datetime import datetime, timezone

import pytest

from tidemark.errors import TidemarkError
from tidemark.slo.latency import LatencyRecorder, span_class
from tidemark.slo.maths import (
    AVAILABILITY,
    FRESHNESS,
    Figure,
    SloError,
    bucket_ms,
    budget_left,
    burn_rate,
    burning,
    ingest_good,
    parse_window,
    quantile,
    within,
)
from tidemark.slo.monitor import Alerts, status_rows
from tidemark.slo.status import prometheus


def test_budget_and_burn_rate():
    # 99.9 %: 1,000,000 probes allow 1,000 bad ones
    assert budget_left(1_000_000, 1_000_000, 0.999) == 1.0
    assert budget_left(999_500, 1_000_000, 0.999) == pytest.approx(0.5)
    assert budget_left(999_000, 1_000_000, 0.999) == pytest.approx(0.0)
    assert budget_left(998_000, 1_000_000, 0.999) == pytest.approx(-1.0)
    assert burn_rate(999_000, 1_000_000, 0.999) == pytest.approx(1.0)
    assert burn_rate(90, 100, 0.95) == pytest.approx(2.0)  # 10 % bad of a 5 % budget: twice as fast
    assert burn_rate(0, 0, 0.999) == 0.0  # nothing measured burns nothing
    assert budget_left(0, 0, 0.999) == 1.0


def test_burning_needs_both_windows():
    assert burning(3.0, 2.0)
    assert not burning(3.0, 0.5)  # it stopped: the alert clears
    assert not burning(0.9, 50.0)  # a blip too small to matter over the hour


def test_ingest_counts_missing_and_doubled_events_as_bad():
    assert ingest_good(1000, 1000) == 1000
    assert ingest_good(1000, 998) == 998
    assert ingest_good(1000, 1003) == 997
    assert ingest_good(10, 50) == 0


def test_quantile_of_a_weighted_histogram():
    hist = [(0.1, 50), (0.2, 45), (5.0, 4), (9.0, 1)]
    assert quantile(hist, 0.5) == 0.1
    assert quantile(hist, 0.95) == 0.2
    assert quantile(hist, 0.99) == 5.0
    assert quantile(hist, 1.0) == 9.0
    assert quantile([], 0.99) is None
    assert quantile([(3.0, 0)], 0.5) is None
    assert within(hist, 3.0) == (95, 100)


def test_buckets_round_up_to_two_significant_digits():
    assert bucket_ms(0.0) == 1
    assert bucket_ms(0.0421) == 43  # 42.1 ms: up, never down
    assert bucket_ms(0.099) == 99
    assert bucket_ms(1.234) == 1300
    assert bucket_ms(3.0) == 3000
    assert bucket_ms(3.0001) == 3100  # just over the 3 s limit stays over it
    assert bucket_ms(12.3) == 13000
    assert len({bucket_ms(ms / 1000) for ms in range(1, 100_000)}) <= 370


def test_windows():
    assert parse_window("90m") == 5400
    assert parse_window("24h") == 86400
    assert parse_window("7d") == 7 * 86400
    for bad in ("", "24", "0h", "1w", "-1h"):
        with pytest.raises(SloError) as err:
            parse_window(bad)
        assert isinstance(err.value, TidemarkError) and "e.g. 90m" in str(err.value)


def test_figure():
    fig = Figure(FRESHNESS, good=90, total=100, value=75.0)
    assert fig.measured and not fig.met and fig.burn_rate == pytest.approx(2.0)
    assert Figure(FRESHNESS, 96, 100, 12.0).met
    assert not Figure(AVAILABILITY, 0, 0, None).measured and Figure(AVAILABILITY, 0, 0, None).met


def test_span_classes():
    assert span_class(None) == ""
    assert span_class(3600) == "7d"
    assert span_class(7 * 86400) == "7d"
    assert span_class(7 * 86400 + 60) == "90d"
    assert span_class(90 * 86400) == "90d"
    assert span_class(91 * 86400) == "long"


def test_recorder_aggregates_per_minute_route_and_span():
    rec = LatencyRecorder(process="p")
    t = 1_800_000_000  # a minute boundary
    rec.record("/api/v1/top", "7d", 0.0421, at=t + 1)
    rec.record("/api/v1/top", "7d", 0.0421, at=t + 59)
    rec.record("/api/v1/top", "7d", 4.0, error=True, at=t + 30)
    rec.record("/api/v1/top", "90d", 0.5, at=t + 60)
    rows = rec.take()
    assert rows == [
        (datetime.fromtimestamp(t, timezone.utc), "/api/v1/top", "7d", "p", 3, 1, [43, 4000], [2, 1]),
        (datetime.fromtimestamp(t + 60, timezone.utc), "/api/v1/top", "90d", "p", 1, 0, [500], [1]),
    ]
    assert rec.take() == []
    rec.give_back(rows)  # a failed insert: nothing lost
    assert rec.take() == rows


def test_alerts_log_once_per_transition(caplog):
    at = datetime(2026, 12, 7, tzinfo=timezone.utc)
    bad = [Figure(AVAILABILITY, 90, 100, 0.9)]
    good = [Figure(AVAILABILITY, 100, 100, 1.0)]
    alerts = Alerts()
    with caplog.at_level("INFO", logger="tidemark.slo.monitor"):
        assert alerts.update(status_rows(at, 86400, good, bad, bad)) == ["availability"]
        assert alerts.update(status_rows(at, 86400, good, bad, bad)) == []  # still burning: no new line
        assert alerts.update(status_rows(at, 86400, good, bad, good)) == ["availability"]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].slo == "availability"


def test_prometheus_text_has_no_tenant():
    status = [
        {
            "slo": "availability",
            "evaluated_at": 1_800_000_000,
            "target": 0.999,
            "measured": True,
            "value": 0.9995,
            "budget_left": 0.5,
            "burn_rate": 0.2,
            "burning": False,
        },
        {
            "slo": "events_ingested",
            "evaluated_at": 1_800_000_000,
            "target": 0.999,
            "measured": False,
            "value": None,
            "budget_left": None,
            "burn_rate": 0.0,
            "burning": False,
        },
    ]
    text = prometheus(status)
    assert 'tidemark_slo_value{slo="availability"} 0.9995' in text
    assert 'tidemark_slo_error_budget_remaining{slo="availability"} 0.5' in text
    assert 'tidemark_slo_value{slo="events_ingested"}' not in text  # unmeasured: no made-up figure
    assert 'tidemark_slo_burning{slo="events_ingested"} 0' in text
    assert "tenant" not in text
    assert prometheus([]) == ""
