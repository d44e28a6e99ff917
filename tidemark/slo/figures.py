"""The four SLOs measured over a window from what the running system recorded in ClickHouse.

- freshness: the stream's committed batches' per-event histograms (stream_batches, read through
  tidemark.stream.reconcile.measured_freshness_s for the p95, plus the share within 60 s), over live
  events: those queryable within the allowed lateness of their event time; replayed or backfilled
  events (older at commit) are counted apart (``backfill``), never in the SLO;
- query latency: the API processes' per-minute histograms (slo_api_latency) of the dashboard's query
  routes, by range span (7 days, 90 days);
- availability: the health probe's rows (slo_probes);
- events ingested: the latest reconciliation of each stream against its generator manifest (slo_ingest).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from tidemark.slo.maths import (
    AVAILABILITY,
    FRESHNESS,
    INGEST,
    QUERY_7D,
    QUERY_90D,
    Figure,
    ingest_good,
    quantile,
    within,
)
from tidemark.stream.reconcile import Backfill, backfill, measured_freshness_s

# The dashboard's query routes (the exports have their own, longer limit and no SLO).
QUERY_ROUTES = ("/api/v1/timeseries", "/api/v1/top", "/api/v1/totals")
SPANS = {"7d": QUERY_7D, "90d": QUERY_90D}


def _window(end: datetime, window_s: int) -> dict:
    end = end.astimezone(timezone.utc).replace(microsecond=0)
    return {"lo": end - timedelta(seconds=window_s), "hi": end}


_COMMITTED_IN = "committed_at > %(lo)s AND committed_at <= %(hi)s"


def freshness(ch, db: str, end: datetime, window_s: int, live_within_s: int) -> Figure:
    rng = _window(end, window_s)
    (p95,) = measured_freshness_s(ch, db, _COMMITTED_IN, rng, (FRESHNESS.objective,), live_within_s=live_within_s)
    limit_ms = int((FRESHNESS.threshold or 0) * 1000)
    good, total = ch.execute(
        f"SELECT sumIf(n, f <= {limit_ms}), sum(n) FROM {db}.stream_batches "
        f"ARRAY JOIN freshness_ms AS f, freshness_events AS n "
        f"WHERE ({_COMMITTED_IN}) AND f <= {int(live_within_s) * 1000}",
        rng,
    )[0]
    return Figure(FRESHNESS, float(good or 0), float(total or 0), p95)


def backfilled(ch, db: str, end: datetime, window_s: int, live_within_s: int) -> Backfill:
    """The on-time events the freshness SLO leaves out over the window (see ``freshness``)."""
    return backfill(ch, db, _COMMITTED_IN, _window(end, window_s), live_within_s)


def latency_histograms(ch, db: str, end: datetime, window_s: int) -> dict[tuple[datetime, str], dict[float, float]]:
    """(hour, span) -> {seconds: requests} of the dashboard's query routes."""
    rng = {**_window(end, window_s), "routes": QUERY_ROUTES, "spans": tuple(SPANS)}
    rng["lo"] = rng["lo"].replace(second=0)  # the rows' minute grain: the window's first minute counts whole
    out: dict[tuple[datetime, str], dict[float, float]] = defaultdict(dict)
    for hour, span, ms, n in ch.execute(
        f"SELECT toStartOfHour(minute) AS h, span, l, sum(n) FROM {db}.slo_api_latency "
        f"ARRAY JOIN latency_ms AS l, latency_requests AS n "
        f"WHERE minute >= %(lo)s AND minute <= %(hi)s AND route IN %(routes)s AND span IN %(spans)s "
        f"GROUP BY h, span, l",
        rng,
    ):
        out[(hour.replace(tzinfo=timezone.utc), span)][ms / 1000.0] = float(n)
    return out


def queries(ch, db: str, end: datetime, window_s: int) -> list[Figure]:
    hists = latency_histograms(ch, db, end, window_s)
    figures = []
    for span, objective in SPANS.items():
        merged: dict[float, float] = defaultdict(float)
        for (_hour, s), hist in hists.items():
            if s == span:
                for value, n in hist.items():
                    merged[value] += n
        good, total = within(merged.items(), objective.threshold or 0.0)
        figures.append(Figure(objective, good, total, quantile(merged.items(), objective.objective)))
    return figures


def availability(ch, db: str, end: datetime, window_s: int) -> Figure:
    ok, total = ch.execute(
        f"SELECT sum(ok), count() FROM {db}.slo_probes WHERE probed_at > %(lo)s AND probed_at <= %(hi)s",
        _window(end, window_s),
    )[0]
    ok, total = float(ok or 0), float(total or 0)
    return Figure(AVAILABILITY, ok, total, ok / total if total else None)


def ingest(ch, db: str, end: datetime, window_s: int) -> Figure:
    good = total = 0.0
    for _stream, expected, counted in ch.execute(
        f"SELECT stream_id, argMax(expected, checked_at), argMax(counted, checked_at) FROM {db}.slo_ingest "
        f"WHERE checked_at > %(lo)s AND checked_at <= %(hi)s GROUP BY stream_id",
        _window(end, window_s),
    ):
        good += ingest_good(int(expected), int(counted))
        total += int(expected)
    return Figure(INGEST, good, total, good / total if total else None)


def evaluate(ch, db: str, end: datetime, window_s: int, live_within_s: int) -> list[Figure]:
    """All five figures (the query SLO has two) over the ``window_s`` seconds up to ``end``;
    freshness over events queryable within ``live_within_s`` of their event time."""
    return [
        freshness(ch, db, end, window_s, live_within_s),
        *queries(ch, db, end, window_s),
        availability(ch, db, end, window_s),
        ingest(ch, db, end, window_s),
    ]


@dataclass
class Hourly:
    """Per hour of the window: freshness p95 and the query p99 per span (s), None where unmeasured."""

    hours: list[datetime] = field(default_factory=list)
    freshness_p95: list[float | None] = field(default_factory=list)
    query_p99: dict[str, list[float | None]] = field(default_factory=dict)


def hourly(ch, db: str, end: datetime, window_s: int, live_within_s: int) -> Hourly:
    end = end.astimezone(timezone.utc).replace(microsecond=0)
    first = (end - timedelta(seconds=window_s)).replace(minute=0, second=0)
    out = Hourly(query_p99={span: [] for span in SPANS})
    hists = latency_histograms(ch, db, end, window_s)
    hour = first
    while hour <= end:
        out.hours.append(hour)
        rng = {"lo": hour, "hi": hour + timedelta(hours=1)}
        (p95,) = measured_freshness_s(
            ch,
            db,
            "committed_at >= %(lo)s AND committed_at < %(hi)s",
            rng,
            (FRESHNESS.objective,),
            live_within_s=live_within_s,
        )
        out.freshness_p95.append(p95)
        for span, objective in SPANS.items():
            out.query_p99[span].append(quantile(hists.get((hour, span), {}).items(), objective.objective))
        hour += timedelta(hours=1)
    return out
