"""tidemark.quality.params: the placeholder values the suites are run with."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tidemark.contract import SCHEMA_PATH
from tidemark.quality import hour_rollups_params, raw_hour_params, volume_bounds
from tidemark.quality.params import as_utc
from tidemark.tables import EVENTS_RAW, table

HOUR = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)


def test_raw_hour_params():
    params = raw_hour_params(datetime(2026, 11, 25, 3), [10, 20])  # naive: UTC
    assert params["hour_start"] == HOUR and params["hour_end"] == HOUR + timedelta(hours=1)
    contract = json.loads(Path(SCHEMA_PATH).read_text())["properties"]
    assert params["devices"] == contract["device"]["enum"]
    assert params["countries"] == contract["country"]["enum"]
    assert params["raw_columns"] == table(EVENTS_RAW).names
    assert (params["volume_min"], params["volume_max"]) == (7, 30)  # median 15 * [0.5, 2.0]
    assert raw_hour_params(HOUR.astimezone(timezone(timedelta(hours=2))), [])["hour_start"] == HOUR
    with pytest.raises(ValueError, match="start of an hour"):
        raw_hour_params(HOUR + timedelta(minutes=5), [])


def test_volume_band_and_rollup_params():
    assert volume_bounds([]) == (None, None) == volume_bounds([None])
    assert volume_bounds([90, None, 100, 130]) == (50, 200)  # median 100 * [0.5, 2.0]
    assert hour_rollups_params() == {"expected_rows": None}
    assert hour_rollups_params(12.0) == {"expected_rows": 12}
    assert as_utc(datetime(2026, 11, 25, 3)) == HOUR == as_utc(HOUR.astimezone(timezone(timedelta(hours=-5))))
