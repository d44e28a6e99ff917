"""Driving the embedded Airflow through its REST API (``/api/v2``): the batch layer's runs go
through the scheduler, so they show in the UI with their logs and true durations.

`run_hours` is what ``tidemark batch-run`` (and so the demo) calls:

1. wait until the DAG processor has parsed ``hourly_recompute``;
2. create a backfill (``POST /api/v2/backfills``) over the hours: Airflow 3's own way to run past
   intervals. It creates the runs at once, whatever the DAG's start_date, and the scheduler runs them
   once the DAG is unpaused (``max_active_runs=1``: one Spark driver at a time on two cores; a run's
   start_date is set when it leaves the queue, so the UI's durations are its own);
3. unpause the DAG (``PATCH /api/v2/dags/{id}``), so it also runs on its schedule from then on. The
   scheduler's catchup starts at the DAG's start_date (TIDEMARK_BATCH_START); hours the backfill
   already holds are not run twice (one run per logical date). Refused when the DAG is paused and its
   start_date lies before the first hour: unpausing would then catch up every hour since (an Airflow
   started with another TIDEMARK_BATCH_START, e.g. the default 2026-11-01);
4. wait for the runs, printing a progress line every `PROGRESS_EVERY_S`, and report each run's state,
   start, end and duration; a failed run is named with its failed tasks and their log files.

Nothing here imports Airflow: it is a plain HTTP client (urllib), usable from any process.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from tidemark.config import Settings
from tidemark.errors import TidemarkError
from tidemark.stack.airflow import ADMIN_USER, admin_password, airflow_home, api_url

HOURLY_DAG = "hourly_recompute"
FINISHED = ("success", "failed")
POLL_S = 5.0
PROGRESS_EVERY_S = 30.0
LOCKED_RETRY_S = 60.0  # how long a backfill creation refused by a locked SQLite is asked again


class AirflowAPIError(TidemarkError, RuntimeError):
    """A REST call failed, or a run did not end in success; the message says what to do."""


@dataclass(frozen=True)
class Run:
    """One DAG run as the REST API reports it."""

    dag_id: str
    run_id: str
    hour: datetime  # data_interval_start: the event hour the run recomputes
    state: str
    start_date: datetime | None
    end_date: datetime | None

    @classmethod
    def from_api(cls, body: dict) -> Run:
        def when(key: str) -> datetime | None:
            return datetime.fromisoformat(body[key].replace("Z", "+00:00")) if body.get(key) else None

        return cls(
            body["dag_id"],
            body["dag_run_id"],
            datetime.fromisoformat(body["data_interval_start"].replace("Z", "+00:00")),  # a backfill run has one
            body["state"],
            when("start_date"),
            when("end_date"),
        )

    @property
    def seconds(self) -> float | None:
        if self.start_date is None:
            return None
        end = self.end_date or datetime.now(self.start_date.tzinfo)
        return (end - self.start_date).total_seconds()

    def line(self) -> str:
        took = "" if self.seconds is None else f" in {self.seconds:.0f}s"
        start = self.start_date.strftime("%H:%M:%S") if self.start_date else "-"
        end = self.end_date.strftime("%H:%M:%S") if self.end_date else "-"
        return (
            f"{self.dag_id} {self.hour:%Y-%m-%dT%H:%M}: {self.state}{took} "
            f"(start {start}, end {end}, run {self.run_id})"
        )


class AirflowAPI:
    """A JWT-authenticated client of one Airflow API server (``POST /auth/token``, then ``/api/v2``)."""

    def __init__(self, base_url: str, username: str, password: str, timeout_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.username, self.password, self.timeout_s = username, password, timeout_s
        self._token: str | None = None

    @classmethod
    def embedded(cls, cfg: Settings) -> AirflowAPI:
        """The stack's `airflow standalone` (started with TIDEMARK_AIRFLOW=1 tidemark stack up)."""
        return cls(api_url(cfg), ADMIN_USER, admin_password(cfg))

    def _call(self, method: str, path: str, body: dict | None = None, *, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise AirflowAPIError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        except OSError as exc:
            raise AirflowAPIError(
                f"{method} {path}: Airflow at {self.base_url} does not answer ({exc}); "
                f"start it with TIDEMARK_AIRFLOW=1 tidemark stack up"
            ) from None
        return json.loads(raw) if raw else {}

    def token(self) -> str:
        if self._token is None:
            body = self._call("POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False)
            self._token = body["access_token"]
        return self._token

    def dag(self, dag_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{dag_id}/details")

    def wait_for_dag(self, dag_id: str, timeout_s: float = 180.0) -> dict:
        """The DAG's details once the DAG processor has parsed it (it scans the folder every 30 s)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.dag(dag_id)
            except AirflowAPIError as exc:
                if "HTTP 404" not in str(exc) or time.monotonic() > deadline:
                    raise AirflowAPIError(
                        f"{dag_id} is not known to Airflow after {timeout_s:.0f}s ({exc}); "
                        f"check the DAG folder's import errors in the UI"
                    ) from None
            time.sleep(POLL_S)

    def set_paused(self, dag_id: str, paused: bool) -> dict:
        return self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def create_backfill(self, dag_id: str, first: datetime, last: datetime, *, max_active_runs: int = 1) -> dict | None:
        """A backfill of the runs whose logical date lies in [first, last]; existing successful runs are
        kept, failed ones run again. None when a backfill of this DAG is still running (Airflow allows one).

        On SQLite (``airflow standalone``) Airflow refuses the creation with HTTP 503 "Database is locked"
        while the scheduler holds the write lock; the refusal commits nothing, so it is asked again for up
        to ``LOCKED_RETRY_S``. (A 409 on a retry means an earlier try did land: the backfill runs.)"""
        body = {
            "dag_id": dag_id,
            "from_date": first.isoformat(),
            "to_date": last.isoformat(),
            "max_active_runs": max_active_runs,
            "reprocess_behavior": "failed",
        }
        deadline = time.monotonic() + LOCKED_RETRY_S
        while True:
            try:
                return self._call("POST", "/api/v2/backfills", body)
            except AirflowAPIError as exc:
                if "HTTP 409" in str(exc):
                    return None
                if "HTTP 503" not in str(exc) or "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(POLL_S)

    def runs(self, dag_id: str, first: datetime, last: datetime) -> list[Run]:
        query = urllib.parse.urlencode(
            {
                "logical_date_gte": first.isoformat(),
                "logical_date_lte": last.isoformat(),
                "order_by": "logical_date",
                "limit": 100,
            }
        )
        body = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns?{query}")
        return [Run.from_api(r) for r in body["dag_runs"]]

    def task_instances(self, run: Run) -> list[dict]:
        path = f"/api/v2/dags/{run.dag_id}/dagRuns/{urllib.parse.quote(run.run_id, safe='')}/taskInstances"
        return self._call("GET", path)["task_instances"]


def task_log_file(cfg: Settings, dag_id: str, run_id: str, task: dict) -> Path:
    """Where the task's log lies (Airflow's default log_filename_template under AIRFLOW_HOME/logs)."""
    mapped = f"map_index={task['map_index']}/" if task.get("map_index", -1) >= 0 else ""
    return (
        airflow_home(cfg)
        / "logs"
        / f"dag_id={dag_id}"
        / f"run_id={run_id}"
        / f"task_id={task['task_id']}"
        / f"{mapped}attempt={max(task.get('try_number') or 1, 1)}.log"
    )


def _progress(api: AirflowAPI, runs: list[Run]) -> str:
    parts = []
    for run in runs:
        if run.state in FINISHED:
            parts.append(f"{run.hour:%H:%M} {run.state}")
            continue
        active = [
            t["task_id"]
            for t in api.task_instances(run)
            if t["state"] in ("running", "up_for_reschedule", "up_for_retry", "queued")
        ]
        parts.append(f"{run.hour:%H:%M} {run.state}" + (f" ({', '.join(active)})" if active else ""))
    return "; ".join(parts)


def run_hours(
    hours: list[datetime],
    *,
    cfg: Settings,
    api: AirflowAPI | None = None,
    timeout_s: float = 1800.0,
    say: Callable[[str], None] = print,
) -> list[Run]:
    """Run hourly_recompute for every hour from the first to the last of ``hours`` through the scheduler
    (see the module docstring), unpause it, wait, and return the runs."""
    first, last = min(hours), max(hours)
    return run_backfill(
        HOURLY_DAG,
        first,
        last,
        int((last - first) / timedelta(hours=1)) + 1,
        cfg=cfg,
        api=api,
        timeout_s=timeout_s,
        say=say,
    )


def run_backfill(
    dag_id: str,
    first: datetime,
    last: datetime,
    expected_runs: int,
    *,
    cfg: Settings,
    api: AirflowAPI | None = None,
    timeout_s: float = 1800.0,
    say: Callable[[str], None] = print,
) -> list[Run]:
    """Backfill ``dag_id`` over the logical dates [first, last] (``expected_runs`` runs), unpause it, wait
    for the runs and return them. Raises AirflowAPIError when a run failed or did not finish within
    ``timeout_s``, naming the run and its failed tasks' log files."""
    api = api or AirflowAPI.embedded(cfg)
    started = time.monotonic()

    details = api.wait_for_dag(dag_id)
    dag_start = datetime.fromisoformat(details["start_date"].replace("Z", "+00:00"))
    if details["is_paused"] and details["catchup"] and dag_start < first:
        raise AirflowAPIError(
            f"{dag_id} starts at {dag_start.isoformat()}, before {first.isoformat()}: unpausing it would "
            f"catch up every interval since. Airflow was started with another TIDEMARK_BATCH_START; restart it "
            f"with TIDEMARK_BATCH_START={first.isoformat()} (tidemark stack down, then TIDEMARK_AIRFLOW=1 "
            f"tidemark stack up)"
        )
    backfill = api.create_backfill(dag_id, first, last)
    say(
        f"{dag_id}: "
        + (
            f"backfill {backfill['id']} of {first:%Y-%m-%dT%H:%M}..{last:%Y-%m-%dT%H:%M} created"
            if backfill
            else "a backfill is already running; waiting for its runs"
        )
    )
    if details["is_paused"]:
        api.set_paused(dag_id, False)
        say(f"{dag_id}: unpaused" + (f" (catchup from {dag_start:%Y-%m-%dT%H:%M}Z)" if details["catchup"] else ""))

    deadline = started + timeout_s
    last_said = 0.0
    while True:
        runs = api.runs(dag_id, first, last)
        done = len(runs) >= expected_runs and all(r.state in FINISHED for r in runs)
        now = time.monotonic()
        if done or now - last_said >= PROGRESS_EVERY_S:
            say(f"{dag_id} after {now - started:.0f}s: {_progress(api, runs) or 'no runs yet'}")
            last_said = now
        if done:
            break
        if now > deadline:
            pending = [r.line() for r in runs if r.state not in FINISHED] or ["no runs were created"]
            raise AirflowAPIError(
                f"{dag_id}: not finished after {timeout_s:.0f}s: "
                + "; ".join(pending)
                + f"; see the UI at {api.base_url}"
            )
        time.sleep(POLL_S)

    for run in runs:
        say(run.line())
    failed = [r for r in runs if r.state != "success"]
    if failed:
        reports = []
        for run in failed:
            tasks = [t for t in api.task_instances(run) if t["state"] == "failed"]
            logs = [f"{t['task_id']}: {task_log_file(cfg, run.dag_id, run.run_id, t)}" for t in tasks]
            reports.append(
                f"run {run.run_id} (hour {run.hour:%Y-%m-%dT%H}) {run.state}; failed tasks and logs: "
                + ("; ".join(logs) or "none (see the UI)")
            )
        raise AirflowAPIError(f"{dag_id} failed: " + " | ".join(reports))
    return runs


def unpause(
    dag_ids: list[str],
    *,
    cfg: Settings,
    api: AirflowAPI | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Unpause DAGs so they run on their schedule (with catchup=False each first runs its latest interval)."""
    api = api or AirflowAPI.embedded(cfg)
    for dag_id in dag_ids:
        api.wait_for_dag(dag_id)
        body = api.set_paused(dag_id, False)
        say(f"{dag_id}: unpaused, next run after {body.get('next_dagrun_run_after') or 'its next interval'}")
