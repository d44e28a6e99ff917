"""The stream's Delta appends land once per micro-batch: a replayed first batch is skipped by the
marker in its commit, or by Delta's transaction id for batches written before markers existed."""

from datetime import datetime, timezone

import deltalake

from tidemark.stream.lake_append import append, last_marked_batch, marked_batch, marker
from tidemark.tables import EVENTS_REJECTED, ensure_delta_table, table

APP = "tidemark-stream-test"


def _rows(spark, n: int, offset: int):
    """``n`` dead letters at Kafka offsets ``offset``.. (events_rejected's canonical schema)."""
    at = datetime(2026, 12, 7, tzinfo=timezone.utc)
    rows = [(None, None, "not_json", "empty message", "t", 0, offset + i, at, at, 1, at.date()) for i in range(n)]
    return spark.createDataFrame(rows, table(EVENTS_REJECTED).spark())


def _count(path: str) -> int:
    return deltalake.DeltaTable(path).to_pyarrow_table(columns=["kafka_offset"]).num_rows


def test_a_replayed_first_batch_is_appended_once(spark, tmp_path):
    path = str(tmp_path / "rejected")
    ensure_delta_table(spark, EVENTS_REJECTED, path)
    parts = table(EVENTS_REJECTED).partition_by
    assert append(_rows(spark, 3, 0), path, parts, app_id=APP, batch_id=0, may_be_replay=True)
    assert append(_rows(spark, 2, 3), path, parts, app_id=APP, batch_id=1, may_be_replay=False)
    # Another writer commits in between (tiering's merges do); the marker is still found.
    assert append(_rows(spark, 1, 9), path, parts, app_id="someone-else", batch_id=7, may_be_replay=False)
    assert last_marked_batch(spark, path, APP) == 1

    # A restart replays batch 1: skipped, nothing doubled; batch 2 after it lands.
    assert not append(_rows(spark, 2, 3), path, parts, app_id=APP, batch_id=1, may_be_replay=True)
    assert append(_rows(spark, 4, 5), path, parts, app_id=APP, batch_id=2, may_be_replay=False)
    assert _count(path) == 3 + 2 + 1 + 4


def test_batches_written_with_transaction_ids_only_are_not_appended_again(spark, tmp_path):
    """A table an earlier release wrote (Delta's txnAppId/txnVersion, no marker) stays exactly-once."""
    path = str(tmp_path / "rejected")
    ensure_delta_table(spark, EVENTS_REJECTED, path)
    parts = table(EVENTS_REJECTED).partition_by
    (
        _rows(spark, 3, 0)
        .write.format("delta")
        .mode("append")
        .partitionBy(*parts)
        .option("txnAppId", APP)
        .option("txnVersion", "5")
        .save(path)
    )
    append(_rows(spark, 3, 0), path, parts, app_id=APP, batch_id=5, may_be_replay=True)
    assert _count(path) == 3
    assert append(_rows(spark, 1, 3), path, parts, app_id=APP, batch_id=6, may_be_replay=True)
    assert _count(path) == 4


def test_markers_name_their_application():
    assert marked_batch(marker(APP, 12), APP) == 12
    assert marked_batch(marker(APP, 12), "other") is None
    assert marked_batch("not json", APP) is None
    assert marked_batch('{"tidemark_stream": "tidemark-stream-test", "batch": "12"}', APP) is None
    assert marked_batch(None, APP) is None
