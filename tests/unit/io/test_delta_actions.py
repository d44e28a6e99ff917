"""tidemark.io.delta without Spark: partition values, stats, action checks, commits over delta-rs."""
import datetime as dt
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from tidemark.io import delta as D
from tidemark.tables import table

RAW = table("events_raw")
SCHEMA = RAW.arrow()
PARTS = list(RAW.partition_by)
UTC = dt.timezone.utc


def rows(n, day=dt.date(2026, 11, 25), hours=(3,), start=0):
    out = []
    for i in range(start, start + n):
        h = hours[i % len(hours)]
        t = dt.datetime(day.year, day.month, day.day, h, i % 60, 0, 123456, tzinfo=UTC)
        out.append({
            "event_id": f"00000000-0000-0000-0000-{i:012d}", "tenant_id": "t1", "event_time": t,
            "user_id": f"u{i % 7}", "session_id": f"s{i % 11}", "country": "DE", "device": "mobile",
            "page": "/p/" + "x" * 40 + str(i % 3), "referrer": None if i % 2 else "https://r.example",
            "schema_version": 1, "is_late": False, "kafka_topic": "page_views", "kafka_partition": i % 4,
            "kafka_offset": i, "kafka_timestamp": t, "ingest_time": t, "batch_version": 0,
            "event_date": day, "event_hour": h,
        })
    return out


def arrow_rows(n, **kw):
    return pa.Table.from_pylist(rows(n, **kw), schema=SCHEMA)


def write_files(root, data, **kw):
    w = D.TaskFileWriter(str(root), SCHEMA, PARTS, **kw)
    w.write(data)
    return w.close()


# --------------------------------------------------------------------------- partition values


@pytest.mark.parametrize("value,typ,text", [
    (dt.date(2026, 11, 25), pa.date32(), "2026-11-25"),
    (3, pa.int32(), "3"),
    (-7, pa.int64(), "-7"),
    (True, pa.bool_(), "true"),
    ("a b:c", pa.string(), "a b:c"),
    (None, pa.int32(), None),
])
def test_partition_value_round_trip(value, typ, text):
    assert D.partition_value_str(value, typ) == text
    assert D.parse_partition_value(text, typ) == value


def test_partition_value_rejects_wrong_types_and_empty_string():
    with pytest.raises(ValueError):
        D.partition_value_str(dt.datetime(2026, 1, 1), pa.date32())
    with pytest.raises(ValueError):
        D.partition_value_str(True, pa.int32())
    with pytest.raises(ValueError):
        D.partition_value_str("", pa.string())


def test_partition_dir_escapes_and_parses_back():
    values = {"a": "x/y=z:%", "b": None}
    rel = D.partition_dir(["a", "b"], values) + "/part-1.parquet"
    assert rel == "a=x%2Fy%3Dz%3A%25/b=__HIVE_DEFAULT_PARTITION__/part-1.parquet"
    assert D.parse_partition_dir(rel) == values
    assert D.partition_dir(PARTS, {"event_date": "2026-11-25", "event_hour": "3"}) == \
        "event_date=2026-11-25/event_hour=3"


# --------------------------------------------------------------------------- stats


def test_stats_bounds_are_safe_and_delta_shaped():
    schema = pa.schema([pa.field("ts", pa.timestamp("us", tz="UTC"), False),
                        pa.field("s", pa.string()), pa.field("n", pa.int64()),
                        pa.field("b", pa.bool_()), pa.field("bin", pa.binary()),
                        pa.field("f", pa.float64())])
    c = D.StatsCollector(schema)
    t0 = dt.datetime(2026, 11, 25, 3, 0, 0, 123456, tzinfo=UTC)
    c.update(pa.table({"ts": [t0, t0 + dt.timedelta(microseconds=10)], "s": ["a", "z" * 40],
                       "n": [5, None], "b": [True, False], "bin": [b"x", None],
                       "f": [1.0, float("nan")]}, schema=schema))
    c.update(pa.table({"ts": [t0], "s": [None], "n": [-1], "b": [True], "bin": [None], "f": [2.0]},
                      schema=schema))
    stats = json.loads(c.to_json())
    assert stats["numRecords"] == 3
    assert stats["minValues"]["ts"] == "2026-11-25T03:00:00.123Z"   # floored
    assert stats["maxValues"]["ts"] == "2026-11-25T03:00:00.124Z"   # ceiled
    assert stats["minValues"]["s"] == "a" and "s" not in stats["maxValues"]  # 40 chars > prefix
    assert (stats["minValues"]["n"], stats["maxValues"]["n"]) == (-1, 5)
    assert (stats["minValues"]["b"], stats["maxValues"]["b"]) == (False, True)
    assert "bin" not in stats["minValues"] and "f" not in stats["minValues"]  # binary, NaN
    assert stats["nullCount"] == {"ts": 0, "s": 1, "n": 1, "b": 0, "bin": 2, "f": 0}


def test_long_string_min_is_truncated_prefix():
    c = D.StatsCollector(pa.schema([pa.field("s", pa.string())]))
    c.update(pa.table({"s": ["b" * 50, "c" * 50]}))
    stats = json.loads(c.to_json())
    assert stats["minValues"]["s"] == "b" * 32 and "s" not in stats["maxValues"]


# --------------------------------------------------------------------------- conform / write


def test_conform_names_the_null_column():
    data = arrow_rows(3).to_pylist()
    data[1]["country"] = None
    loose = pa.schema([f.with_nullable(True) for f in SCHEMA])
    with pytest.raises(D.DeltaSchemaError, match="'country' is NOT NULL.*1 row"):
        D.conform_batch(pa.Table.from_pylist(data, schema=loose), SCHEMA)


def test_conform_reports_missing_and_extra_columns_and_casts():
    t = arrow_rows(2).drop_columns(["page"]).append_column("bogus", pa.array([1, 2]))
    with pytest.raises(D.DeltaSchemaError, match=r"missing column\(s\) page.*unexpected column\(s\) bogus"):
        D.conform_batch(t, SCHEMA)
    t = arrow_rows(2)
    t = t.set_column(t.schema.get_field_index("kafka_partition"), "kafka_partition",
                     t.column("kafka_partition").cast(pa.int64()))
    assert D.conform_batch(t, SCHEMA).schema.equals(SCHEMA)


def test_task_writer_splits_by_partition_and_omits_partition_columns(tmp_path):
    files = write_files(tmp_path, arrow_rows(30, hours=(3, 4, 5)))
    assert sorted(f.partition_values["event_hour"] for f in files) == ["3", "4", "5"]
    for f in files:
        assert f.path == D.partition_dir(PARTS, f.partition_values) + "/" + os.path.basename(f.path)
        assert f.size == os.path.getsize(tmp_path / f.path)
        assert f.num_records == 10 == json.loads(f.stats)["numRecords"]
        names = pq.read_schema(tmp_path / f.path).names
        assert "event_date" not in names and "event_hour" not in names
    D.check_files(str(tmp_path), files, SCHEMA, PARTS)


def test_task_writer_rolls_files_and_abort_deletes(tmp_path):
    w = D.TaskFileWriter(str(tmp_path), SCHEMA, PARTS, max_records_per_file=4)
    w.write(arrow_rows(10))
    files = w.close()
    assert [f.num_records for f in files] == [4, 4, 2]
    w2 = D.TaskFileWriter(str(tmp_path), SCHEMA, PARTS, row_group_rows=2)  # flushes at once
    w2.write(arrow_rows(5, hours=(7,)))
    assert list((tmp_path / "event_date=2026-11-25" / "event_hour=7").iterdir())
    w2.abort()
    assert not list((tmp_path / "event_date=2026-11-25" / "event_hour=7").iterdir())


# --------------------------------------------------------------------------- action checks


@pytest.fixture()
def written(tmp_path):
    return tmp_path, write_files(tmp_path, arrow_rows(20, hours=(3, 4)))


def _check(root, files):
    D.check_files(str(root), files, SCHEMA, PARTS)


def test_check_files_catches_missing_file(written):
    root, files = written
    os.remove(root / files[0].path)
    with pytest.raises(D.DeltaActionError, match="does not exist"):
        _check(root, files)


def test_check_files_catches_wrong_size(written):
    root, files = written
    files[0].size += 1
    with pytest.raises(D.DeltaActionError, match="size"):
        _check(root, files)


def test_check_files_catches_missing_partition_values(written):
    root, files = written
    del files[0].partition_values["event_hour"]
    with pytest.raises(D.DeltaActionError, match="partitioned by"):
        _check(root, files)


def test_check_files_catches_partition_values_inconsistent_with_path(written):
    root, files = written
    files[0].partition_values["event_hour"] = "9"
    with pytest.raises(D.DeltaActionError, match="do not match the path"):
        _check(root, files)


def test_check_files_catches_non_canonical_partition_value(written):
    root, files = written
    f = files[0]
    new_dir = root / "event_date=2026-11-25" / "event_hour=03"
    new_dir.mkdir()
    os.rename(root / f.path, new_dir / os.path.basename(f.path))
    f.path = f"event_date=2026-11-25/event_hour=03/{os.path.basename(f.path)}"
    f.partition_values["event_hour"] = "03"
    with pytest.raises(D.DeltaActionError, match="not canonical"):
        _check(root, files)


def test_check_files_catches_wrong_schema_and_row_count(written):
    root, files = written
    bad = pa.table({"event_id": ["x"], "other": [1]})
    pq.write_table(bad, root / files[0].path)
    files[0].size = os.path.getsize(root / files[0].path)
    with pytest.raises(D.DeltaActionError, match="parquet schema differs.*missing column"):
        _check(root, files)
    root2, files2 = root, files[1:]
    files2[0].num_records += 1
    with pytest.raises(D.DeltaActionError, match="records reported"):
        _check(root2, files2)


def test_check_files_rejects_escaping_and_duplicate_paths(written):
    root, files = written
    with pytest.raises(D.DeltaActionError, match="relative"):
        _check(root, [D.AddedFile("../x.parquet", 1, {}, 0, "{}", 0)])
    with pytest.raises(D.DeltaActionError, match="listed twice"):
        _check(root, [files[0], files[0]])


# --------------------------------------------------------------------------- predicates


PT = {"event_date": pa.date32(), "event_hour": pa.int32()}


def test_parse_predicate_replace_where_forms():
    p = D.parse_predicate("event_date = '2026-11-25' AND event_hour = 3", PT)
    assert D.eval_predicate(p, {"event_date": dt.date(2026, 11, 25), "event_hour": 3}) is True
    assert D.eval_predicate(p, {"event_date": dt.date(2026, 11, 25), "event_hour": 4}) is False
    p = D.parse_predicate("event_date = DATE '2026-11-25' and (event_hour in (1, 2) or "
                          "event_hour between 20 and 22) and not event_hour <> 21", PT)
    assert D.eval_predicate(p, {"event_date": dt.date(2026, 11, 25), "event_hour": 21}) is True
    assert D.eval_predicate(p, {"event_date": dt.date(2026, 11, 25), "event_hour": 1}) is False
    p = D.parse_predicate("event_hour IS NULL OR event_hour >= 23", PT)
    assert D.eval_predicate(p, {"event_date": None, "event_hour": None}) is True
    assert D.eval_predicate(D.parse_predicate("event_hour = 3", PT), {"event_hour": None}) is None


@pytest.mark.parametrize("text,match", [
    ("page = 'x'", "not a partition column"),
    ("event_hour = 'abc'", "bad literal"),
    ("event_date = '2026-13-01'", "bad literal"),
    ("event_hour = 3 AND", "expected"),
    ("event_hour = 3 extra", "unexpected"),
])
def test_parse_predicate_errors(text, match):
    with pytest.raises(ValueError, match=match):
        D.parse_predicate(text, PT)


def test_partition_spec_and_event_hour():
    p = D.parse_partition_spec("event_date=2026-11-25/event_hour=3; event_date=2026-11-26/event_hour=0", PT)
    assert D.eval_predicate(p, {"event_date": dt.date(2026, 11, 26), "event_hour": 0}) is True
    assert D.eval_predicate(p, {"event_date": dt.date(2026, 11, 26), "event_hour": 3}) is False
    with pytest.raises(ValueError, match="lacks event_hour"):
        D.parse_partition_spec("event_date=2026-11-25", PT)
    assert D.parse_event_hour("2026-11-25T03") == (dt.date(2026, 11, 25), 3)
    assert D.parse_event_hour("2026-11-25 23:00") == (dt.date(2026, 11, 25), 23)
    with pytest.raises(ValueError):
        D.parse_event_hour("2026-11-25T24")


def test_spark_filters_to_predicates():
    from pyspark.sql.datasource import EqualTo, GreaterThan, In, Not, StringStartsWith

    day = dt.date(2026, 11, 25)
    assert D.filter_to_predicate(EqualTo(("event_date",), day), PT) == ("cmp", "=", "event_date", day)
    assert D.filter_to_predicate(In(("event_hour",), (1, 2)), PT) == ("in", "event_hour", (1, 2))
    assert D.filter_to_predicate(Not(GreaterThan(("event_hour",), 3)), PT) == \
        ("not", ("cmp", ">", "event_hour", 3))
    assert D.filter_to_predicate(EqualTo(("page",), "x"), PT) is None          # not a partition column
    assert D.filter_to_predicate(StringStartsWith(("event_hour",), "1"), PT) is None
    assert D.filter_to_predicate(EqualTo(("event_hour",), 1.5), PT) is None   # wrong type: not pruned


def test_group_files():
    fs = [D.FileEntry(f"/f{i}", 10, {}) for i in range(5)]
    assert [len(g) for g in D.group_files(fs, 25)] == [2, 2, 1]
    assert [len(g) for g in D.group_files(fs, 1)] == [1] * 5


# --------------------------------------------------------------------------- commits over delta-rs (no Spark)


def commit(root, files, **kw):
    return D.commit_files(str(root), files, schema=SCHEMA, partition_by=PARTS, **kw)


def test_commit_creates_table_and_is_readable(tmp_path):
    files = write_files(tmp_path, arrow_rows(30, hours=(3, 4, 5)))
    res = commit(tmp_path, files, table_name="events_raw")
    assert res.committed and res.version == 1 and res.added == 3  # version 0 is the create
    t = DeltaTable(str(tmp_path))
    assert t.to_pyarrow_table().num_rows == 30
    assert D.delta_arrow_schema(t).equals(SCHEMA)
    actions = pa.table(t.get_add_actions(flatten=True))
    assert sorted(actions.column("num_records").to_pylist()) == [10, 10, 10]
    assert actions.column("max.page").null_count == 3  # 43-char strings: no max, by design
    assert all(v is not None for v in actions.column("min.event_time").to_pylist())


def test_commit_txn_is_idempotent_and_empty_txn_recorded(tmp_path):
    f1 = write_files(tmp_path, arrow_rows(5))
    assert commit(tmp_path, f1, txn=("stream", 7)).committed
    f2 = write_files(tmp_path, arrow_rows(5))
    res = commit(tmp_path, f2, txn=("stream", 7))
    assert (res.committed, res.reason) == (False, "already_committed")
    assert not os.path.exists(tmp_path / f2[0].path)  # the replay's files are deleted
    assert DeltaTable(str(tmp_path)).to_pyarrow_table().num_rows == 5
    res = commit(tmp_path, [], txn=("stream", 8))  # empty batch: a commit that only records the txn
    assert res.committed and D.committed_txn_version(str(tmp_path), "stream") == 8
    assert commit(tmp_path, []).reason == "nothing_to_commit"


def test_commit_replace_where_replaces_one_hour(tmp_path):
    commit(tmp_path, write_files(tmp_path, arrow_rows(30, hours=(3, 4, 5))))
    v = D.table_version(str(tmp_path))
    new = write_files(tmp_path, arrow_rows(4, hours=(4,), start=100))
    res = commit(tmp_path, new, overwrite=True, replace_where="event_date = '2026-11-25' AND event_hour = 4")
    assert res.committed and res.removed == 1 and res.version == v + 1
    t = DeltaTable(str(tmp_path)).to_pyarrow_table()
    counts = {h: c for h, c in zip(*t.group_by("event_hour").aggregate([([], "count_all")]).columns)}
    assert {k.as_py(): c.as_py() for k, c in counts.items()} == {3: 10, 4: 4, 5: 10}


def test_commit_rejects_rows_outside_replace_where(tmp_path):
    files = write_files(tmp_path, arrow_rows(4, hours=(4, 5)))
    with pytest.raises(D.DeltaActionError, match="outside replaceWhere"):
        commit(tmp_path, files, overwrite=True, replace_where="event_hour = 4")
    assert D.table_version(str(tmp_path)) in (None, 0)


def test_commit_refuses_bad_actions_before_touching_the_log(tmp_path):
    files = write_files(tmp_path, arrow_rows(4))
    files[0].size = 1
    with pytest.raises(D.DeltaActionError):
        commit(tmp_path, files)
    assert D.table_version(str(tmp_path)) is None


def test_ensure_table_creates_and_checks(tmp_path):
    assert D.ensure_table(str(tmp_path / "raw"), RAW) == 0
    assert D.ensure_table(str(tmp_path / "raw"), RAW) == 0
    assert DeltaTable(str(tmp_path / "raw")).metadata().partition_columns == PARTS
    with pytest.raises(D.DeltaSchemaError, match="different schema"):
        D.ensure_table(str(tmp_path / "raw"), table("events_rejected"))
    assert D.read_version(str(tmp_path / "raw")) == 0
    with pytest.raises(FileNotFoundError):
        D.read_version(str(tmp_path / "nope"))


def test_plan_files_prunes_by_spec_and_event_hour(tmp_path):
    commit(tmp_path, write_files(tmp_path, arrow_rows(30, hours=(3, 4, 5))))
    v, files = D.plan_files(str(tmp_path), event_hour="2026-11-25T04")
    assert len(files) == 1 and files[0].partition_values == {"event_date": dt.date(2026, 11, 25),
                                                            "event_hour": 4}
    _, files = D.plan_files(str(tmp_path), partitions="event_date=2026-11-25/event_hour=3;"
                                                      "event_date=2026-11-25/event_hour=5")
    assert sorted(f.partition_values["event_hour"] for f in files) == [3, 5]
    _, files = D.plan_files(str(tmp_path), version=0)
    assert files == []


def test_replace_where_with_read_version_keeps_later_appends_and_detects_conflicts(tmp_path):
    commit(tmp_path, write_files(tmp_path, arrow_rows(20, hours=(3, 4))))
    read_v = D.read_version(str(tmp_path))
    late = write_files(tmp_path, arrow_rows(2, hours=(4,), start=500))  # streamed in after the read
    commit(tmp_path, late, txn=("stream", 1))
    rw = "event_date = '2026-11-25' AND event_hour = 4"
    res = commit(tmp_path, write_files(tmp_path, arrow_rows(3, hours=(4,), start=900)),
                 overwrite=True, replace_where=rw, read_version=read_v)
    assert res.removed == 1
    assert {f.path for f in late} <= {a.path for a in D.active_files(DeltaTable(str(tmp_path)))}
    assert DeltaTable(str(tmp_path)).to_pyarrow_table().num_rows == 10 + 2 + 3
    # A second recompute from the same (now stale) read version must not add duplicates.
    with pytest.raises(D.DeltaConflictError, match="removed by a later commit"):
        commit(tmp_path, write_files(tmp_path, arrow_rows(3, hours=(4,), start=900)),
               overwrite=True, replace_where=rw, read_version=read_v)


def test_conflicting_overwrite_is_retried_on_a_fresh_snapshot(tmp_path, monkeypatch, caplog):
    commit(tmp_path, write_files(tmp_path, arrow_rows(20, hours=(3, 4))))
    rw = "event_hour = 4"
    ours = write_files(tmp_path, arrow_rows(3, hours=(4,), start=900))
    theirs = write_files(tmp_path, arrow_rows(5, hours=(4,), start=700))
    real = DeltaTable.create_write_transaction
    calls = []

    def racing(self, *args, **kwargs):
        if not calls:  # another writer replaces hour 4 between our snapshot and our commit
            calls.append("race")
            monkeypatch.setattr(DeltaTable, "create_write_transaction", real)
            commit(tmp_path, theirs, overwrite=True, replace_where=rw)
            monkeypatch.setattr(DeltaTable, "create_write_transaction", racing)
        calls.append("ours")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", racing)
    with caplog.at_level("WARNING", logger="tidemark.io.delta"):
        res = commit(tmp_path, ours, overwrite=True, replace_where=rw)
    assert res.committed and res.attempts == 2 and calls == ["race", "ours", "ours"]
    assert "conflicted" in caplog.text
    t = DeltaTable(str(tmp_path)).to_pyarrow_table()
    assert sorted(t.filter(pa.compute.equal(t.column("event_hour"), 4)).column("kafka_offset").to_pylist()) \
        == [900, 901, 902]  # last writer wins, exactly one copy of hour 4
