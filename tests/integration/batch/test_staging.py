"""stage_rollups against a real Spark session and the embedded ClickHouse: rows go in from the
executors, several partitions at once, and the versioned totals readers see are exact."""

import dataclasses
import random
import socket
from datetime import datetime, timedelta, timezone

import pytest

from tidemark.batch.publication import remove_version
from tidemark.batch.staging import StagingError, stage_rollups
from tidemark.transforms.rollups import minute_rollups

HOUR = datetime(2026, 1, 5, 10, tzinfo=timezone.utc)
SCHEMA = (
    "event_id STRING, tenant_id STRING, event_time TIMESTAMP, user_id STRING, country STRING, "
    "device STRING, page STRING"
)


def _events():
    rng = random.Random(7)
    rows = []
    for i in range(3000):
        tenant = f"t{i % 3}"
        rows.append(
            (
                f"e{i}",
                tenant,
                HOUR + timedelta(seconds=rng.randrange(3600)),
                f"u{rng.randrange(40)}",
                rng.choice(["US", "DE"]),
                rng.choice(["mobile", "desktop"]),
                f"/p{rng.randrange(5)}",
            )
        )
    return rows


@pytest.fixture
def version(stack):
    v = random.randrange(1, 2**40)
    yield v
    remove_version(stack, HOUR, v)


def test_rollups_staged_from_several_partitions_give_exact_totals(spark, stack, clickhouse, version):
    rows = _events()
    rollups = minute_rollups(spark.createDataFrame(rows, SCHEMA)).repartition(4)
    assert rollups.rdd.getNumPartitions() == 4
    expected_rows = rollups.count()

    assert stage_rollups(rollups, stack.clickhouse, version) == expected_rows

    db, p = stack.clickhouse.database, {"v": version}
    events = {t: 0 for t in ("t0", "t1", "t2")}
    users = {t: set() for t in events}
    for _e, tenant, _t, user, *_ in rows:
        events[tenant] += 1
        users[tenant].add(user)
    minute = dict(
        clickhouse.execute(
            f"SELECT tenant_id, sum(events) FROM {db}.minute_rollups WHERE layer = 'batch' AND version = %(v)s "
            f"GROUP BY tenant_id",
            p,
        )
    )
    assert minute == events
    ((keys,),) = clickhouse.execute(
        f"SELECT count() FROM (SELECT tenant_id, minute, country, device, page FROM {db}.minute_rollups "
        f"WHERE layer = 'batch' AND version = %(v)s GROUP BY tenant_id, minute, country, device, page)",
        p,
    )
    assert keys == expected_rows
    hour = {
        t: (e, u)
        for t, e, u in clickhouse.execute(
            f"SELECT tenant_id, sum(events), uniqCombinedMerge(users) FROM {db}.hour_rollups WHERE dimension = 'all' "
            f"AND layer = 'batch' AND version = %(v)s AND hour = toDateTime(%(h)s) GROUP BY tenant_id",
            {**p, "h": int(HOUR.timestamp())},
        )
    }
    assert hour == {t: (events[t], len(users[t])) for t in events}  # uniqCombined is exact for small sets


def test_empty_rollups_stage_nothing(spark, stack, clickhouse, version):
    empty = minute_rollups(spark.createDataFrame([], SCHEMA))
    assert stage_rollups(empty, stack.clickhouse, version) == 0
    ((n,),) = clickhouse.execute(
        f"SELECT count() FROM {stack.clickhouse.database}.minute_rollups WHERE version = %(v)s", {"v": version}
    )
    assert n == 0


def test_unreachable_clickhouse_is_a_clear_error(spark, stack, version):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wrong = dataclasses.replace(stack.clickhouse, port=port)
    rollups = minute_rollups(spark.createDataFrame(_events()[:50], SCHEMA)).repartition(2)
    with pytest.raises(
        StagingError,
        match=rf"version {version} into .*rollup_input at 127\.0\.0\.1:{port}.*"
        rf"remove version {version}",
    ):
        stage_rollups(rollups, wrong, version)


def test_rows_already_under_the_version_are_detected(spark, stack, version):
    """Staging is not idempotent: the version must be fresh. Leftovers (e.g. of a failed attempt)
    make the inserted and the stored totals differ, and that is an error, not a silent double."""
    rollups = minute_rollups(spark.createDataFrame(_events()[:200], SCHEMA)).repartition(2)
    stage_rollups(rollups, stack.clickhouse, version)
    with pytest.raises(
        StagingError, match="ClickHouse holds 400 events under the version, the partitions inserted 200"
    ):
        stage_rollups(rollups, stack.clickhouse, version)
