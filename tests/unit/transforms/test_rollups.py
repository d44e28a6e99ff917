from datetime import datetime

from tidemark.transforms.dedup import drop_duplicate_events
from tidemark.transforms.rollups import late_event_hours, minute_rollups

SCHEMA = (
    "event_id STRING, tenant_id STRING, event_time TIMESTAMP, user_id STRING, country STRING, device STRING, "
    "page STRING, is_late BOOLEAN, kafka_timestamp TIMESTAMP, kafka_partition INT, kafka_offset BIGINT, "
    "ingest_time TIMESTAMP"
)


def _df(spark, rows):
    return spark.createDataFrame(rows, SCHEMA)


def _row(eid, minute, second, user, page="/a", late=False, part=0, off=0, tenant="t1"):
    t = datetime(2026, 11, 25, 3, minute, second)
    return (
        eid,
        tenant,
        t,
        user,
        "US",
        "mobile",
        page,
        late,
        datetime(2026, 11, 25, 4, 0, off % 60),
        part,
        off,
        datetime(2026, 11, 25, 4, 1),
    )


def test_minute_rollups_count_events_and_collect_distinct_users(spark):
    df = _df(
        spark,
        [
            _row("e1", 1, 5, "u1"),
            _row("e2", 1, 59, "u1"),
            _row("e3", 1, 30, "u2"),
            _row("e4", 2, 0, "u1"),
            _row("e5", 1, 10, "u3", page="/b"),
        ],
    )
    rows = {(r["minute"].minute, r["page"]): (r["events"], r["user_ids"]) for r in minute_rollups(df).collect()}
    assert rows == {(1, "/a"): (3, ["u1", "u2"]), (2, "/a"): (1, ["u1"]), (1, "/b"): (1, ["u3"])}


def test_batch_dedup_keeps_the_first_arrival(spark):
    df = _df(
        spark, [_row("e1", 1, 5, "u1", part=1, off=9), _row("e1", 1, 5, "u1", part=0, off=3), _row("e2", 1, 6, "u2")]
    )
    kept = drop_duplicate_events(df).collect()
    assert sorted(r["event_id"] for r in kept) == ["e1", "e2"]
    (e1,) = [r for r in kept if r["event_id"] == "e1"]
    assert (e1["kafka_partition"], e1["kafka_offset"]) == (0, 3)


def test_late_event_hours_counts_only_late_rows(spark):
    df = _df(
        spark,
        [
            _row("e1", 1, 5, "u1", late=True),
            _row("e2", 59, 5, "u2", late=True),
            _row("e3", 1, 5, "u1", late=False),
            _row("e4", 1, 5, "u1", late=True, tenant="t2"),
        ],
    )
    rows = sorted((r["tenant_id"], r["event_hour"].hour, r["late_events"]) for r in late_event_hours(df).collect())
    assert rows == [("t1", 3, 2), ("t2", 3, 1)]


def test_batch_dedup_keeps_one_tenants_event_with_another_tenants_id(spark):
    """Issue 23: ids are the producers'; tenant B reusing tenant A's ids must not erase B's events."""
    df = _df(
        spark,
        [
            _row("e1", 1, 5, "u1", tenant="a", off=1),
            _row("e1", 1, 6, "u9", tenant="b", off=2),
            _row("e1", 1, 7, "u9", tenant="b", off=3),  # b's own re-send: a real duplicate
        ],
    )
    kept = sorted((r["tenant_id"], r["kafka_offset"]) for r in drop_duplicate_events(df).collect())
    assert kept == [("a", 1), ("b", 2)]


def test_batch_dedup_sorts_its_rows_once(spark):
    """Spark's WindowGroupLimit (on by default) would sort every row before the shuffle as well, to drop
    almost nothing from a ~unique key (10 of 43 CPU-s on bench/recompute_hour.py's hour); the session's
    settings (tidemark/spark.py) keep one sort, after the shuffle."""
    df = _df(spark, [_row("e1", 1, 5, "u1", off=1), _row("e1", 1, 5, "u1", off=2)])
    plan = drop_duplicate_events(df)._jdf.queryExecution().executedPlan().toString()
    assert "WindowGroupLimit" not in plan
    assert plan.count("Sort [") == 1, plan
