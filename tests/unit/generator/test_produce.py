"""The Kafka send path (confluent-kafka) against a fake producer: placement, timestamps, delivery
accounting (no manifest unless every record is acked) and a full local queue."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from tidemark.config import load
from tidemark.generator import TrafficOptions, generate, produce
from tidemark.generator.produce import PRODUCER_CONFIG, DeliveryError, GenerateOptions, run
from tidemark.io import kafka_admin

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
START_MS = 1_767_225_600_000


class FakeError:
    def __init__(self, text: str, fatal: bool = False):
        self.text, self._fatal = text, fatal

    def fatal(self) -> bool:
        return self._fatal

    def __str__(self) -> str:
        return self.text


class FakeProducer:
    """Just the confluent_kafka.Producer surface the generator uses."""

    def __init__(self, acks, *, only_errors=True, fail_at=(), stuck=0, buffer_full_every=0, partitions=4):
        self.acks, self.only_errors = acks, only_errors
        self.fail_at, self.stuck, self.buffer_full_every = set(fail_at), stuck, buffer_full_every
        self.partitions = partitions
        self.queue: list[tuple] = []
        self.produced: list[tuple] = []
        self.buffer_errors = 0
        self._calls = 0
        self._event = threading.Condition()  # librdkafka's event queue: produce() adds to it

    def produce(self, topic, value=None, key=None, partition=-1, timestamp=0):
        self._calls += 1
        if self.buffer_full_every and self._calls % self.buffer_full_every == 0:
            self.buffer_errors += 1
            raise BufferError("Local: Queue full")
        with self._event:
            self.queue.append((topic, value, key, partition, timestamp))
            self._event.notify_all()

    def poll(self, timeout=None):
        served = 0
        while len(self.queue) > self.stuck:
            msg = self.queue.pop(0)
            index = len(self.produced)
            self.produced.append(msg)
            if index in self.fail_at:
                self.acks.on_delivery(FakeError("Local: Message timed out"), msg)
            elif not self.only_errors:
                self.acks.on_delivery(None, msg)
            served += 1
        if not served and timeout:
            # like librdkafka: block until an event (a record to deliver) or the timeout
            with self._event:
                self._event.wait_for(lambda: len(self.queue) > self.stuck, timeout)
        return served

    def flush(self, timeout=None):
        self.poll()
        return len(self.queue)

    def purge(self, in_queue=True, in_flight=True):
        self.queue.clear()

    def __len__(self):
        return len(self.queue)

    def list_topics(self, topic=None, timeout=-1):
        parts = {p: None for p in range(self.partitions)}
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions=parts)})


@pytest.fixture
def fake_kafka(monkeypatch):
    """Patch the broker away; returns a dict the test fills with FakeProducer keyword arguments."""
    made: dict = {"kwargs": {}, "producer": None}
    monkeypatch.setattr(kafka_admin, "broker_reachable", lambda bootstrap, timeout_s=3.0: True)
    monkeypatch.setattr(kafka_admin, "ensure_topic", lambda bootstrap, topic, partitions, **kw: partitions)

    def make(bootstrap, acks, overrides):
        config = {**PRODUCER_CONFIG, **overrides}
        only_errors = bool(config.get("delivery.report.only.error"))
        made["producer"] = FakeProducer(acks, only_errors=only_errors, **made["kwargs"])
        made["config"] = config
        return made["producer"], only_errors

    monkeypatch.setattr(produce, "_make_producer", make)
    return made


def _options(tmp_path, **kw) -> GenerateOptions:
    base = dict(
        count=3000,
        start_time=START,
        topic="t",
        bootstrap="127.0.0.1:1",
        realtime=False,
        progress=False,
        manifest=tmp_path / "manifest.json",
        late_fraction=0.05,
        duplicate_fraction=0.05,
        malformed_fraction=0.05,
    )
    base.update(kw)
    return GenerateOptions(**base)


def test_every_record_is_produced_with_its_partition_and_timestamp(fake_kafka, tmp_path):
    timings: dict = {}
    doc = run(_options(tmp_path, timings=timings), load())
    producer = fake_kafka["producer"]
    expected, _ = generate(
        TrafficOptions(
            start_ms=START_MS,
            count=3000,
            late_fraction=0.05,
            duplicate_fraction=0.05,
            malformed_fraction=0.05,
            partitions=4,
        )
    )
    assert producer.produced == [("t", r.value, r.key, r.partition, r.timestamp_ms) for r in expected]
    assert doc["messages_sent"] == 3000 and (tmp_path / "manifest.json").exists()
    assert timings["records"] == 3000 and 0 < timings["send_seconds"] <= timings["ack_seconds"]


def test_a_failed_delivery_raises_and_writes_no_manifest(fake_kafka, tmp_path):
    fake_kafka["kwargs"] = {"fail_at": {1234}}
    with pytest.raises(DeliveryError, match="1 of 3000 records failed"):
        run(_options(tmp_path), load())
    assert not (tmp_path / "manifest.json").exists()


def test_records_left_unresolved_after_flush_raise(fake_kafka, tmp_path):
    fake_kafka["kwargs"] = {"stuck": 3}
    with pytest.raises(DeliveryError, match="3 unresolved"):
        run(_options(tmp_path), load())
    assert not (tmp_path / "manifest.json").exists()


def test_full_delivery_reports_are_counted_too(fake_kafka, tmp_path):
    run(_options(tmp_path, producer_overrides={"delivery.report.only.error": False}), load())
    assert fake_kafka["producer"].acks.ok == 3000
    fake_kafka["kwargs"] = {"fail_at": {7}}
    with pytest.raises(DeliveryError):
        run(
            _options(tmp_path, manifest=tmp_path / "m2.json", producer_overrides={"delivery.report.only.error": False}),
            load(),
        )
    assert not (tmp_path / "m2.json").exists()


def test_a_full_local_queue_is_drained_and_retried(fake_kafka, tmp_path):
    fake_kafka["kwargs"] = {"buffer_full_every": 97}
    run(_options(tmp_path), load())
    producer = fake_kafka["producer"]
    assert producer.buffer_errors > 10
    assert len(producer.produced) == 3000  # each record exactly once


def test_realtime_paces_to_the_wall_clock(fake_kafka, tmp_path):
    started = time.monotonic()
    run(_options(tmp_path, count=60, rate=100.0, realtime=True), load())
    assert time.monotonic() - started >= 0.55  # 60 records at 100/s span 0.59 s of simulated time


def test_producer_config():
    assert PRODUCER_CONFIG["enable.idempotence"] is True and PRODUCER_CONFIG["acks"] == "all"
    assert PRODUCER_CONFIG["compression.type"] == "lz4"
    assert PRODUCER_CONFIG["partitioner"] == "murmur2_random"  # Java / kafka-python placement
    assert PRODUCER_CONFIG["linger.ms"] >= 20 and PRODUCER_CONFIG["batch.size"] >= 512 * 1024


def test_librdkafka_accepts_the_config():
    pytest.importorskip("confluent_kafka")
    acks = produce._Acks()
    producer, only_errors = produce._make_producer("127.0.0.1:9", acks, {"socket.connection.setup.timeout.ms": 1000})
    assert only_errors
    producer.poll(0)  # serves the "connection refused" error/log events through the callbacks
    assert acks.fatal is None
    del producer
