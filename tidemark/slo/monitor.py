"""`tidemark slo probe`: the SLO monitor, one small process beside the API.

Every ``PROBE_S`` seconds it asks the API's ``/health`` (a 200 within ``PROBE_TIMEOUT_S`` is up;
a refused connection, a timeout or a 503 is down). It is a process of its own, started with
`tidemark serve --detach` and stopped by `tidemark stack down`, so it sees the API down when the
API is down. Every ``EVALUATE_S`` seconds it writes the probes it took (one batch), evaluates every
SLO over the status window and the burn-rate windows, writes one ``slo_status`` row per SLO (what
/metrics and the dashboard show) and logs a WARNING when an SLO starts burning and an INFO line when
it stops: once per transition, from this one process, whatever the number of API workers.
"""

from __future__ import annotations

import http.client
import logging
import signal
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

from tidemark.config import Settings
from tidemark.slo.figures import evaluate
from tidemark.slo.maths import BURN_LONG_S, BURN_SHORT_S, Figure, burning

log = logging.getLogger(__name__)

PROBE_S = 5.0
PROBE_TIMEOUT_S = 2.0
EVALUATE_S = 30.0
STATUS_WINDOW_S = 24 * 3600
PROBE_COLUMNS = ("probed_at", "target", "ok", "status", "latency_ms")
STATUS_COLUMNS = (
    "evaluated_at",
    "slo",
    "window_s",
    "target",
    "measured",
    "value",
    "good",
    "total",
    "budget_left",
    "burn_rate",
    "burning",
)


def probe(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[int, int, int]:
    """(ok, HTTP status or 0, latency ms) of one GET."""
    started = time.monotonic()
    status = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:  # a 503: the API answers, but is not healthy
        status = exc.code
    except (OSError, http.client.HTTPException):
        status = 0
    return int(status == 200), status, int((time.monotonic() - started) * 1000)


def status_rows(at: datetime, window_s: int, figures: list[Figure], long: list[Figure], short: list[Figure]) -> list:
    rows = []
    for fig, lf, sf in zip(figures, long, short, strict=True):
        rows.append(
            (
                at,
                fig.objective.name,
                window_s,
                fig.objective.objective,
                int(fig.measured),
                float(fig.value if fig.value is not None else 0.0),
                fig.good,
                fig.total,
                fig.budget_left,
                lf.burn_rate,
                int(burning(lf.burn_rate, sf.burn_rate)),
            )
        )
    return rows


class Alerts:
    """Which SLOs burn now; logs each change once."""

    def __init__(self) -> None:
        self.burning: set[str] = set()

    def update(self, rows: list) -> list[str]:
        now = {row[1] for row in rows if row[-1]}
        for name in sorted(now - self.burning):
            rate = next(row[-2] for row in rows if row[1] == name)
            log.warning(
                "SLO burning: its error budget is spent faster than the window allows; see `tidemark slo report`",
                extra={"slo": name, "burn_rate_1h": round(rate, 2)},
            )
        for name in sorted(self.burning - now):
            log.info("SLO no longer burning", extra={"slo": name})
        changed = sorted(now ^ self.burning)
        self.burning = now
        return changed


class Monitor:
    def __init__(self, cfg: Settings, url: str, probe_s: float = PROBE_S, evaluate_s: float = EVALUATE_S):
        self.cfg = cfg
        self.url = url
        self.probe_s = probe_s
        self.evaluate_s = evaluate_s
        self.alerts = Alerts()
        self.pending: list[tuple] = []
        self.stop = threading.Event()
        self._ch = None

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        next_eval = time.monotonic()  # the first probe is written at once: measured from the start
        while not self.stop.is_set():
            self.probe_once()
            if time.monotonic() >= next_eval:
                self.write()
                next_eval = time.monotonic() + self.evaluate_s
            self.stop.wait(self.probe_s)
        self.write()

    def probe_once(self) -> int:
        ok, status, ms = probe(self.url)
        self.pending.append((datetime.now(timezone.utc).replace(microsecond=0), self.url, ok, status, ms))
        return ok

    def write(self) -> None:
        """Flush the probes, evaluate, record the status. ClickHouse down: keep the probes, retry."""
        from tidemark.io.clickhouse import client, insert_rows

        db = self.cfg.clickhouse.database
        try:
            if self._ch is None:
                self._ch = client(self.cfg.clickhouse)
            insert_rows(self._ch, f"{db}.slo_probes", PROBE_COLUMNS, self.pending)
            self.pending = []
            at = datetime.now(timezone.utc).replace(microsecond=0)
            live = self.cfg.spark.allowed_lateness_s
            rows = status_rows(
                at,
                STATUS_WINDOW_S,
                evaluate(self._ch, db, at, STATUS_WINDOW_S, live),
                evaluate(self._ch, db, at, BURN_LONG_S, live),
                evaluate(self._ch, db, at, BURN_SHORT_S, live),
            )
            insert_rows(self._ch, f"{db}.slo_status", STATUS_COLUMNS, rows)
            self.alerts.update(rows)
        except Exception as exc:  # noqa: BLE001 - the monitor outlives a ClickHouse outage
            self._ch = None
            self.pending = self.pending[-100_000:]
            log.warning("could not record SLO figures; retrying", extra={"error": str(exc)[:300]})
