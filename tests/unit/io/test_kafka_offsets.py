"""Offset logic of the tidemark_kafka source, without a broker or Spark."""
import json
import pickle
from collections import namedtuple

import pytest
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

from tidemark.io import kafka_source as ks
from tidemark.io.kafka_source import (
    KafkaDataLossError,
    KafkaRange,
    KafkaStreamReader,
    apportion,
    check_data_loss,
    data_loss_message,
    decode_offsets,
    encode_offsets,
    parse_starting_offsets,
    resolve_starting_offsets,
    split_range,
)

T = "page_views"


# -- offset JSON ------------------------------------------------------------ #

def test_offsets_round_trip_through_json():
    offsets = {3: 7, 0: 12, 1: 0, 10: 2**40}
    encoded = encode_offsets(T, offsets)
    text = json.dumps(encoded)  # what Spark writes into the checkpoint
    assert list(encoded["offsets"]) == ["0", "1", "3", "10"]  # stable order -> stable JSON
    assert decode_offsets(json.loads(text), T) == (offsets, {})
    assert decode_offsets(text, T) == (offsets, {})


def test_reset_from_round_trips_and_is_omitted_when_empty():
    encoded = encode_offsets(T, {0: 5, 1: 9}, {1: 3})
    assert "resetFrom" not in encode_offsets(T, {0: 5}, {})
    assert decode_offsets(json.loads(json.dumps(encoded)), T) == ({0: 5, 1: 9}, {1: 3})


def test_decode_rejects_other_topic_and_garbage():
    with pytest.raises(ValueError, match="new checkpoint location"):
        decode_offsets(encode_offsets("other", {0: 1}), T)
    with pytest.raises(ValueError):
        decode_offsets({"0": 1}, T)


@pytest.mark.parametrize("spec, expected", [
    (None, "latest"),
    ("earliest", "earliest"),
    (" Latest ", "latest"),
    ('{"0": 12, "1": -2, "2": -1}', {0: 12, 1: -2, 2: -1}),
    ('{"page_views": {"0": 12}}', {0: 12}),
])
def test_parse_starting_offsets(spec, expected):
    assert parse_starting_offsets(spec, T) == expected


@pytest.mark.parametrize("spec", ["first", "[1]", '{"0": -3}', '{"x": 1}', '{"other": {"0": 1}}'])
def test_parse_starting_offsets_rejects(spec):
    with pytest.raises(ValueError):
        parse_starting_offsets(spec, T)


def test_resolve_starting_offsets():
    wm = {0: (0, 100), 1: (10, 50), 2: (0, 7)}
    assert resolve_starting_offsets("earliest", wm) == {0: 0, 1: 10, 2: 0}
    assert resolve_starting_offsets("latest", wm) == {0: 100, 1: 50, 2: 7}
    # -2 earliest, -1 latest, missing partition -> earliest; offsets kept verbatim
    assert resolve_starting_offsets({0: 42, 1: -1, 2: 999}, wm) == {0: 42, 1: 50, 2: 999}
    assert resolve_starting_offsets({1: -2}, wm) == {0: 0, 1: 10, 2: 0}
    with pytest.raises(ValueError, match=r"partitions \[5\]"):
        resolve_starting_offsets({0: 1, 5: 3}, wm)


# -- admission control -------------------------------------------------------- #

def test_apportion_is_proportional_to_backlog_and_exact():
    start = {0: 0, 1: 100, 2: 0, 3: 50}
    end = {0: 6000, 1: 2100, 2: 0, 3: 1050}  # backlogs 6000, 2000, 0, 1000
    capped = apportion(start, end, 900)
    took = {p: capped[p] - start[p] for p in end}
    assert took == {0: 600, 1: 200, 2: 0, 3: 100}
    assert sum(took.values()) == 900


def test_apportion_never_exceeds_limit_and_uses_it_fully():
    start = {p: 0 for p in range(7)}
    end = {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 10_000, 6: 3}
    for limit in (1, 2, 3, 5, 9, 100, 9_999):
        capped = apportion(start, end, limit)
        took = [capped[p] - start[p] for p in end]
        assert sum(took) == limit
        assert all(0 <= t <= end[p] - start[p] for p, t in zip(end, took))


def test_apportion_without_cap_or_backlog_returns_end():
    assert apportion({0: 5}, {0: 10}, 100) == {0: 10}
    assert apportion({0: 5, 1: 3}, {0: 5, 1: 3}, 1) == {0: 5, 1: 3}
    # a partition unknown to start (new) counts from offset 0
    assert apportion({0: 0}, {0: 100, 1: 100}, 50) == {0: 25, 1: 25}


def test_split_range():
    assert split_range(5, 5, 10) == []
    assert split_range(0, 10, None) == [(0, 10)]
    assert split_range(0, 10, 10) == [(0, 10)]
    pieces = split_range(3, 25, 10)
    assert pieces == [(3, 10), (10, 17), (17, 25)]


# -- data loss decision -------------------------------------------------------- #

def test_check_data_loss_classifies_deleted_and_beyond_end():
    wm = {0: (100, 500), 1: (0, 50), 2: (0, 10)}
    events = check_data_loss(T, {0: 40, 1: 50, 2: 99, 9: 1}, wm)
    assert [(e.partition, e.kind, e.lost) for e in events] == [(0, "deleted", 60), (2, "beyond_end", 0)]
    msg = data_loss_message(events, "here")
    for needle in ("'page_views' partition 0", "requested offset 40", "earliest available offset 100",
                   "partition 2", "beyond the end", "failOnDataLoss=false"):
        assert needle in msg


class FakeWatermarks:
    def __init__(self, wm):
        self.wm = wm

    def get(self, partitions=None):
        return dict(self.wm)

    def close(self):
        pass


def reader(wm, **opts):
    r = KafkaStreamReader({"bootstrap.servers": "127.0.0.1:1", "subscribe": T, **opts})
    r._wm = FakeWatermarks(wm)
    return r


def test_latest_offset_fails_clearly_on_data_loss():
    r = reader({0: (0, 100), 1: (0, 100)}, failOnDataLoss="true")
    start = encode_offsets(T, {0: 10, 1: 5000})
    with pytest.raises(KafkaDataLossError, match=r"partition 1: requested offset 5000 is beyond"):
        r.latestOffset(start, ReadAllAvailable())


def test_latest_offset_resets_to_earliest_and_counts_when_allowed():
    r = reader({0: (300, 400), 1: (0, 100)}, failOnDataLoss="false")
    start = encode_offsets(T, {0: 100, 1: 5000})
    end = r.latestOffset(start, ReadAllAvailable())
    assert decode_offsets(end, T) == ({0: 400, 1: 100}, {0: 300, 1: 0})
    assert r.data_loss_offsets == 200
    ranges = [(p.partition, p.start, p.end) for p in r.partitions(start, end)]
    assert ranges == [(0, 300, 400), (1, 0, 100)]
    # the next batch starts from the plain end offsets (resetFrom only affects its own batch)
    nxt = r.latestOffset(end, ReadAllAvailable())
    assert nxt is end  # no new data: identical offset, Spark plans no batch


def test_latest_offset_discovers_new_partitions_from_zero_and_caps():
    r = reader({0: (0, 1000), 1: (0, 1000), 2: (0, 500)}, maxOffsetsPerTrigger="1000")
    start = encode_offsets(T, {0: 0, 1: 1000})
    assert r.getDefaultReadLimit() == ReadMaxRows(1000)
    end = r.latestOffset(start, ReadMaxRows(1000))
    assert decode_offsets(end, T)[0] == {0: 667, 1: 1000, 2: 333}
    ranges = [(p.partition, p.start, p.end) for p in r.partitions(start, end)]
    assert ranges == [(0, 0, 667), (2, 0, 333)]
    # the engine may ask for everything regardless of the option
    assert decode_offsets(r.latestOffset(start, ReadAllAvailable()), T)[0] == {0: 1000, 1: 1000, 2: 500}


def test_available_now_stops_at_snapshot():
    r = reader({0: (0, 100)})
    r.prepareForTriggerAvailableNow()
    r._wm.wm = {0: (0, 250), 1: (0, 40)}  # more data and a new partition arrive later
    end = r.latestOffset(encode_offsets(T, {0: 60}), ReadAllAvailable())
    assert decode_offsets(end, T)[0] == {0: 100, 1: 0}


def test_reader_pickles_without_clients():
    r = reader({0: (0, 1)})
    clone = pickle.loads(pickle.dumps(r))
    assert clone._wm is None and clone.topic == T
    assert pickle.loads(pickle.dumps(KafkaRange(T, 0, 1, 2, {"bootstrap": "b"}))).end == 2


def test_reader_rejects_several_topics():
    with pytest.raises(ValueError, match="exactly one topic"):
        KafkaStreamReader({"bootstrap.servers": "b", "subscribe": "a,b"})


# -- executor read, over a fake consumer ---------------------------------------- #

Rec = namedtuple("Rec", "offset key value timestamp timestamp_type")


class FakeConsumer:
    """Serves a partition log with gaps, in polls of 3 records."""

    def __init__(self, log, earliest):
        self.log, self.earliest, self.pos = log, earliest, None

    def assign(self, tps):
        (self.tp,) = tps

    def beginning_offsets(self, tps):
        return {tp: self.earliest for tp in tps}

    def seek(self, tp, off):
        self.pos = off

    def poll(self, timeout_ms=0):
        batch = [r for r in self.log if r.offset >= self.pos][:3]
        if batch:
            self.pos = batch[-1].offset + 1
        return {self.tp: batch} if batch else {}

    def position(self, tp):
        return self.pos

    def close(self):
        pass


@pytest.fixture
def fake_log(monkeypatch):
    offsets = [0, 1, 2, 5, 6, 7, 8, 12, 13, 20]  # compaction / transaction-marker gaps
    log = [Rec(o, None if o == 6 else b"k%d" % o, b"v%d" % o, 1_700_000_000_000 + o, 0) for o in offsets]
    state = {"earliest": 0}
    monkeypatch.setattr(ks, "_new_consumer", lambda *a, **k: FakeConsumer(log, state["earliest"]))
    return state


def read_all(start, end, fail=True):
    part = KafkaRange(T, 3, start, end, {"bootstrap": "b", "fail_on_data_loss": fail})
    return list(ks.read_range(part))


def test_read_range_yields_exactly_the_range_as_spark_arrow(fake_log):
    batches = read_all(2, 13)
    expected_schema = to_arrow_schema(ks.SCHEMA, timezone="UTC")
    assert all(b.schema.equals(expected_schema) for b in batches)
    rows = [row for b in batches for row in b.to_pylist()]
    assert [r["offset"] for r in rows] == [2, 5, 6, 7, 8, 12]
    assert rows[2]["key"] is None and rows[0]["value"] == b"v2"
    assert {r["partition"] for r in rows} == {3} and {r["topic"] for r in rows} == {T}
    assert rows[0]["timestamp"].timestamp() == pytest.approx(1_700_000_000.002)


def test_read_range_below_earliest(fake_log):
    fake_log["earliest"] = 7
    with pytest.raises(KafkaDataLossError, match=r"requested offset 2 is below the earliest available offset 7"):
        read_all(2, 13)
    rows = [o for b in read_all(2, 13, fail=False) for o in b.column("offset").to_pylist()]
    assert rows == [7, 8, 12]


# -- first batch: symbolic initial offset ------------------------------------------ #

@pytest.mark.parametrize("spec, ranges", [
    ("latest", []),
    ("earliest", [(0, 20, 100), (1, 0, 60)]),
    ('{"0": 50}', [(0, 50, 100), (1, 0, 60)]),
])
def test_initial_offset_is_resolved_and_pinned_by_the_first_batch(spec, ranges):
    r = reader({0: (20, 100), 1: (0, 60)}, startingOffsets=spec)
    start = r.initialOffset()
    assert start["offsets"] == {} and json.loads(json.dumps(start)) == r.initialOffset()  # stable
    end = r.latestOffset(start, ReadAllAvailable())
    assert end != start  # batch 0 always runs, so Spark checkpoints the resolved offsets
    assert decode_offsets(end, T)[0] == {0: 100, 1: 60}
    assert [(p.partition, p.start, p.end) for p in r.partitions(start, end)] == ranges


def test_initial_json_offset_beyond_end_is_data_loss():
    r = reader({0: (0, 100), 1: (0, 60)}, startingOffsets='{"0": 100, "1": 61}')
    with pytest.raises(KafkaDataLossError, match=r"partition 1: requested offset 61 is beyond the end"):
        r.latestOffset(r.initialOffset(), ReadAllAvailable())
