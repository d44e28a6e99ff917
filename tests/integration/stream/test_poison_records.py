"""Issue 23, item 1: one record with an implausible time must never stop ingestion for every tenant.

On the real stack (Kafka, spark-submit stream, Delta, ClickHouse). Before the fix, a record with
Kafka timestamp 1970-01-01T00:00:05Z and event_time the epoch passed the contract (its times were
judged only against each other), its freshness (~56 years) overflowed the UInt32 column, the sink
retried the same batch forever, and no event sent after it reached ClickHouse."""

import signal
import uuid
from datetime import datetime, timedelta, timezone

import deltalake
from support.broker import Sent, event, send
from support.processes import kill_group
from support.stream import StreamRun
from support.wait import wait_until

from tidemark.io.clickhouse import client
from tidemark.stream.identity import version_range

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _stream_events(run: StreamRun, tenant: str) -> int:
    cfg, ident = run.cfg, run.identity
    lo, hi = version_range(ident.epoch)
    return (
        client(cfg.clickhouse).execute(
            f"SELECT sum(events) FROM {cfg.clickhouse.database}.minute_rollups "
            f"WHERE layer = 'stream' AND tenant_id = %(t)s AND version BETWEEN %(lo)s AND %(hi)s",
            {"t": tenant, "lo": lo, "hi": hi},
        )[0][0]
        or 0
    )


def test_a_record_with_an_implausible_time_is_dead_lettered_and_ingestion_goes_on(stack, tmp_path):
    run = StreamRun.create(tmp_path, "poison")
    tenant, late_tenant = f"ok-{uuid.uuid4().hex[:8]}", f"late-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    poison = [
        # the scenario: an on-time pair of times, both at the epoch (a producer clock at 0)
        Sent(event("poison", "1970-01-01T00:00:00Z"), EPOCH + timedelta(seconds=5)),
        # the first example: an event_time before 1970 that ClickHouse's DateTime cannot hold
        Sent(event("poison", "1969-12-25T00:00:00Z"), EPOCH + timedelta(days=1)),
    ]
    ordinary = [Sent(event(tenant, now - timedelta(seconds=1), user=f"u{i}"), now) for i in range(40)]
    # late data keeps its meaning: a phone's event from 2 hours ago, sent now, is valid and late
    late = [Sent(event(late_tenant, now - timedelta(hours=2)), now)]
    send(run.cfg, run.topic, poison + ordinary + late)

    proc = run.start_stream("--max-offsets-per-trigger", "1000")
    try:
        wait_until(lambda: run.identity.stream_id, 120, what="stream identity")
        wait_until(
            lambda: _stream_events(run, tenant) == 40,
            300,
            interval_s=2,
            what=lambda: f"the 40 ordinary events sent after the poison record in ClickHouse (log: {run.log_tail(5)})",
        )
    finally:
        kill_group(proc, signal.SIGTERM)

    cfg = run.cfg
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    dead = deltalake.DeltaTable(cfg.lake.events_rejected).to_pyarrow_table(
        columns=["reason", "detail", "kafka_offset", "raw_payload"]
    )
    rows = dead.to_pylist()
    by_offset = {r["kafka_offset"]: (r["reason"], r["detail"]) for r in rows}
    assert by_offset[0][0] == "implausible_kafka_time" and "1970-01-01" in by_offset[0][1], by_offset
    assert by_offset[1][0] == "out_of_range_time", by_offset
    assert len(by_offset) == 2  # nothing else was rejected
    assert {r["raw_payload"] for r in rows} == {p.value for p in poison}  # raw bytes kept
    reasons = dict(
        ch.execute(
            f"SELECT reason, sum(n) FROM {db}.stream_batches ARRAY JOIN rejected_reasons AS reason, "
            f"rejected_counts AS n WHERE stream_id = %(s)s GROUP BY reason",
            {"s": run.identity.stream_id},
        )
    )
    assert reasons == {"implausible_kafka_time": 1, "out_of_range_time": 1}
    # the late event is counted for the batch layer under its own hour, not dead-lettered
    lo, hi = version_range(run.identity.epoch)
    late_hours = ch.execute(
        f"SELECT toUInt32(event_hour), sum(late_events) FROM {db}.late_event_hours "
        f"WHERE tenant_id = %(t)s AND version BETWEEN %(lo)s AND %(hi)s GROUP BY event_hour",
        {"t": late_tenant, "lo": lo, "hi": hi},
    )
    late_hour = (now - timedelta(hours=2)).replace(minute=0, second=0)
    assert late_hours == [(int(late_hour.timestamp()), 1)]
    # nothing out of range reached the registry: every batch's values fit their columns
    (oldest,) = ch.execute(
        f"SELECT min(toUInt32(newest_event_time)) FROM {db}.stream_batches WHERE stream_id = %(s)s AND valid_rows > 0",
        {"s": run.identity.stream_id},
    )[0]
    assert oldest >= int((now - timedelta(hours=3)).timestamp())
