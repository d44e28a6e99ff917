"""The tidemark_delta Spark data source end to end (local[2], a few hundred rows, tmp tables)."""
import datetime as dt
import glob
import importlib.util
import json
import os

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from tidemark.io import delta as D
from tidemark.tables import table

pytestmark = pytest.mark.integration

RAW = table("events_raw")
UTC = dt.timezone.utc
DAY = dt.date(2026, 11, 25)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    from tidemark.spark import session

    shared = SparkSession.getActiveSession() is not None  # e.g. the suite-wide fixture's
    s = session("test-delta")
    yield s
    if not shared:
        s.stop()


def make_rows(n, hours=(3, 4, 5), start=0, batch_version=0):
    out = []
    for i in range(start, start + n):
        h = hours[i % len(hours)]
        t = dt.datetime(2026, 11, 25, h, i % 60, i % 60, 1000 * (i % 1000) + 7, tzinfo=UTC)
        out.append((f"00000000-0000-0000-0000-{i:012d}", f"t{i % 2}", t, f"u{i % 13}", f"s{i % 17}",
                    "DE" if i % 3 else "FR", "mobile", f"/page/{i % 5}",
                    None if i % 4 else "https://ref.example/", 1, i % 10 == 0, "page_views", i % 4, i,
                    t, t, batch_version, DAY, h))
    return out


def local_naive(row):
    """A row as Spark's collect() returns it: timestamps as naive local datetimes."""
    return tuple(v.astimezone().replace(tzinfo=None) if isinstance(v, dt.datetime) else v for v in row)


def raw_df(spark, rows, partitions=2, schema=None):
    return spark.createDataFrame(rows, schema or RAW.spark()).repartition(partitions)


def write(df, path, mode="append", **opts):
    w = df.write.format("tidemark_delta").mode(mode).option("path", path)
    for k, v in {"partitionBy": "event_date,event_hour", **opts}.items():
        w = w.option(k, v)
    w.save()


def parquet_on_disk(path):
    return sorted(os.path.relpath(p, path) for p in glob.glob(f"{path}/**/*.parquet", recursive=True))


def active_paths(path):
    return sorted(a.path for a in D.active_files(DeltaTable(path)))


def hour_counts(path):
    t = DeltaTable(path).to_pyarrow_table()
    agg = t.group_by("event_hour").aggregate([([], "count_all")]).to_pylist()
    return {r["event_hour"]: r["count_all"] for r in agg}


def test_write_commits_all_files_in_one_version(spark, tmp_path):
    path = str(tmp_path / "events_raw")
    D.ensure_table(path, RAW)
    write(raw_df(spark, make_rows(300)), path)
    t = DeltaTable(path)
    assert t.version() == 1  # create (0) + exactly one write commit
    files = active_paths(path)
    assert files == parquet_on_disk(path) and len(files) >= 3
    assert {p.split("/")[1] for p in files} == {"event_hour=3", "event_hour=4", "event_hour=5"}
    assert hour_counts(path) == {3: 100, 4: 100, 5: 100}
    assert t.history(1)[0]["operation"] == "WRITE"


def test_table_is_standard_delta_read_independently(spark, tmp_path):
    path = str(tmp_path / "t")
    rows = make_rows(240)
    write(raw_df(spark, rows), path, table="events_raw")
    expected = pa.Table.from_pylist([dict(zip(RAW.names, r)) for r in rows], schema=RAW.arrow())
    got = DeltaTable(path).to_pyarrow_table().select(RAW.names).sort_by("event_id")
    assert got.cast(RAW.arrow()).equals(expected.sort_by("event_id"))
    # ... and back through the Spark reader: same rows, exact schema (nullability included).
    df = spark.read.format("tidemark_delta").option("path", path).load()
    assert df.schema == RAW.spark()
    back = sorted(tuple(r) for r in df.collect())
    assert back == sorted(local_naive(r) for r in rows)


@pytest.mark.skipif(importlib.util.find_spec("duckdb_extension_delta") is None,
                    reason="duckdb-extension-delta not installed")
def test_duckdb_delta_extension_reads_it(spark, tmp_path):
    import duckdb
    import duckdb_extension_delta

    path = str(tmp_path / "t")
    write(raw_df(spark, make_rows(90)), path, table="events_raw")
    ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions", "*",
                                 "delta.duckdb_extension"))[0]
    con = duckdb.connect()
    try:
        con.execute(f"LOAD '{ext}'")
        got = con.execute(f"SELECT event_hour, count(*), count(referrer), max(kafka_offset) "
                          f"FROM delta_scan('{path}') GROUP BY 1 ORDER BY 1").fetchall()
        # Data skipping on the stats must not lose rows: exact-microsecond timestamp filters.
        t_max = con.execute(f"SELECT max(event_time) FROM delta_scan('{path}')").fetchone()[0]
        n_at_max = con.execute(f"SELECT count(*) FROM delta_scan('{path}') WHERE event_time >= ?",
                               [t_max]).fetchone()[0]
    finally:
        con.close()
    rows = make_rows(90)
    assert got == [(h, sum(1 for r in rows if r[-1] == h), sum(1 for r in rows if r[-1] == h and r[8]),
                    max(r[13] for r in rows if r[-1] == h)) for h in (3, 4, 5)]
    assert t_max == max(r[2] for r in rows)
    assert n_at_max == sum(1 for r in rows if r[2] >= t_max)


def test_same_txn_twice_commits_once(spark, tmp_path):
    path = str(tmp_path / "t")
    D.ensure_table(path, RAW)
    df = raw_df(spark, make_rows(120)).cache()
    write(df, path, txnAppId="stream-raw", txnVersion="5")
    write(df, path, txnAppId="stream-raw", txnVersion="5")   # replayed micro-batch
    df.unpersist()
    assert DeltaTable(path).version() == 1
    assert DeltaTable(path).to_pyarrow_table().num_rows == 120
    assert D.committed_txn_version(path, "stream-raw") == 5
    assert parquet_on_disk(path) == active_paths(path)  # the replay's files were deleted
    # An empty batch with a new txn version is recorded (so its replay is recognised).
    write(spark.createDataFrame([], RAW.spark()), path, txnAppId="stream-raw", txnVersion="6")
    assert D.committed_txn_version(path, "stream-raw") == 6 and D.table_version(path) == 2


def test_replace_where_replaces_exactly_one_hour(spark, tmp_path):
    path = str(tmp_path / "t")
    write(raw_df(spark, make_rows(300)), path, table="events_raw")
    before = D.table_version(path)
    untouched = [p for p in active_paths(path) if "event_hour=4" not in p]
    new_rows = make_rows(40, hours=(4,), start=1000, batch_version=99)
    write(raw_df(spark, new_rows), path, mode="overwrite",
          replaceWhere="event_date = '2026-11-25' AND event_hour = 4")
    assert D.table_version(path) == before + 1
    assert hour_counts(path) == {3: 100, 4: 40, 5: 100}
    assert [p for p in active_paths(path) if "event_hour=4" not in p] == untouched
    # One atomic commit holding both the removes and the adds.
    log_file = os.path.join(path, "_delta_log", f"{before + 1:020d}.json")
    kinds = [next(iter(json.loads(line))) for line in open(log_file)]
    assert kinds.count("remove") >= 1 and kinds.count("add") >= 1
    t = DeltaTable(path).to_pyarrow_table()
    hour4 = t.filter(pa.compute.equal(t.column("event_hour"), 4))
    assert set(hour4.column("batch_version").to_pylist()) == {99}


def test_reader_prunes_to_the_requested_hour(spark, tmp_path):
    path = str(tmp_path / "t")
    rows = make_rows(300)
    write(raw_df(spark, rows, partitions=3), path, table="events_raw")
    per_hour = {h: sum(1 for p in active_paths(path) if f"event_hour={h}/" in p) for h in (3, 4, 5)}
    assert per_hour[4] >= 2  # several tasks wrote hour 4, so the count below means something

    def load(**opts):
        r = spark.read.format("tidemark_delta").option("path", path).option("maxPartitionBytes", "1")
        for k, v in opts.items():
            r = r.option(k, v)
        return r.load()

    expected = sorted(local_naive(r) for r in rows if r[-1] == 4)
    for df in (load(eventHour="2026-11-25T04"),
               load(partitions="event_date=2026-11-25/event_hour=4"),
               load().where("event_date = DATE'2026-11-25' AND event_hour = 4")):  # pushed filters
        assert df.rdd.getNumPartitions() == per_hour[4]  # one input partition per file of hour 4
        assert sorted(tuple(r) for r in df.collect()) == expected
    assert load().rdd.getNumPartitions() == sum(per_hour.values())
    # Time travel: the version before the write had no files.
    assert load(version="0").count() == 0 and D.read_version(path) == 1


def test_null_in_not_null_column_fails_and_commits_nothing(spark, tmp_path):
    from pyspark.sql import types as T

    path = str(tmp_path / "t")
    D.ensure_table(path, RAW)
    rows = make_rows(50)
    rows[17] = rows[17][:5] + (None,) + rows[17][6:]  # country
    loose = T.StructType([T.StructField(f.name, f.dataType, True) for f in RAW.spark()])
    with pytest.raises(Exception, match="'country' is NOT NULL"):
        write(raw_df(spark, rows, schema=loose), path)
    assert D.table_version(path) == 0
    assert parquet_on_disk(path) == []  # the failed task and abort() removed what was written
