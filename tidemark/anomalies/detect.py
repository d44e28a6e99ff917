"""One detection run over an explicit range: read the pre-aggregates, score, replace the range's rows.

Idempotent: a run owns (grain, range, tenants) in the anomalies table and leaves there exactly what
it found, so a rerun (or a rerun after a republished hour changed the rollups) gives the same rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from tidemark.anomalies import store
from tidemark.anomalies.scoring import DEFAULT_PARAMS, HOUR, Params, history_hours, score_hours, score_minutes
from tidemark.config import Settings
from tidemark.io.clickhouse import client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    grain: str
    start: str
    end: str
    tenants: list[str] | None
    anomalies: int
    spikes: int
    drops: int
    cpu_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def _epoch(moment: datetime) -> int:
    return int(moment.astimezone(timezone.utc).timestamp())


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def detect_hours(
    cfg: Settings,
    start: datetime,
    end: datetime,
    *,
    tenants: list[str] | None = None,
    params: Params = DEFAULT_PARAMS,
    run_id: str = "",
) -> Summary:
    """Score the hours of [start, end) against their seasonal baseline and store the anomalies."""
    cpu = time.process_time()
    first, stop = _epoch(start) // HOUR * HOUR, _epoch(end)
    targets = list(range(first, stop, HOUR))
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    frame = store.read_hourly(ch, db, history_hours(targets, params.weeks), tenants)
    found = score_hours(frame, targets, params)
    written = store.replace(ch, db, "hour", first, stop, tenants, found, run_id)
    return _summary("hour", first, stop, tenants, found, written, cpu)


def detect_minutes(
    cfg: Settings,
    start: datetime,
    end: datetime,
    *,
    tenants: list[str] | None = None,
    params: Params = DEFAULT_PARAMS,
    run_id: str = "",
) -> Summary:
    """Score the minutes of [start, end) (the live tail, events only) against 1/60 of their hour's
    seasonal baseline and store the anomalies."""
    cpu = time.process_time()
    first, stop = _epoch(start) // 60 * 60, _epoch(end) // 60 * 60
    hours = list(range(first // HOUR * HOUR, stop, HOUR))
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    hourly = store.read_hourly(ch, db, history_hours(hours, params.weeks), tenants)
    minutes = store.read_minutes(ch, db, first, stop, tenants)
    found = score_minutes(minutes, hourly, first, stop, params)
    written = store.replace(ch, db, "minute", first, stop, tenants, found, run_id)
    return _summary("minute", first, stop, tenants, found, written, cpu)


def _summary(grain: str, first: int, stop: int, tenants, found, written: int, cpu: float) -> Summary:
    summary = Summary(
        grain=grain,
        start=_iso(first),
        end=_iso(stop),
        tenants=tenants,
        anomalies=written,
        spikes=int((found["kind"] == "spike").sum()) if written else 0,
        drops=int((found["kind"] == "drop").sum()) if written else 0,
        cpu_s=round(time.process_time() - cpu, 3),
    )
    log.info("anomaly detection done", extra={"summary": summary.as_dict()})
    return summary
