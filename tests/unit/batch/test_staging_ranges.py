"""Issue 23: the batch layer never sends ClickHouse a minute outside DateTime (pure; no Spark)."""

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from tidemark.batch.staging import StagingError, arrow_columns


def _batch(minute: datetime):
    return pa.RecordBatch.from_pydict(
        {
            "tenant_id": ["t1"],
            "minute": pa.array([minute], pa.timestamp("us", tz="UTC")),
            "country": ["US"],
            "device": ["mobile"],
            "page": ["/"],
            "events": pa.array([1], pa.int64()),
            "user_ids": [["u1"]],
        }
    )


@pytest.mark.parametrize(
    "minute", [datetime(1969, 12, 25, tzinfo=timezone.utc), datetime(2106, 2, 8, tzinfo=timezone.utc)]
)
def test_a_minute_outside_datetime_is_a_staging_error_naming_it(minute):
    with pytest.raises(StagingError, match="outside ClickHouse's DateTime range"):
        arrow_columns(_batch(minute), "batch", 7)


def test_the_first_and_last_storable_minutes_stage():
    for minute in (datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(2106, 2, 7, 6, 28, tzinfo=timezone.utc)):
        assert arrow_columns(_batch(minute), "batch", 7)[3] == [int(minute.timestamp())]
