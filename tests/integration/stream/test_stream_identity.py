"""Which stream serves a topic, on the real stack (spark-submit streams, Kafka, ClickHouse, Delta).

* A checkpoint whose Spark state was removed (or rolled back) while its identity stayed would number
  its micro-batches from 0 again under the same stream id and Delta txn app id: the committed-batch
  registry and Delta's txn check would skip every batch up to the old maximum, dropping its events.
* Only an explicit promotion (``tidemark stream-promote``) changes which stream serves a topic; a
  second checkpoint started beside the serving stream never takes over.
"""

import shutil
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import deltalake
import pyarrow.compute as pc
from support.clickhouse import forget_rows
from support.processes import kill_group
from support.stream import StreamRun
from support.wait import wait_until

from tidemark.stream.options import STREAM_NAME

ROLLUP_TIME_COLUMNS = {"minute_rollups": "minute", "hour_rollups": "hour", "day_rollups": "hour"}
NO_FAULTS = ("--late-fraction", "0", "--duplicate-fraction", "0", "--malformed-fraction", "0")


def _served(run: StreamRun, start: datetime, manifests: list[dict]) -> int:
    """Events readers count (the lambda merge every reader uses) for the manifests' tenants, over the
    3 hours from ``start`` (an hour before the traffic: on-time events run up to seconds behind arrival)."""
    from tidemark.io.clickhouse import client
    from tidemark.lambda_merge import minute_counts

    cfg = run.cfg
    tenants = sorted({r[0] for m in manifests for r in m["minute_counts"]})
    rows = minute_counts(client(cfg.clickhouse), cfg.clickhouse.database, start, start + timedelta(hours=3), tenants)
    return sum(r[5] for r in rows)


def _promote(run: StreamRun, target: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tidemark.cli", "stream-promote", target, *args],
        env=run.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _run_to_exit(run: StreamRun, *args: str) -> tuple[int, str]:
    """Run ``tidemark stream --available-now ARGS`` to its end: (exit code, its log)."""
    proc = run.start_stream("--available-now", *args)
    try:
        rc = proc.wait(timeout=600)
    finally:
        kill_group(proc, signal.SIGKILL)
    return rc, run.log_tail(60)


def _current(run: StreamRun) -> str | None:
    from tidemark.stream import identity

    ident = identity.current(run.cfg, run.topic)
    return ident.stream_id if ident else None


def test_a_removed_spark_checkpoint_never_silently_drops_new_events(stack, tmp_path):
    start = datetime(2026, 11, 23, 2, tzinfo=timezone.utc)
    forget_rows(stack, start, start + timedelta(hours=3), ROLLUP_TIME_COLUMNS)
    run = StreamRun.create(tmp_path, "sparkreset")
    gen = ("--rate", "20", "--seed")
    first = run.generate("--count", "1500", "--start-time", "2026-11-23T03:00:00Z", *gen, "41", *NO_FAULTS)
    run.run_available_now("--max-offsets-per-trigger", "300")  # several micro-batches: ids 0..4 at least
    assert _served(run, start, [first]) == first["on_time_events"]
    old = run.identity

    checkpoint = run.workdir / "checkpoints" / STREAM_NAME
    shutil.rmtree(checkpoint / "spark")  # the identity file stays
    second = run.generate("--count", "400", "--start-time", "2026-11-23T03:30:00Z", *gen, "42", *NO_FAULTS)
    rc, log = _run_to_exit(run)
    expected = first["on_time_events"] + second["on_time_events"]
    assert rc != 0, (
        f"the stream restarted over a stale identity: readers count {_served(run, start, [first, second])} "
        f"of {expected} events (the new batches were skipped as already committed)"
    )
    # The refusal names the checkpoint, the batches at stake and what to do.
    assert "refused" in log and str(checkpoint) in log and "stream-promote" in log, log
    assert _current(run) == old.stream_id and _served(run, start, [first, second]) == first["on_time_events"]

    # Doing what it says: the whole directory goes, a new stream replays the topic as a candidate,
    # and its promotion makes it serve. Every event counts, none twice.
    shutil.rmtree(checkpoint)
    run.run_available_now("--candidate")
    fresh = run.identity
    assert fresh.stream_id != old.stream_id and _current(run) == old.stream_id  # not serving before promotion
    done = _promote(run, str(checkpoint))
    assert done.returncode == 0, done.stderr
    assert _current(run) == fresh.stream_id
    assert _served(run, start, [first, second]) == expected
    ids = deltalake.DeltaTable(run.cfg.lake.events_raw).to_pyarrow_table(columns=["event_id"]).column("event_id")
    assert len(pc.unique(ids)) == first["valid_events"] + second["valid_events"]  # no event missing in the lake


def test_a_second_checkpoint_on_the_topic_never_takes_over_the_serving_stream(stack, tmp_path):
    from tidemark.batch.planning import hour_complete
    from tidemark.stream import identity

    hour = datetime(2026, 11, 23, 6, tzinfo=timezone.utc)
    start = hour - timedelta(hours=1)
    forget_rows(stack, start, start + timedelta(hours=3), ROLLUP_TIME_COLUMNS)
    run = StreamRun.create(tmp_path, "takeover")
    gen = ("--rate", "20", "--seed")
    first = run.generate("--count", "1000", "--start-time", "2026-11-23T06:00:00Z", *gen, "51", *NO_FAULTS)
    main = run.start_stream("--max-offsets-per-trigger", "500")
    try:
        wait_until(
            lambda: _served(run, start, [first]) == first["on_time_events"], 300, "the main stream's rows", interval_s=1
        )
        main_id = run.identity.stream_id
        assert _current(run) == main_id  # the first stream on a topic serves with no extra step

        # What an engineer does to debug, beside the running stream.
        stray = tmp_path / "stray"
        rc, log = _run_to_exit(run, "--checkpoint", str(stray), "--starting-offsets", "latest")
        second = run.generate("--count", "500", "--start-time", "2026-11-23T06:20:00Z", *gen, "52", *NO_FAULTS)
        expected = first["on_time_events"] + second["on_time_events"]
        wait_until(
            lambda: _served(run, start, [first, second]) == expected,
            240,
            what="the main stream's new events to count (a second checkpoint took over the topic)",
            interval_s=1,
        )
        assert _current(run) == main_id
        assert rc != 0 and "refused" in log and "--candidate" in log, log

        # Started on purpose as a candidate: it runs and writes, and still nothing changes for readers.
        run.run_available_now("--checkpoint", str(stray), "--starting-offsets", "latest", "--candidate")
        third = run.generate("--count", "300", "--start-time", "2026-11-23T06:40:00Z", *gen, "53", *NO_FAULTS)
        expected += third["on_time_events"]
        wait_until(lambda: _served(run, start, [first, second, third]) == expected, 240, "main's events", interval_s=1)
        assert _current(run) == main_id
        # The hourly sensor follows the serving stream's offsets, not the candidate's. Its progress row
        # lands just after the batch's rows, so the sensor is waited on, not read once.
        state = wait_until(
            lambda: (s := hour_complete(run.cfg, hour, hour + timedelta(hours=3), topic=run.topic)).ready and s,
            120,
            what="the sensor to see the serving stream's progress",
            interval_s=1,
        )
        assert main_id in state.reason, state.reason
        later = datetime.now(timezone.utc) + identity.RETIRE_GRACE + timedelta(seconds=1)
        assert [i.stream_id for i in identity.superseded(run.cfg, now=later) if i.topic == run.topic] == []

        # A candidate that started at 'latest' lacks the topic's earlier events: promoting it is refused.
        refused = _promote(run, str(stray))
        assert refused.returncode != 0 and "latest" in refused.stderr, refused.stderr
        assert _current(run) == main_id

        # A real replacement replays the topic, catches up, and an explicit promotion switches.
        replacement = tmp_path / "replacement"
        run.run_available_now("--checkpoint", str(replacement), "--candidate")
        done = _promote(run, str(replacement), "--reason", "test: replace the main stream")
        assert done.returncode == 0, done.stderr
        new_id = identity.StreamIdentity.load_or_create(str(replacement)).stream_id
        assert _current(run) == new_id
        assert _served(run, start, [first, second, third]) == expected
        state = wait_until(
            lambda: (s := hour_complete(run.cfg, hour, hour + timedelta(hours=3), topic=run.topic)).ready and s,
            120,
            what="the sensor to follow the promoted stream",
            interval_s=1,
        )
        assert new_id in state.reason, state.reason
        # The replaced stream and the passed-over candidate are superseded: retired after the grace period.
        stray_id = identity.StreamIdentity.load_or_create(str(stray)).stream_id
        later = datetime.now(timezone.utc) + identity.RETIRE_GRACE + timedelta(seconds=1)
        replaced = {i.stream_id for i in identity.superseded(run.cfg, now=later) if i.topic == run.topic}
        assert replaced == {main_id, stray_id}
    finally:
        kill_group(main, signal.SIGTERM)
