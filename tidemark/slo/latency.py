"""API latency per minute and route, recorded in each API process and flushed to ClickHouse.

Several uvicorn workers serve the API, so the report cannot read any one process's counters: each
process keeps a small histogram per (minute, route, range span) in memory - ``record`` costs a dict
update under a lock on the request's path, nothing more - and a background thread inserts what
accumulated every ``FLUSH_S`` seconds, in one batch, into ``slo_api_latency``. A failed insert keeps
the rows (bounded) for the next try: ClickHouse being down must not lose the latency of that time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone

from tidemark.config import ClickHouseSettings
from tidemark.slo.maths import bucket_ms

log = logging.getLogger(__name__)

FLUSH_S = 10.0
MAX_PENDING_KEYS = 50_000  # (minute, route, span) keys kept while ClickHouse refuses inserts
COLUMNS = ("minute", "route", "span", "process", "requests", "errors", "latency_ms", "latency_requests")
SPAN_7D = 7 * 86400
SPAN_90D = 90 * 86400


def span_class(seconds: float | None) -> str:
    """The SLO a query's range answers to: '7d' (up to 7 days: p99 < 3 s), '90d' (up to 90 days:
    p99 < 10 s), 'long' beyond, '' for a route without a range."""
    if seconds is None:
        return ""
    if seconds <= SPAN_7D:
        return "7d"
    return "90d" if seconds <= SPAN_90D else "long"


Key = tuple[int, str, str]  # (minute epoch, route template, span class)


class LatencyRecorder:
    def __init__(self, process: str | None = None) -> None:
        self.process = process or f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._hist: dict[Key, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._errors: dict[Key, int] = defaultdict(int)

    def record(self, route: str, span: str, seconds: float, error: bool = False, at: float | None = None) -> None:
        key = (int(at if at is not None else time.time()) // 60 * 60, route, span)
        with self._lock:
            if key not in self._hist and len(self._hist) >= MAX_PENDING_KEYS:
                return  # ClickHouse has been refusing for long: drop rather than grow without bound
            self._hist[key][bucket_ms(seconds)] += 1
            if error:
                self._errors[key] += 1

    def take(self) -> list[tuple]:
        """The rows accumulated since the last take, and forget them."""
        with self._lock:
            hist, errors = self._hist, self._errors
            self._hist, self._errors = defaultdict(lambda: defaultdict(int)), defaultdict(int)
        rows = []
        for (minute, route, span), buckets in sorted(hist.items()):
            ms = sorted(buckets)
            rows.append(
                (
                    datetime.fromtimestamp(minute, timezone.utc),
                    route,
                    span,
                    self.process,
                    sum(buckets.values()),
                    errors.get((minute, route, span), 0),
                    ms,
                    [buckets[m] for m in ms],
                )
            )
        return rows

    def give_back(self, rows: list[tuple]) -> None:
        """Rows a failed insert could not write: merged back for the next flush."""
        with self._lock:
            for minute, route, span, _process, _requests, errors, ms, counts in rows:
                key = (int(minute.timestamp()), route, span)
                if key not in self._hist and len(self._hist) >= MAX_PENDING_KEYS:
                    continue
                for m, n in zip(ms, counts, strict=True):
                    self._hist[key][m] += n
                if errors:
                    self._errors[key] += errors

    def flush(self, ch, database: str) -> int:
        """Insert what accumulated; returns the rows written (0 and the rows kept when it fails)."""
        from tidemark.io.clickhouse import insert_rows

        rows = self.take()
        if not rows:
            return 0
        try:
            return insert_rows(ch, f"{database}.slo_api_latency", COLUMNS, rows)
        except Exception:
            self.give_back(rows)
            raise


class Flusher:
    """The background thread of one API process: flushes the recorder every ``interval_s`` and runs
    ``also()`` after each flush (the API refreshes its copy of the SLO status there). Never on a
    request's path; its failures are logged (once per outage) and retried."""

    def __init__(self, recorder: LatencyRecorder, cfg: ClickHouseSettings, interval_s: float = FLUSH_S, also=None):
        self.recorder = recorder
        self.cfg = cfg
        self.interval_s = interval_s
        self.also = also
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slo-latency-flush", daemon=True)
        self._ch = None
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self.flush_once()  # the last seconds' requests too

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush_once()

    def flush_once(self) -> None:
        from tidemark.io.clickhouse import client

        try:
            if self._ch is None:
                self._ch = client(self.cfg)
            self.recorder.flush(self._ch, self.cfg.database)
            if self.also is not None:
                self.also(self._ch)
            if self._failing:
                log.info("SLO figures are written again")
            self._failing = False
        except Exception as exc:  # noqa: BLE001 - the API keeps serving; the rows wait for the next try
            self._ch = None
            if not self._failing:
                log.warning(
                    "could not write API latency to ClickHouse; kept in memory and retried",
                    extra={"error": str(exc)[:300]},
                )
            self._failing = True
