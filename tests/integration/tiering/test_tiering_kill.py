"""Kill the cold move midway with SIGKILL (the whole spark-submit-like process group: driver, JVM,
Python workers): no raw event is lost, and a re-run completes the move exactly."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta

from support.tiering import INTERVAL_END, events, lake_counts, lake_ids, tiering_cfg, write_lake

from tidemark.config import PROJECT_ROOT
from tidemark.tiering import cold
from tidemark.tiering.options import RunOptions

DAYS = 6
HOURS = [INTERVAL_END - timedelta(days=d) + timedelta(hours=h) for d in range(1, DAYS + 1) for h in (2, 14)]
LAKE_HOT_DAYS, RETENTION_DAYS = 3, 2


def test_killed_cold_move_loses_nothing_and_the_rerun_completes(stack, spark, tmp_path):
    lake = tmp_path / "lake"
    cfg = tiering_cfg(
        stack, lake, stack.clickhouse.database, lake_hot_days=LAKE_HOT_DAYS, retention_days=RETENTION_DAYS
    )
    write_lake(spark, cfg, events(HOURS, 10, seed="kill"), appends=2)
    original, original_ids = lake_counts(spark, cfg.lake.events_raw), lake_ids(spark, cfg.lake.events_raw)
    lake_from = (INTERVAL_END - timedelta(days=LAKE_HOT_DAYS)).date().isoformat()
    to_move = sorted(d for d in original if d < lake_from)
    assert len(to_move) == DAYS - LAKE_HOT_DAYS

    env = {
        **os.environ,
        "TIDEMARK_LAKE_ROOT": str(lake),
        "TIDEMARK_COLD_ROOT": str(lake),
        "TIDEMARK_LAKE_HOT_DAYS": str(LAKE_HOT_DAYS),
        "TIDEMARK_RETENTION_DAYS": str(RETENTION_DAYS),
        "TIDEMARK_LOG_LEVEL": "INFO",
        "TIDEMARK_LOG_FORMAT": "json",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    job = subprocess.Popen(
        [
            sys.executable,
            str(PROJECT_ROOT / "jobs" / "tiering.py"),
            "--interval-end",
            INTERVAL_END.isoformat(),
            "--steps",
            "cold",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    watchdog = threading.Timer(900, lambda: os.killpg(job.pid, signal.SIGKILL))
    watchdog.start()
    killed_at = None
    try:
        for line in job.stderr:
            if '"cold day written"' in line:  # the first day is in the cold table, not yet deleted from hot
                os.killpg(job.pid, signal.SIGKILL)
                killed_at = line
                break
    finally:
        watchdog.cancel()
        job.wait(timeout=60)
    assert killed_at is not None, "the job never reached the cold write"
    assert job.returncode == -signal.SIGKILL

    hot, in_cold = lake_counts(spark, cfg.lake.events_raw), lake_counts(spark, cfg.tiering.cold_path)
    # Nothing lost: every day is whole in the hot lake, or whole in the cold table (or, mid-move, both).
    assert lake_ids(spark, cfg.lake.events_raw) | lake_ids(spark, cfg.tiering.cold_path) == original_ids
    for day, n in original.items():
        assert hot.get(day) == n or in_cold.get(day) == n
        assert hot.get(day, n) == n and in_cold.get(day, n) == n  # never a partial day
    assert in_cold  # the kill came after a cold write

    started = time.monotonic()
    results = cold.run(spark, cfg, RunOptions(INTERVAL_END).boundaries(cfg))
    print(f"re-run after SIGKILL: {time.monotonic() - started:.1f}s, {[r.reason for r in results]}")
    hot, in_cold = lake_counts(spark, cfg.lake.events_raw), lake_counts(spark, cfg.tiering.cold_path)
    assert sorted(in_cold) == to_move and not set(hot) & set(in_cold)
    assert {**hot, **in_cold} == original
    cold_ids = lake_ids(spark, cfg.tiering.cold_path)
    assert len(cold_ids) == sum(in_cold.values())  # no day written twice
    assert cold_ids | lake_ids(spark, cfg.lake.events_raw) == original_ids
    assert date.fromisoformat(min(hot)) >= date.fromisoformat(lake_from)
