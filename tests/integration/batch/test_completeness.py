"""The hourly sensor's condition on a real broker: the stream must have committed, on every
partition, the offsets that were current at the hour's end + the allowed lateness (Kafka's
offsets-by-timestamp). Event time plays no part."""

import json
import uuid
from datetime import datetime, timedelta, timezone

from tidemark.batch.planning import hour_complete
from tidemark.io.clickhouse import client, insert_rows
from tidemark.io.kafka_admin import ensure_topic, producer
from tidemark.stream import identity as stream_identities
from tidemark.stream.metrics import PROGRESS_COLUMNS

HOUR = datetime(2026, 11, 13, 10, tzinfo=timezone.utc)


def _committed(cfg, stream_id, batch_id, offsets):
    """The stream's progress row after micro-batch ``batch_id``: the offsets it has committed."""
    insert_rows(
        client(cfg.clickhouse),
        f"{cfg.clickhouse.database}.stream_progress",
        PROGRESS_COLUMNS,
        [
            (
                stream_id,
                batch_id,
                datetime.now(timezone.utc),
                0,
                0.0,
                0.0,
                0,
                0,
                "",
                json.dumps({str(p): o for p, o in offsets.items()}),
                0,
            )
        ],
    )


def test_an_hour_is_complete_only_when_every_partition_passed_its_cutoff(stack):
    cfg = stack
    topic = f"complete_{uuid.uuid4().hex[:8]}"
    ensure_topic(cfg.kafka.bootstrap_servers, topic, 2)
    cutoff = HOUR + timedelta(hours=1, seconds=cfg.spark.allowed_lateness_s)
    ms = lambda t: int(t.timestamp() * 1000)  # noqa: E731
    p = producer(cfg.kafka.bootstrap_servers)
    # Partition 0: three records that arrived before the cutoff (one carries an event of the NEXT hour:
    # a fast client clock), then two after it. Partition 1: one record before the cutoff.
    for offset_ts in (
        cutoff - timedelta(minutes=40),
        cutoff - timedelta(minutes=5),
        cutoff - timedelta(seconds=1),
        cutoff + timedelta(seconds=1),
        cutoff + timedelta(minutes=3),
    ):
        p.send(topic, b"{}", partition=0, timestamp_ms=ms(offset_ts))
    p.send(topic, b"{}", partition=1, timestamp_ms=ms(cutoff - timedelta(minutes=20)))
    p.flush()
    p.close()
    later = cutoff + timedelta(hours=1)

    state = hour_complete(cfg, HOUR, cutoff - timedelta(seconds=1), topic=topic)
    assert not state.ready and "waiting for" in state.reason  # the clock has not reached the cutoff
    state = hour_complete(cfg, HOUR, later, topic=topic)
    assert not state.ready and "no stream serves" in state.reason

    stream_id = f"complete-{uuid.uuid4().hex[:8]}"
    stream_identities.register(cfg, stream_id, 7, topic, "/tmp/nowhere", datetime.now(timezone.utc))
    ch = client(cfg.clickhouse)
    stream_identities.record_promotion(ch, cfg.clickhouse.database, topic, stream_id, 7, by="test", reason="first")
    _committed(cfg, stream_id, 0, {0: 2, 1: 1})
    state = hour_complete(cfg, HOUR, later, topic=topic)
    assert not state.ready and state.behind == {0: 1}  # the record at cutoff - 1 s is not committed yet
    _committed(cfg, stream_id, 1, {0: 3, 1: 0})
    state = hour_complete(cfg, HOUR, later, topic=topic)
    assert not state.ready and state.behind == {1: 1}  # every partition counts
    _committed(cfg, stream_id, 2, {0: 3, 1: 1})
    state = hour_complete(cfg, HOUR, later, topic=topic)
    assert state.ready, state.reason  # records after the cutoff need not be committed

    # A newer checkpoint on the topic is a candidate: the sensor follows it only once it is promoted.
    fresh = f"complete-fresh-{uuid.uuid4().hex[:8]}"
    stream_identities.register(cfg, fresh, 8, topic, "/tmp/nowhere2", datetime.now(timezone.utc))
    assert hour_complete(cfg, HOUR, later, topic=topic).ready
    stream_identities.record_promotion(ch, cfg.clickhouse.database, topic, fresh, 8, by="test", reason="replace")
    assert not hour_complete(cfg, HOUR, later, topic=topic).ready
