"""The speed layer end to end on the real stack: generator -> Apache Kafka -> Spark (spark-submit,
Spark's kafka source) -> ClickHouse rollups + Delta raw events (delta-spark), reconciled exactly
against the manifest."""

import glob
import json
import signal
from collections import Counter

import deltalake
import pyarrow.compute as pc
from support.clickhouse import forget_rows
from support.processes import kill_group
from support.stream import StreamRun, committed_batches
from support.wait import wait_until

from tidemark.stack import services

START = "2026-11-24T10:00:00Z"


def _assert_exact(report, manifest):
    assert report.on_time_published == manifest["on_time_events"]
    assert report.minute_keys_mismatched == [], report.minute_keys_mismatched[:10]
    assert report.rejected_published == report.rejected_expected
    assert report.late_published == report.late_expected
    assert report.users_hours_not_comparable == []  # every tenant-hour's users were compared
    assert report.users_hour_max_error <= 0.02


def _assert_lake_complete(run: StreamRun, manifest):
    raw = deltalake.DeltaTable(run.cfg.lake.events_raw).to_pyarrow_table(
        columns=["event_id", "is_late", "kafka_partition", "kafka_offset"]
    )
    ids = raw.column("event_id")
    assert len(pc.unique(ids)) == manifest["valid_events"]  # every valid event, late ones included
    assert pc.sum(raw.column("is_late")).as_py() >= manifest["late_events"]
    coords = set(zip(raw.column("kafka_partition").to_pylist(), raw.column("kafka_offset").to_pylist(), strict=True))
    assert len(coords) == raw.num_rows  # no record landed twice: no Delta batch committed twice
    dead = deltalake.DeltaTable(run.cfg.lake.events_rejected).to_pyarrow_table(columns=["reason"])
    assert dead.num_rows == sum(manifest["malformed"].values())


def stream_commits(path: str, app: str):
    """``(batch id, actions)`` of every commit the stream ``app`` made, read from the Delta log's commit
    files (an independent reader): the batch is the marker in ``commitInfo.userMetadata``."""
    for commit in sorted(glob.glob(f"{path}/_delta_log/*.json")):
        actions = [json.loads(line) for line in open(commit)]
        info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        marked = json.loads(info["userMetadata"]) if info.get("userMetadata") else {}
        if marked.get("tidemark_stream") == app:
            yield int(marked["batch"]), actions


def batch_commits(path: str, app: str) -> list[int]:
    """The batch id of every commit the stream ``app`` made, one entry per commit."""
    return [batch for batch, _ in stream_commits(path, app)]


def files_per_hour_per_commit(path: str, app: str) -> list[int]:
    """For every commit of the stream ``app``: how many files it added to each event-hour directory."""
    counts = []
    for _, actions in stream_commits(path, app):
        hours = Counter(
            (a["add"]["partitionValues"]["event_date"], a["add"]["partitionValues"]["event_hour"])
            for a in actions
            if "add" in a
        )
        counts += hours.values()
    return counts


def committed_batch(path: str, app: str):
    """The newest micro-batch id the stream committed to the lake (None before its first)."""
    return max(batch_commits(path, app), default=None)


def test_seeded_run_reconciles_exactly(stack, tmp_path):
    run = StreamRun.create(tmp_path, "reconcile")
    manifest = run.generate(
        "--count",
        "30000",
        "--rate",
        "500",
        "--start-time",
        START,
        "--seed",
        "7",
        "--late-fraction",
        "0.03",
        "--duplicate-fraction",
        "0.03",
        "--malformed-fraction",
        "0.02",
    )
    assert manifest["duplicates_sent"] > 0 and manifest["late_events"] > 0
    run.run_available_now("--max-offsets-per-trigger", "8000")

    report = run.report(manifest)
    _assert_exact(report, manifest)
    assert report.batches >= 4  # the backlog really was split across micro-batches
    _assert_lake_complete(run, manifest)
    # The topic's partitions are coalesced for the lake append (TIDEMARK_LAKE_WRITE_TASKS=1): one
    # file per micro-batch and event hour, not one per Kafka partition (each file costs every scan).
    assert run.cfg.kafka.partitions > 1
    per_hour = files_per_hour_per_commit(run.cfg.lake.events_raw, f"tidemark-stream-{run.identity.stream_id}")
    assert per_hour and set(per_hour) == {1}, per_hour


def _max_registered_batch(run: StreamRun, stream_id: str) -> int:
    from tidemark.io.clickhouse import client

    cfg = run.cfg
    return client(cfg.clickhouse).execute(
        f"SELECT max(batch_id) FROM {cfg.clickhouse.database}.stream_batches WHERE stream_id = %(s)s", {"s": stream_id}
    )[0][0]


def test_kill_dash_nine_twice_then_restart_is_exact(stack, tmp_path):
    """Kill 1 lands exactly between a batch's Delta commit and its ClickHouse commit (the replay window);
    kill 2 lands as soon as the restarted stream has committed a batch past the replayed one to
    ClickHouse (Spark may not have recorded it yet: another replay). A final restart drains the rest;
    totals stay exact."""
    run = StreamRun.create(tmp_path, "crash")
    manifest = run.generate(
        "--count",
        "40000",
        "--rate",
        "500",
        "--start-time",
        START,
        "--seed",
        "11",
        "--duplicate-fraction",
        "0.02",
        "--late-fraction",
        "0.02",
        "--malformed-fraction",
        "0.01",
    )

    # Kill 1: poll until events_raw has a batch that ClickHouse has not registered yet, then kill -9.
    proc = run.start_stream("--max-offsets-per-trigger", "2000")
    stream_id = wait_until(lambda: run.identity.stream_id, 120, what="stream identity")
    app = f"tidemark-stream-{stream_id}"
    wait_until(lambda: committed_batches(run.cfg, stream_id) >= 2, 240, "two committed batches", interval_s=1)

    def in_replay_window():
        delta = committed_batch(run.cfg.lake.events_raw, app)
        return delta is not None and delta > _max_registered_batch(run, stream_id)

    wait_until(in_replay_window, 240, interval_s=0.02, what="a batch committed to Delta but not yet to ClickHouse")
    kill_group(proc, signal.SIGKILL)
    mid_flight = committed_batch(run.cfg.lake.events_raw, app)
    assert mid_flight > _max_registered_batch(run, stream_id)

    # Kill 2: once the restart has replayed the batch of kill 1 and committed the next one to ClickHouse.
    proc = run.start_stream("--max-offsets-per-trigger", "2000")
    wait_until(
        lambda: _max_registered_batch(run, stream_id) >= mid_flight + 1,
        240,
        "progress past the replayed batch after the restart",
        interval_s=0.02,
    )
    kill_group(proc, signal.SIGKILL)

    run.run_available_now("--max-offsets-per-trigger", "2000")
    # The replayed batch's append was skipped: every batch was committed to the lake exactly once.
    commits = batch_commits(run.cfg.lake.events_raw, app)
    assert commits.count(mid_flight) == 1 and len(commits) == len(set(commits))
    _assert_exact(run.report(manifest), manifest)
    _assert_lake_complete(run, manifest)


def test_clickhouse_outage_under_load_loses_nothing(stack, tmp_path):
    run = StreamRun.create(tmp_path, "outage")
    first = run.generate("--count", "6000", "--rate", "500", "--start-time", START, "--seed", "21")
    proc = run.start_stream("--max-offsets-per-trigger", "1500")
    try:
        stream_id = wait_until(lambda: run.identity.stream_id, 120, what="stream identity")
        wait_until(lambda: committed_batches(run.cfg, stream_id) >= 1, 240, "first committed batch", interval_s=1)
        clickhouse = next(s for s in services.services(stack) if s.name == "clickhouse")
        clickhouse.down()
        # Load keeps arriving while ClickHouse is away.
        second = run.generate(
            "--count", "6000", "--rate", "500", "--start-time", "2026-11-24T10:00:12Z", "--seed", "22"
        )
        # ClickHouse stays away until the stream has met the outage and backed off to its longest
        # retry delay (10 s, after ~15 s of failed attempts): a long outage, not a blip.
        wait_until(
            lambda: any(e.get("retry_in_s", 0) >= 10 for e in run.log_entries("clickhouse write failed; retrying")),
            240,
            lambda: f"the stream to back off to its longest retry delay; log: {run.log_tail(10)}",
            interval_s=0.5,
        )
        clickhouse.up()
        expected = second["on_time_events"] + first["on_time_events"]
        wait_until(
            lambda: run.report(first).on_time_published == expected,
            300,
            interval_s=2,
            what="the stream to catch up after the outage",
        )
    finally:
        kill_group(proc, signal.SIGTERM)
    report = run.report(first)
    assert report.on_time_published == expected
    rejected = {
        k: first["malformed"].get(k, 0) + second["malformed"].get(k, 0)
        for k in set(first["malformed"]) | set(second["malformed"])
    }
    assert report.rejected_published == {k: v for k, v in rejected.items() if v}


def test_a_stream_restarted_from_a_fresh_checkpoint_does_not_double_totals(stack, tmp_path):
    """A fresh checkpoint replays the whole topic under a new identity (a candidate); once it is
    promoted, serving counts it only, so totals stay exact while both streams' rows exist; the old
    rows are retired."""
    from datetime import datetime, timedelta, timezone

    from tidemark.io.clickhouse import client
    from tidemark.lambda_merge import minute_counts
    from tidemark.stream import identity as stream_identities

    start = datetime(2026, 11, 24, 13, tzinfo=timezone.utc)  # on-time events run up to 5 s behind arrival
    forget_rows(
        stack,
        start,
        start + timedelta(hours=3),  # a kept test database's earlier runs
        {"minute_rollups": "minute", "hour_rollups": "hour", "day_rollups": "hour"},
    )
    run = StreamRun.create(tmp_path, "fresh")
    manifest = run.generate(
        "--count",
        "3000",
        "--rate",
        "50",
        "--start-time",
        "2026-11-24T14:00:00Z",
        "--seed",
        "17",
        "--late-fraction",
        "0",
        "--duplicate-fraction",
        "0",
        "--malformed-fraction",
        "0",
    )
    run.run_available_now()
    cfg = run.cfg
    ch = client(cfg.clickhouse)
    tenants = sorted({r[0] for r in manifest["minute_counts"]})

    def served():
        return sum(r[5] for r in minute_counts(ch, cfg.clickhouse.database, start, start + timedelta(hours=3), tenants))

    assert served() == manifest["on_time_events"]
    first = run.identity
    run.run_available_now("--checkpoint", str(tmp_path / "fresh-checkpoint"), "--candidate")
    assert served() == manifest["on_time_events"]  # counted once, before the promotion too
    assert stream_identities.promote(cfg, str(tmp_path / "fresh-checkpoint")).changed
    second = stream_identities.current(cfg, run.topic)
    assert second.stream_id != first.stream_id
    stream_rows = ch.execute(
        f"SELECT sum(events) FROM {cfg.clickhouse.database}.minute_rollups "
        f"WHERE layer = 'stream' AND tenant_id IN %(t)s AND minute >= %(s)s AND minute < %(e)s",
        {"t": tuple(tenants), "s": start, "e": start + timedelta(hours=3)},  # the window forgotten above
    )[0][0]
    assert stream_rows == 2 * manifest["on_time_events"]  # both identities wrote every event...
    assert served() == manifest["on_time_events"]  # ...and readers count one of them

    assert first.stream_id not in stream_identities.retire(cfg)  # within the grace period: promotion can be undone
    later = datetime.now(timezone.utc) + stream_identities.RETIRE_GRACE + timedelta(seconds=1)
    assert first.stream_id in stream_identities.retire(cfg, now=later)
    wait_until(
        lambda: (
            ch.execute(
                f"SELECT sum(events) FROM {cfg.clickhouse.database}.minute_rollups WHERE layer = 'stream' "
                f"AND tenant_id IN %(t)s AND minute >= %(s)s AND minute < %(e)s",
                {"t": tuple(tenants), "s": start, "e": start + timedelta(hours=3)},
            )[0][0]
            == manifest["on_time_events"]
        ),
        60,
        "the retired identity's rows to be deleted",
        interval_s=0.5,
    )
    assert served() == manifest["on_time_events"]
