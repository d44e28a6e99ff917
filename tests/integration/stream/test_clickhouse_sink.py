"""The exactly-once protocol of the stream's ClickHouse writer, crash points simulated directly."""

import uuid
from datetime import datetime, timezone

from tidemark.io.clickhouse import insert_rows
from tidemark.stream.sink import BatchMetrics, RollupSink, stream_version
from tidemark.tables import ROLLUP_INPUT_COLUMNS

MINUTE = datetime(2026, 11, 20, 8, 15, tzinfo=timezone.utc)


def _rollups(tenant):
    return [(tenant, MINUTE, "US", "mobile", "/a", 3, ["u1", "u2"]), (tenant, MINUTE, "DE", "desktop", "/b", 2, ["u3"])]


def _totals(ch, db, tenant):
    minute = ch.execute(
        f"SELECT sum(events), uniqCombinedMerge(users) FROM {db}.minute_rollups WHERE tenant_id = %(t)s", {"t": tenant}
    )[0]
    hour = ch.execute(
        f"SELECT sum(events) FROM {db}.hour_rollups WHERE tenant_id = %(t)s AND dimension = 'all'", {"t": tenant}
    )[0][0]
    return minute + (hour,)


def test_replay_after_partial_write_counts_once(stack, clickhouse):
    db = stack.clickhouse.database
    tenant = f"sink-{uuid.uuid4().hex[:8]}"
    stream_id, epoch, batch_id = uuid.uuid4().hex, 4242, 7
    version = stream_version(epoch, batch_id)
    # A crashed attempt got the rollups in but died before its registry row.
    insert_rows(
        clickhouse, f"{db}.rollup_input", ROLLUP_INPUT_COLUMNS, [("stream", version, *r) for r in _rollups(tenant)]
    )
    assert _totals(clickhouse, db, tenant) == (5, 3, 5)

    sink = RollupSink(stack.clickhouse, stream_id)  # a fresh process: no clean slate yet
    late = [(tenant, MINUTE.replace(minute=0), 4, MINUTE)]
    assert sink.write_batch(BatchMetrics(stream_id, batch_id, version, valid_rows=5), _rollups(tenant), late) is True
    assert _totals(clickhouse, db, tenant) == (5, 3, 5)
    assert (
        clickhouse.execute(
            f"SELECT sum(late_events) FROM {db}.late_event_hours WHERE tenant_id = %(t)s", {"t": tenant}
        )[0][0]
        == 4
    )

    # A replay of the committed batch is skipped entirely.
    again = RollupSink(stack.clickhouse, stream_id)
    assert again.write_batch(BatchMetrics(stream_id, batch_id, version, valid_rows=5), _rollups(tenant), late) is False
    assert _totals(clickhouse, db, tenant) == (5, 3, 5)
    assert (
        clickhouse.execute(f"SELECT count() FROM {db}.stream_batches WHERE stream_id = %(s)s", {"s": stream_id})[0][0]
        == 1
    )


def test_next_batch_in_same_process_skips_the_partial_check(stack, clickhouse):
    db = stack.clickhouse.database
    tenant = f"sink-{uuid.uuid4().hex[:8]}"
    stream_id = uuid.uuid4().hex
    sink = RollupSink(stack.clickhouse, stream_id)
    for batch_id in range(3):
        v = stream_version(99, batch_id)
        assert sink.write_batch(BatchMetrics(stream_id, batch_id, v), _rollups(tenant), [])
    assert _totals(clickhouse, db, tenant)[0] == 15
    assert sink._clean_slate is True


class _LostAck(RollupSink):
    """The registry insert reaches ClickHouse, then the connection drops before the client hears back."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lost = 0

    def _register(self, ch, metrics):
        super()._register(ch, metrics)
        if not self.lost:
            self.lost += 1
            raise ConnectionResetError("injected: acknowledgement lost after the registry insert")


def test_lost_acknowledgement_of_the_registry_insert_loses_nothing_and_doubles_nothing(stack, clickhouse):
    db = stack.clickhouse.database
    tenant = f"sink-{uuid.uuid4().hex[:8]}"
    stream_id, batch_id = uuid.uuid4().hex, 3
    version = stream_version(777, batch_id)
    sink = _LostAck(stack.clickhouse, stream_id)
    # The retry sees the batch committed: it neither deletes nor rewrites the rows, nor registers again.
    assert sink.write_batch(BatchMetrics(stream_id, batch_id, version, valid_rows=5), _rollups(tenant), []) is False
    assert sink.lost == 1
    assert _totals(clickhouse, db, tenant) == (5, 3, 5)

    # Crash and restart: the replayed batch is recognised as committed.
    restarted = RollupSink(stack.clickhouse, stream_id)
    assert (
        restarted.write_batch(BatchMetrics(stream_id, batch_id, version, valid_rows=5), _rollups(tenant), []) is False
    )
    assert _totals(clickhouse, db, tenant) == (5, 3, 5)
    assert (
        clickhouse.execute(f"SELECT count() FROM {db}.stream_batches WHERE stream_id = %(s)s", {"s": stream_id})[0][0]
        == 1
    )
    # And the next batch goes on normally.
    assert (
        restarted.write_batch(
            BatchMetrics(stream_id, batch_id + 1, stream_version(777, batch_id + 1)), _rollups(tenant), []
        )
        is True
    )
    assert _totals(clickhouse, db, tenant)[0] == 10
