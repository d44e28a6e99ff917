"""The SLOs end to end on the real stack: the API records its query latency (flushed to ClickHouse
by its background thread), the SLO monitor probes the API (up) and a dead port (down), a
reconciliation and a stream batch's freshness histogram are recorded the way the pipeline records
them; then `tidemark slo report` prints the four SLOs and writes the PNG, and /metrics and /slo
serve the monitor's status."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone

from support.ports import free_port
from support.serving import SERVER_ENV, tenant_name
from support.wait import wait_until

from tidemark.config import PROJECT_ROOT
from tidemark.io.clickhouse import client, insert_rows
from tidemark.slo.maths import OBJECTIVES
from tidemark.slo.monitor import Monitor
from tidemark.slo.status import record_reconciliation
from tidemark.stream.metrics import health
from tidemark.stream.sink import BATCH_COLUMNS


def _latency_rows(ch, db: str, since: datetime, span: str) -> int:
    return ch.execute(
        f"SELECT sum(requests) FROM {db}.slo_api_latency WHERE minute >= %(t)s "
        f"AND route = '/api/v1/totals' AND span = %(s)s",
        {"t": since, "s": span},
    )[0][0]


def test_slo_report_prints_the_four_slos_and_draws_the_chart(api, serving_cfg, tmp_path):
    cfg = serving_cfg
    db = cfg.clickhouse.database
    ch = client(cfg.clickhouse)
    started = datetime.now(timezone.utc).replace(second=0, microsecond=0)  # the recorder's minute grain

    # API latency: real requests of both spans; the API flushes them in the background
    key = api.key(tenant_name("slo"))
    for range_ in ("24h", "7d", "90d"):
        assert api.get("/api/v1/totals", key, range=range_).status_code == 200
    wait_until(
        lambda: _latency_rows(ch, db, started, "7d") >= 2 and _latency_rows(ch, db, started, "90d") >= 1,
        60,
        "the API to flush its latency histograms to ClickHouse",
        interval_s=0.5,
    )

    # freshness: a committed batch of the serving tests' loader (conftest.py), with its histogram: 100
    # live events and 400 replayed two hours after their event time, which the SLO must leave out
    now = datetime.now(timezone.utc)
    batch = ("serving-tests", 999_999_999, 999_999_999, now, 0, 0, 0, [], [], 0, 0, now, 1.0, 7200.0, 7200.0)
    histogram = ([1000, 2000, 70000, 7_200_000], [60, 39, 1, 400])
    insert_rows(ch, f"{db}.stream_batches", BATCH_COLUMNS, [(*batch, *histogram)])
    recent = health(cfg)  # `tidemark status`: live freshness over the last 15 minutes, the replay apart
    assert recent["stream_id"] == "serving-tests" and recent["freshness_p95_s"] == 2.0, recent
    assert recent["backfill_events"] >= 400 and recent["backfill_age_max_s"] == 7200.0, recent
    # ingest accuracy: what `tidemark reconcile` records
    record_reconciliation(ch, db, f"slo-test-{os.getpid()}", 10_000, 10_000)

    # availability: the monitor sees the API up and a dead one down, then evaluates and alerts
    up = Monitor(cfg, api.url + "/health")
    assert up.probe_once() == 1 and up.probe_once() == 1
    down = Monitor(cfg, f"http://127.0.0.1:{free_port()}/health")
    assert down.probe_once() == 0
    up.pending += down.pending
    up.write()
    assert not up.pending, "the probes were written"
    assert "availability" in up.alerts.burning  # 1 of 3 probes failed in the last hour and 5 minutes

    chart = tmp_path / "slo.png"
    env = {**os.environ, **SERVER_ENV, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tidemark.cli", "slo", "report", "--window", "2h", "--chart", str(chart)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.split()}
    for objective in OBJECTIVES:
        assert objective.name in lines, f"{objective.name} missing from the report:\n{done.stdout}"
        assert "NO DATA" not in lines[objective.name], lines[objective.name]
    assert "%" in lines["availability"] and "MISSED" in lines["availability"]
    assert "7200" not in lines["freshness_p95"], "the replayed events are not in the freshness SLO"
    replayed = next(line for line in done.stdout.splitlines() if "backfilled or replayed" in line)
    assert int(replayed.split(";")[1].split()[0]) >= 400, replayed
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000

    # /slo and /metrics: the monitor's status, once the API's background thread has read it
    evaluated = wait_until(
        lambda: [s for s in api.get("/slo").json()["slos"] if s["evaluated_at"] >= int(started.timestamp())],
        60,
        "the API to pick up the monitor's status",
        interval_s=0.5,
    )
    assert [s["slo"] for s in evaluated] == [o.name for o in OBJECTIVES]
    assert next(s for s in evaluated if s["slo"] == "availability")["burning"]
    metrics = api.metrics()
    assert metrics['tidemark_slo_burning{slo="availability"}'] == 1.0
    assert metrics['tidemark_slo_target{slo="query_90d_p99"}'] == 0.99
    assert 0.0 <= metrics['tidemark_slo_value{slo="events_ingested"}'] <= 1.0
    assert time.time() - metrics["tidemark_slo_evaluated_at"] < 300
