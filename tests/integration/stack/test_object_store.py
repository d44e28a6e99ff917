"""The lake, the checkpoints and the cold tier on s3a:// in the embedded S3Proxy (a real S3 API server,
filesystem backend): the stream, the Delta-log reader behind dirty hours, the recompute and tiering.

One stream run (spark-submit, --available-now) lands one hour of generator traffic; the tests then
read it in order: reconcile the stream, index the Delta log, recompute and publish the hour through
`tidemark recompute`, add a late commit (the hour turns dirty), and move the day to the cold tier
with `tidemark tiering run` (cold + delta steps: MERGE, OPTIMIZE, checkpoint, VACUUM on s3a).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import datetime, timezone

import pytest
from support.clickhouse import expected_minute_counts, forget_rows, served_minute_counts
from support.object_store import S3StreamRun, stored_files
from support.processes import kill_group

from tidemark import object_store
from tidemark.batch import lake_log, planning, registry
from tidemark.batch.lake import delta_files
from tidemark.hours import HOUR
from tidemark.stack.object_store import ObjectStore

pytestmark = pytest.mark.objectstore

HOUR_9 = datetime(2026, 11, 17, 9, tzinfo=timezone.utc)  # a day no other test uses (the cluster tests: 11-14)


@pytest.fixture(scope="module")
def s3_stream(stack, tmp_path_factory):
    forget_rows(
        stack,
        HOUR_9 - 9 * HOUR,
        HOUR_9 + 15 * HOUR,
        {
            "minute_rollups": "minute",
            "hour_rollups": "hour",
            "late_event_hours": "event_hour",
            "published_hours": "hour",
            "lake_commits": "event_hour",
        },
    )
    run = S3StreamRun.create(tmp_path_factory.mktemp("s3lake"), "s3lake")
    cfg = run.cfg
    store = ObjectStore(cfg)
    store.up()  # what `tidemark stack up` does when a root is s3a://: S3Proxy, then the roots' buckets
    try:
        manifest = run.generate(
            "--count", "2000", "--rate", "2", "--start-time", "2026-11-17T09:00:10Z", "--seed", "11",
            "--late-fraction", "0", "--duplicate-fraction", "0.02", "--malformed-fraction", "0.01",
        )  # fmt: skip
        run.run_available_now("--max-offsets-per-trigger", "1200")  # two micro-batches
        yield run, manifest
    finally:
        if os.environ.get("TIDEMARK_KEEP_STACK") != "1":
            store.down()


def _cli(run, *args, extra_env=None, timeout=900, ok=(0,)) -> tuple[int, str, str]:
    """Run `tidemark ARGS` in its own process group; on a timeout the whole group (spark-submit's
    JVM included) is killed, so no job outlives the test."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidemark.cli", *args],
        env={**run.env, "TIDEMARK_LOG_LEVEL": "WARNING", **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc, signal.SIGKILL)
    assert proc.returncode in ok, f"tidemark {' '.join(args)} exited {proc.returncode}:\n{err[-4000:]}"
    return proc.returncode, out, err


def test_the_stream_lands_events_and_checkpoints_on_s3a_and_reconciles(s3_stream):
    run, manifest = s3_stream
    cfg = run.cfg
    report = run.report(manifest)
    assert report.exact, "\n".join(report.lines())
    # Objects in the store's backend, nothing on the local disk: the lake and the checkpoint are s3a://.
    assert any(p.suffix == ".parquet" for p in stored_files(cfg, cfg.lake.events_raw))
    assert stored_files(cfg, f"{cfg.spark.checkpoint_root}/stream_events/spark/commits")
    assert stored_files(cfg, f"{cfg.spark.checkpoint_root}/stream_events/tidemark_stream.json")
    assert not (run.workdir / "lake").exists() and not (run.workdir / "checkpoints").exists()
    assert object_store.is_delta_table(cfg.object_store, cfg.lake.events_rejected)


def test_the_delta_log_reader_indexes_the_s3a_table(s3_stream):
    run, manifest = s3_stream
    cfg = run.cfg
    versions = lake_log.commit_versions(cfg.lake.events_raw, cfg.object_store)
    assert versions and versions == list(range(versions[0], versions[-1] + 1))
    lake_log.index(cfg)
    assert lake_log.indexed_version(cfg, "events_raw") == versions[-1]
    hours = lake_log.hours_with_data(cfg, HOUR_9 - 9 * HOUR, HOUR_9 + 15 * HOUR)
    assert HOUR_9 in hours
    files = delta_files(cfg.lake.events_raw, cfg.object_store)
    assert sum(files.column("num_records").to_pylist()) >= sum(expected_minute_counts([manifest], HOUR_9).values())


def test_a_recompute_reads_s3a_publishes_and_a_late_commit_makes_the_hour_dirty(s3_stream):
    run, manifest = s3_stream
    cfg = run.cfg
    _cli(run, "recompute", "--hour", HOUR_9.strftime("%Y-%m-%dT%H"), "--run-id", f"s3-{uuid.uuid4().hex[:6]}")
    published = registry.current(cfg, [HOUR_9])[HOUR_9]
    assert served_minute_counts(cfg, HOUR_9) == expected_minute_counts([manifest], HOUR_9)
    assert HOUR_9 not in planning.dirty_hours(cfg, HOUR_9, HOUR_9 + HOUR)

    # A late commit to the hour (delta-rs, as any writer): the s3a log reader sees the hour dirty.
    import pyarrow as pa
    from deltalake import write_deltalake

    table = object_store.delta_table(cfg.object_store, cfg.lake.events_raw)
    one = pa.table(table.to_pyarrow_dataset().head(1))
    write_deltalake(
        object_store.delta_uri(cfg.lake.events_raw),
        one,
        mode="append",
        partition_by=["event_date", "event_hour"],
        storage_options=object_store.storage_options(cfg.object_store, cfg.lake.events_raw),
    )
    assert HOUR_9 in planning.dirty_hours(cfg, HOUR_9, HOUR_9 + HOUR)
    assert published.delta_version < lake_log.indexed_version(cfg, "events_raw")


def _day_rows(files, day: str) -> int:
    dates, rows = files.column("partition.event_date").to_pylist(), files.column("num_records").to_pylist()
    return sum(n for d, n in zip(dates, rows, strict=True) if str(d) == day)


def test_tiering_moves_the_day_to_a_cold_table_on_s3a_and_vacuums(s3_stream):
    run, _manifest = s3_stream
    cfg = run.cfg
    day = HOUR_9.date().isoformat()
    hot_rows = _day_rows(delta_files(cfg.lake.events_raw, cfg.object_store), day)
    # Days older than 11 days leave the hot lake (the generator's day is weeks old). Exit 1 means
    # alerts (e.g. small files elsewhere in the test database), not a failed step.
    short = {"TIDEMARK_RETENTION_DAYS": "10", "TIDEMARK_LAKE_HOT_DAYS": "11"}
    args = ("tiering", "run", "--steps", "cold,delta", "--json", "--run-id", "s3-tiering")
    _rc, out, _err = _cli(run, *args, extra_env=short, ok=(0, 1))
    report = json.loads(out.strip().splitlines()[-1])
    assert report["steps"]["cold"]["days_moved"] >= 1, report
    assert cfg.tiering.cold_path.startswith("s3a://")
    cold_rows = _day_rows(delta_files(cfg.tiering.cold_path, cfg.object_store), day)
    assert 0 < cold_rows <= hot_rows  # the cold day is deduplicated by event key
    assert _day_rows(delta_files(cfg.lake.events_raw, cfg.object_store), day) == 0
    assert any(p.suffix == ".parquet" for p in stored_files(cfg, cfg.tiering.cold_path))
