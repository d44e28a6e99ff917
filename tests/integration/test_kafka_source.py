"""The tidemark_kafka streaming source end to end: broker -> Spark micro-batches.

Each test uses its own 4-partition topic and checkpoint. Queries run with
Trigger.AvailableNow and collect (partition, offset, key, value) per batch in
foreachBatch, so exactly-once is checked by set equality against what the
producer got acknowledged.
"""
import time
import uuid

import pytest

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture(scope="module")
def spark(stack):
    from pyspark.sql import SparkSession

    from tidemark.spark import session

    existing = SparkSession.getActiveSession()
    spark = session("test-kafka-source", stack)
    yield spark
    if existing is None:
        spark.stop()


@pytest.fixture
def topic(stack, request):
    from tidemark.io.kafka_admin import ensure_topic

    name = f"kafka_source_{request.node.name[:30].strip('_')}_{uuid.uuid4().hex[:8]}"
    ensure_topic(stack.kafka.bootstrap_servers, name, PARTITIONS)
    return name


def produce(stack, topic, count, tag):
    """Send ``count`` records spread over all partitions; return {(partition, offset): (key, value)}."""
    from tidemark.io.kafka_admin import producer

    prod = producer(stack.kafka.bootstrap_servers, linger_ms=20)
    try:
        futures = []
        for i in range(count):
            key, value = f"{tag}-k{i}".encode(), f"{tag}-v{i}".encode()
            futures.append((prod.send(topic, key=key, value=value, partition=i % PARTITIONS), key, value))
        prod.flush()
        out = {}
        for fut, key, value in futures:
            meta = fut.get(timeout=30)
            out[(meta.partition, meta.offset)] = (key, value)
        return out
    finally:
        prod.close()


def run(spark, stack, topic, checkpoint, **options):
    """One availableNow run; returns [(batch_id, [(partition, offset, key, value), ...]), ...]."""
    batches = {}

    def collect(df, batch_id):
        rows = df.select("partition", "offset", "key", "value", "topic", "timestamp").collect()
        assert all(r.topic == topic and r.timestamp is not None for r in rows)
        batches[batch_id] = [(r.partition, r.offset, bytes(r.key), bytes(r.value)) for r in rows]

    reader = (spark.readStream.format("tidemark_kafka")
              .option("bootstrap.servers", stack.kafka.bootstrap_servers)
              .option("subscribe", topic))
    for key, value in options.items():
        reader = reader.option(key, value)
    query = (reader.load().writeStream.foreachBatch(collect)
             .option("checkpointLocation", str(checkpoint))
             .trigger(availableNow=True).start())
    try:
        query.awaitTermination(300)
    finally:
        if query.isActive:
            query.stop()
    if query.exception() is not None:
        raise query.exception()
    return sorted(batches.items())


def rows_of(batches):
    return [row for _, rows in batches for row in rows]


def as_set(rows):
    keys = [(p, o) for p, o, _, _ in rows]
    assert len(keys) == len(set(keys)), "a record was delivered twice"
    return {(p, o): (k, v) for p, o, k, v in rows}


def test_exactly_once_and_restart_from_checkpoint(spark, stack, topic, tmp_path):
    from tidemark.io.kafka_source import _Watermarks, consumer_lag, high_watermarks

    produced = produce(stack, topic, 20_000, "a")
    assert high_watermarks(stack.kafka.bootstrap_servers, topic) == {p: 5000 for p in range(PARTITIONS)}
    fallback = _Watermarks(stack.kafka.bootstrap_servers, topic, {})
    try:  # the public-API fallback (consumer.poll + highwater) agrees with the raw fetch
        assert fallback._fetch_polling(set(range(PARTITIONS))) == {p: (0, 5000) for p in range(PARTITIONS)}
    finally:
        fallback.close()
    checkpoint = tmp_path / "ckpt"

    t0 = time.monotonic()
    first = run(spark, stack, topic, checkpoint, startingOffsets="earliest", failOnDataLoss="true")
    elapsed = time.monotonic() - t0
    assert as_set(rows_of(first)) == produced
    print(f"\n20,000 rows in {elapsed:.1f}s ({len(first)} batches, incl. query start-up)")

    # same checkpoint, nothing new: nothing read
    again = run(spark, stack, topic, checkpoint, startingOffsets="earliest")
    assert rows_of(again) == []

    more = produce(stack, topic, 1_000, "b")
    assert consumer_lag(stack.kafka.bootstrap_servers, topic, {p: 5000 for p in range(PARTITIONS)}) == 1_000
    assert consumer_lag(stack.kafka.bootstrap_servers, topic, {"topic": topic, "offsets": {"0": 5250}}) == 3 * 5250
    third = run(spark, stack, topic, checkpoint, startingOffsets="earliest")
    assert as_set(rows_of(third)) == more


def test_max_offsets_per_trigger_splits_the_backlog(spark, stack, topic, tmp_path):
    produced = produce(stack, topic, 20_000, "c")
    batches = run(spark, stack, topic, tmp_path / "ckpt", startingOffsets="earliest",
                  maxOffsetsPerTrigger="5000")
    sizes = [len(rows) for _, rows in batches]
    assert len([s for s in sizes if s]) >= 4, sizes
    assert max(sizes) <= 5000, sizes
    assert as_set(rows_of(batches)) == produced


def test_starting_offsets_latest_skips_existing_data(spark, stack, topic, tmp_path):
    produce(stack, topic, 500, "old")
    checkpoint = tmp_path / "ckpt"
    assert rows_of(run(spark, stack, topic, checkpoint, startingOffsets="latest")) == []
    new = produce(stack, topic, 300, "new")
    assert as_set(rows_of(run(spark, stack, topic, checkpoint, startingOffsets="latest"))) == new


def test_offset_beyond_the_end_fails_clearly_or_restarts_from_earliest(spark, stack, topic, tmp_path):
    produced = produce(stack, topic, 400, "d")
    beyond = '{"0": 1000000, "1": 0, "2": 0, "3": 0}'
    with pytest.raises(Exception) as err:
        run(spark, stack, topic, tmp_path / "fail", startingOffsets=beyond, failOnDataLoss="true")
    message = str(err.value)
    assert f"topic '{topic}' partition 0: requested offset 1000000 is beyond the end of the log" in message
    assert "failOnDataLoss=false" in message

    rows = rows_of(run(spark, stack, topic, tmp_path / "lenient", startingOffsets=beyond,
                       failOnDataLoss="false"))
    assert as_set(rows) == produced  # partition 0 restarted from its earliest offset
