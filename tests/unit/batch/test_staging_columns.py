"""Pure helpers of tidemark.batch.staging (no Spark, no ClickHouse)."""

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from tidemark.batch.staging import (
    INSERT_ROWS,
    StagingError,
    _chunks,
    arrow_columns,
    insert_sql,
    worker_message,
)
from tidemark.tables import ROLLUP_INPUT_COLUMNS


def _batch(n=2):
    minute = datetime(2026, 1, 5, 10, 7, tzinfo=timezone.utc)
    return pa.RecordBatch.from_pydict(
        {
            "tenant_id": ["t1", "t2"][:n],
            "minute": pa.array([minute] * n, pa.timestamp("us", tz="UTC")),
            "country": ["US", "DE"][:n],
            "device": ["mobile", "desktop"][:n],
            "page": ["/", "/a"][:n],
            "events": pa.array([3, 1][:n], pa.int64()),
            "user_ids": [["u1", "u2"], ["u3"]][:n],
        }
    )


def test_columns_follow_rollup_input_order_with_minute_as_epoch_seconds():
    cols = arrow_columns(_batch(), "batch", 42)
    assert len(cols) == len(ROLLUP_INPUT_COLUMNS)
    named = dict(zip(ROLLUP_INPUT_COLUMNS, cols, strict=True))
    epoch = int(datetime(2026, 1, 5, 10, 7, tzinfo=timezone.utc).timestamp())
    assert named == {
        "layer": ["batch", "batch"],
        "version": [42, 42],
        "tenant_id": ["t1", "t2"],
        "minute": [epoch, epoch],
        "country": ["US", "DE"],
        "device": ["mobile", "desktop"],
        "page": ["/", "/a"],
        "events": [3, 1],
        "user_ids": [["u1", "u2"], ["u3"]],
    }


def test_columns_accept_a_table_of_several_batches():
    cols = arrow_columns(pa.Table.from_batches([_batch(), _batch(1)]), "stream", 7)
    assert cols[2] == ["t1", "t2", "t1"] and cols[8] == [["u1", "u2"], ["u3"], ["u1", "u2"]]


def test_a_missing_column_is_named():
    with pytest.raises(StagingError, match="user_ids"):
        arrow_columns(_batch().drop_columns(["user_ids"]), "batch", 1)


def test_chunks_regroup_batches_without_splitting_or_losing_rows():
    batches = [_batch(2), _batch(1), _batch(2), _batch(2)]
    groups = list(_chunks(iter(batches), rows=3))
    assert [sum(b.num_rows for b in g) for g in groups] == [3, 4]
    assert list(_chunks(iter([]), INSERT_ROWS)) == []


def test_insert_sql_passes_values_as_parameters():
    sql = insert_sql("db.rollup_input")
    assert sql == f"INSERT INTO db.rollup_input ({', '.join(ROLLUP_INPUT_COLUMNS)}) VALUES"


def test_worker_message_is_found_in_a_long_spark_error():
    spark_text = (
        "org.apache.spark.api.python.PythonException: Traceback ...\n"
        "tidemark.batch.staging.StagingError: tidemark-staging: inserting version 5 into db.rollup_input "
        "at h:1, partition 3 failed after 0 rows: NetworkError: refused. Remove version 5\n"
        "\tat org.apache.spark..."
    )
    assert worker_message(Exception(spark_text)).startswith(
        "inserting version 5 into db.rollup_input at h:1, partition 3"
    )
    assert worker_message(Exception("something else")) is None


def test_layer_and_version_are_checked_before_any_work():
    from tidemark.batch.staging import stage_rollups
    from tidemark.config import load

    cfg = load().clickhouse
    with pytest.raises(ValueError, match="layer"):
        stage_rollups(None, cfg, 1, layer="speed")
    with pytest.raises(ValueError, match="UInt64"):
        stage_rollups(None, cfg, 0)
