"""The lake on delta-spark, as the pipeline uses it (local[2], a few hundred rows, tmp tables).

These are the checks that pin the engine triple (pyspark, delta-spark jar, delta-spark wheel):
a canonical-schema table, idempotent writes by txn id, a partition-pruned read at a pinned
version, OPTIMIZE that leaves results unchanged, VACUUM that keeps time travel inside the
retention, and tables that independent readers (delta-rs, DuckDB) read alike.
"""

import datetime as dt
import glob
import json
import os

import pytest
from deltalake import DeltaTable as RsTable

from tidemark.batch import lake
from tidemark.tables import EVENTS_RAW, ensure_delta_table, table

RAW = table(EVENTS_RAW)
UTC = dt.timezone.utc
DAY = dt.date(2026, 11, 25)


def make_rows(n, hours=(3, 4, 5), start=0, batch_version=0):
    out = []
    for i in range(start, start + n):
        h = hours[i % len(hours)]
        t = dt.datetime(2026, 11, 25, h, i % 60, i % 60, 1000 * (i % 1000) + 7, tzinfo=UTC)
        out.append(
            (
                f"00000000-0000-0000-0000-{i:012d}",
                f"t{i % 2}",
                t,
                f"u{i % 13}",
                f"s{i % 17}",
                "DE" if i % 3 else "FR",
                "mobile",
                f"/page/{i % 5}",
                None if i % 4 else "https://ref.example/",
                1,
                i % 10 == 0,
                "page_views",
                i % 4,
                i,
                t,
                t,
                batch_version,
                DAY,
                h,
            )
        )
    return out


def append(spark, path, rows, *, txn=None, partitions=2):
    w = (
        spark.createDataFrame(rows, RAW.spark())
        .repartition(partitions)
        .write.format("delta")
        .mode("append")
        .partitionBy(*RAW.partition_by)
    )
    if txn is not None:
        w = w.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
    w.save(path)


@pytest.fixture()
def raw_table(spark, tmp_path):
    path = str(tmp_path / "events_raw")
    ensure_delta_table(spark, EVENTS_RAW, path)
    return path


def test_table_is_created_with_the_canonical_schema_and_enforces_not_null(spark, raw_table):
    ensure_delta_table(spark, EVENTS_RAW, raw_table)  # a second call is a no-op
    fields = {f.name: f for f in spark.read.format("delta").load(raw_table).schema.fields}
    assert [f for f in fields] == RAW.names
    assert not fields["event_id"].nullable and fields["referrer"].nullable
    assert RsTable(raw_table).metadata().partition_columns == ["event_date", "event_hour"]
    bad = [list(r) for r in make_rows(3)]
    bad[1][0] = None  # event_id NOT NULL
    nullable = RAW.spark()
    for f in nullable.fields:
        f.nullable = True
    with pytest.raises(Exception, match="(?i)null"):
        (
            spark.createDataFrame([tuple(r) for r in bad], nullable)
            .write.format("delta")
            .mode("append")
            .partitionBy(*RAW.partition_by)
            .save(raw_table)
        )
    assert spark.read.format("delta").load(raw_table).count() == 0  # nothing committed


def test_same_txn_twice_commits_once(spark, raw_table):
    rows = make_rows(120)
    append(spark, raw_table, rows, txn=("stream-a", 0))
    append(spark, raw_table, rows, txn=("stream-a", 0))  # a replayed micro-batch
    append(spark, raw_table, make_rows(10, start=500), txn=("stream-a", 1))
    append(spark, raw_table, make_rows(5, start=900), txn=("stream-b", 0))  # another stream identity
    assert spark.read.format("delta").load(raw_table).count() == 120 + 10 + 5
    assert RsTable(raw_table).transaction_version("stream-a") == 1


def test_pinned_version_read_is_pruned_to_one_hour(spark, raw_table):
    append(spark, raw_table, make_rows(90))
    v1 = lake.snapshot_version(spark, raw_table)
    append(spark, raw_table, make_rows(30, start=1000))  # lands after the snapshot
    hour = dt.datetime(2026, 11, 25, 4, tzinfo=UTC)
    df = lake.hour_events(spark, raw_table, hour, v1)
    assert df.count() == 30 and {r.event_hour for r in df.select("event_hour").distinct().collect()} == {4}
    files = lake.relative_files(df, raw_table)
    assert files and all(f.startswith("event_date=2026-11-25/event_hour=4/") for f in files)
    assert lake.hour_events(spark, raw_table, hour, v1 + 1).count() == 40
    assert lake.snapshot_version(spark, str(os.path.dirname(raw_table) + "/nothing_here")) is None

    # The recompute's one snapshot (delta-rs): the same version, and the same files as Spark's read of it.
    snap = lake.hour_snapshot(spark, raw_table, hour)
    assert snap.version == lake.snapshot_version(spark, raw_table) == v1 + 1
    assert snap.files == lake.relative_files(snap.events, raw_table) and len(snap.files) > len(files)
    assert snap.events.count() == 40
    assert lake.hour_snapshot(spark, str(os.path.dirname(raw_table) + "/nothing_here"), hour).version is None


def test_optimize_compacts_without_changing_results_and_vacuum_keeps_time_travel(spark, raw_table):
    from delta.tables import DeltaTable

    for i in range(4):
        append(spark, raw_table, make_rows(30, start=100 * i), partitions=2)
    before_files = len(glob.glob(f"{raw_table}/event_date=*/event_hour=3/*.parquet"))
    before = sorted(map(tuple, spark.read.format("delta").load(raw_table).collect()))
    pre_optimize = lake.snapshot_version(spark, raw_table)
    metrics = (
        DeltaTable.forPath(spark, raw_table)
        .optimize()
        .where("event_hour = 3")
        .executeCompaction()
        .select("metrics.numFilesAdded", "metrics.numFilesRemoved")
        .first()
    )
    assert metrics[0] == 1 and metrics[1] == before_files
    assert sorted(map(tuple, spark.read.format("delta").load(raw_table).collect())) == before
    # The compaction commit is flagged dataChange=false: it adds no new data to any hour.
    commit = json.loads("[" + ",".join(open(f"{raw_table}/_delta_log/{pre_optimize + 1:020d}.json")) + "]")
    adds = [a["add"] for a in commit if "add" in a]
    assert adds and not any(a["dataChange"] for a in adds)
    # VACUUM with the default 7-day retention removes nothing that time travel inside it needs.
    DeltaTable.forPath(spark, raw_table).vacuum()
    old = spark.read.format("delta").option("versionAsOf", pre_optimize).load(raw_table)
    assert sorted(map(tuple, old.collect())) == before


def test_independent_readers_see_the_same_table(spark, raw_table):
    import duckdb
    import duckdb_extension_delta

    rows = make_rows(90)
    append(spark, raw_table, rows)
    got_rs = RsTable(raw_table).to_pyarrow_table(columns=["event_id", "event_hour"])
    assert got_rs.num_rows == 90
    ext = glob.glob(
        os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "*", "delta.duckdb_extension")
    )[0]
    con = duckdb.connect()
    try:
        con.execute(f"LOAD '{ext}'")
        got = con.execute(
            f"SELECT event_hour, count(*), count(referrer), max(kafka_offset) "
            f"FROM delta_scan('{raw_table}') GROUP BY 1 ORDER BY 1"
        ).fetchall()
        t_max = con.execute(f"SELECT max(event_time) FROM delta_scan('{raw_table}')").fetchone()[0]
        n_at_max = con.execute(
            f"SELECT count(*) FROM delta_scan('{raw_table}') WHERE event_time >= ?", [t_max]
        ).fetchone()[0]
    finally:
        con.close()
    assert got == [
        (
            h,
            sum(1 for r in rows if r[-1] == h),
            sum(1 for r in rows if r[-1] == h and r[8]),
            max(r[13] for r in rows if r[-1] == h),
        )
        for h in (3, 4, 5)
    ]
    assert t_max == max(r[2] for r in rows)
    assert n_at_max == sum(1 for r in rows if r[2] >= t_max)
