"""The real jobs on the cluster profile: `tidemark stream` and `tidemark recompute` on a Spark standalone
cluster (spark://, two workers), reading a 3-broker Kafka cluster (replication 3, min.insync.replicas 2),
with the lake and checkpoints on s3a:// (the embedded S3Proxy; see conftest), reconciled exactly, as on
the embedded stack. One traffic run serves both checks: while the generator sends (acks=all), one broker
is SIGKILLed and later restarted; no acknowledged event is lost, none is doubled, and the stream never
stops. A second run loses a Spark worker mid-stream and stays exact."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.compute as pc
import pytest
from kafka.admin import KafkaAdminClient
from support.broker import consume_all
from support.clickhouse import expected_minute_counts, forget_rows, served_minute_counts
from support.processes import kill_group, wait_group_gone
from support.stream import StreamRun, committed_batches
from support.wait import wait_until

from tidemark import object_store
from tidemark.hours import HOUR
from tidemark.io.kafka_admin import end_offsets, ensure_topic
from tidemark.stack import services
from tidemark.stream.identity import StreamIdentity
from tidemark.stream.options import STREAM_NAME

# Over the suite's 900 s per test: on a 2-core box shared with other work, the cluster's first micro-batch
# and the three hours' recompute each took minutes (load average ~20).
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

START = "2026-11-14T10:20:00Z"  # a day no other test uses (the published-hours registry is shared)
DAY = datetime(2026, 11, 14, tzinfo=timezone.utc)


@dataclass
class ClusterRun(StreamRun):
    """A StreamRun whose lake and checkpoints live under the `storage_roots` fixture's roots."""

    lake_root: str = ""
    checkpoint_root: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "TIDEMARK_LAKE_ROOT": self.lake_root, "TIDEMARK_CHECKPOINT_ROOT": self.checkpoint_root}

    @property
    def identity(self) -> StreamIdentity:
        return StreamIdentity.load_or_create(f"{self.checkpoint_root}/{STREAM_NAME}", self.cfg.object_store)

    def start_generator(self, manifest: Path, *args: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "tidemark.cli", "generate", "--topic", self.topic, "--no-progress"]
        return subprocess.Popen(
            [*argv, "--manifest", str(manifest), *args],
            env=self.env,
            stdout=open(self.workdir / "generate.log", "ab"),
            stderr=subprocess.STDOUT,
        )


def _partition_leaders(cfg, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=cfg.kafka.bootstrap_servers)
    try:
        (desc,) = admin.describe_topics([topic])
        return {p["partition_index"]: p["leader_id"] for p in desc["partitions"]}
    finally:
        admin.close()


def _in_sync(cfg, topic: str) -> int:
    """The smallest in-sync replica set over the topic's partitions."""
    admin = KafkaAdminClient(bootstrap_servers=cfg.kafka.bootstrap_servers)
    try:
        (desc,) = admin.describe_topics([topic])
        return min(len(p["isr_nodes"]) for p in desc["partitions"])
    finally:
        admin.close()


def _executor_zips(cfg) -> set[str]:
    """Applications whose executors fetched the package zip (under the workers' work directories)."""
    work = cfg.home / "spark-cluster"
    return {Path(p).parts[-3] for p in glob.glob(f"{work}/work-*/app-*/*/tidemark.zip")}


def test_stream_and_recompute_on_the_cluster_survive_a_broker_kill(cluster, storage_roots, tmp_path):
    cfg = cluster
    assert cfg.spark.master.startswith("spark://") and len(cfg.kafka.bootstrap_servers.split(",")) == 3
    forget_rows(
        cfg,
        DAY,
        DAY + timedelta(days=1),
        {
            "minute_rollups": "minute",
            "hour_rollups": "hour",
            "late_event_hours": "event_hour",
            "published_hours": "hour",
            "lake_commits": "event_hour",
        },
    )
    lake_root, checkpoint_root = storage_roots
    run = ClusterRun(tmp_path, f"cluster_{uuid.uuid4().hex[:8]}", lake_root, checkpoint_root)
    zips_before = _executor_zips(cfg)

    # The stream first (its first batch on a fresh cluster takes a while), then paced traffic: ~30 s of sends.
    k = cfg.kafka
    assert (k.replication_factor, k.min_insync_replicas) == (3, 2)
    ensure_topic(k.bootstrap_servers, run.topic, k.partitions, replication_factor=3, min_insync=2)
    stream = run.start_stream("--max-offsets-per-trigger", "3000")
    generator = None
    manifest_path = tmp_path / "manifest.json"
    try:
        stream_id = wait_until(lambda: run.identity.stream_id, 300, what="stream identity")
        generator = run.start_generator(
            manifest_path,
            *("--count", "12000", "--rate", "400", "--realtime", "--start-time", START, "--seed", "31"),
            *("--late-fraction", "0.03", "--duplicate-fraction", "0.03", "--malformed-fraction", "0.02"),
        )
        # SIGKILL the leader of partition 0 while the generator sends (and the stream reads).
        sent = lambda: sum(end_offsets(k.bootstrap_servers, run.topic).values())  # noqa: E731
        wait_until(lambda: sent() > 2000, 180, "traffic", ignoring=(RuntimeError,))
        victim_id = _partition_leaders(cfg, run.topic)[0]
        victim = next(s for s in services.services(cfg) if s.name == f"broker-{victim_id}")
        pid = victim.proc.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_group_gone(pid, timeout_s=30)
        batches_at_kill = committed_batches(run.cfg, stream_id)

        # Two brokers left: acks=all writes still meet min.insync.replicas=2, the stream keeps committing.
        assert generator.poll() is None  # the kill landed mid-traffic
        assert generator.wait(timeout=300) == 0, (run.workdir / "generate.log").read_text()[-2000:]
        wait_until(
            lambda: committed_batches(run.cfg, stream_id) > batches_at_kill,
            600,
            "a batch committed while a broker is down",
            interval_s=1,
        )
        assert stream.poll() is None, run.log_tail()
        victim.up()  # log recovery, then it catches up as a follower
        wait_until(lambda: _in_sync(cfg, run.topic) == 3, 300, "the restarted broker back in sync", interval_s=1)

        manifest = json.loads(manifest_path.read_text())
        wait_until(
            lambda: run.report(manifest).on_time_published == manifest["on_time_events"],
            600,
            lambda: f"the stream to publish every on-time event; log: {run.log_tail(10)}",
            interval_s=2,
        )
        assert stream.poll() is None, run.log_tail()  # it never stopped
    finally:
        if generator is not None and generator.poll() is None:
            generator.kill()
            generator.wait()
        kill_group(stream, signal.SIGTERM)

    # Kafka: every acknowledged record once (the idempotent producer's retries wrote no copy).
    records = consume_all(cfg.kafka.bootstrap_servers, run.topic, cfg.kafka.partitions, manifest["messages_sent"])
    assert len(records) == manifest["messages_sent"]

    # The speed layer: exact, as test_stream_pipeline checks it on the embedded stack.
    report = run.report(manifest)
    assert report.on_time_published == manifest["on_time_events"]
    assert report.minute_keys_mismatched == [], report.minute_keys_mismatched[:10]
    assert report.rejected_published == report.rejected_expected
    assert report.late_published == report.late_expected
    raw = object_store.delta_table(run.cfg.object_store, run.cfg.lake.events_raw).to_pyarrow_table(
        columns=["event_id", "kafka_partition", "kafka_offset"]
    )
    assert len(pc.unique(raw.column("event_id"))) == manifest["valid_events"]
    coords = set(zip(raw.column("kafka_partition").to_pylist(), raw.column("kafka_offset").to_pylist(), strict=True))
    assert len(coords) == raw.num_rows  # no record landed twice

    # The batch layer: recompute the traffic's hours on the cluster, then every minute key is exact.
    hours = sorted({datetime.fromisoformat(f"{m[1][:13]}:00+00:00") for m in manifest["minute_counts"]})
    label = lambda h: h.strftime("%Y-%m-%dT%H")  # noqa: E731
    out = tmp_path / "recompute.out"
    recompute = subprocess.Popen(
        [sys.executable, "-m", "tidemark.cli", "recompute", "--from", label(hours[0]), "--to", label(hours[-1] + HOUR)],
        env=run.env,
        stdout=open(out, "wb"),
        stderr=open(tmp_path / "recompute.log", "wb"),
        start_new_session=True,  # its group (CLI, spark-submit JVM, Python driver) is killed whatever happens
    )
    try:
        rc = recompute.wait(timeout=1200)
    finally:
        kill_group(recompute, signal.SIGKILL)
    assert rc == 0, out.read_text()[-2000:] + (tmp_path / "recompute.log").read_text()[-3000:]
    # One summary line per hour (the job's JSON logs may share stdout: they carry no "progress").
    results = [r for r in map(json.loads, filter(lambda x: x.startswith("{"), out.read_text().splitlines()))]
    results = [r for r in results if "progress" in r]
    assert len(results) == len(hours) and {r["status"] for r in results} == {"published"}, results
    for hour in hours:
        assert served_minute_counts(cfg, hour) == expected_minute_counts([manifest], hour), label(hour)

    # Both applications' executors fetched the package zip from the driver (addPyFile), none read the checkout.
    assert len(_executor_zips(cfg) - zips_before) >= 2


def test_a_spark_worker_killed_mid_stream_costs_nothing(cluster, storage_roots, tmp_path):
    """SIGKILL one Spark worker (its JVM, its executor and their Python workers) while the stream works
    through a backlog: the lost tasks run again on the other worker, the stream goes on, totals stay exact."""
    cfg = cluster
    lake_root, checkpoint_root = storage_roots
    run = ClusterRun(tmp_path, f"worker_{uuid.uuid4().hex[:8]}", lake_root, checkpoint_root)
    manifest = run.generate(
        *("--count", "8000", "--rate", "200", "--start-time", "2026-11-14T14:00:00Z", "--seed", "43"),
        *("--late-fraction", "0.02", "--duplicate-fraction", "0.02", "--malformed-fraction", "0.01"),
    )
    stream = run.start_stream("--max-offsets-per-trigger", "1000")  # ~8 batches: the kill lands inside one
    try:
        stream_id = wait_until(lambda: run.identity.stream_id, 300, what="stream identity")
        wait_until(lambda: committed_batches(run.cfg, stream_id) >= 1, 600, "a first committed batch", interval_s=1)
        worker = next(s for s in services.services(cfg) if s.name == "spark-worker-1")
        pid = worker.proc.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)  # the worker, its executor and their Python workers: one process group
        wait_group_gone(pid, timeout_s=30)
        wait_until(
            lambda: run.report(manifest).on_time_published == manifest["on_time_events"],
            600,
            lambda: f"the stream to publish every on-time event on the remaining worker; log: {run.log_tail(10)}",
            interval_s=2,
        )
        assert stream.poll() is None, run.log_tail()
    finally:
        kill_group(stream, signal.SIGTERM)
        next(s for s in services.services(cfg) if s.name == "spark-worker-1").up()  # back for what runs next
    report = run.report(manifest)
    assert report.minute_keys_mismatched == [], report.minute_keys_mismatched[:10]
    assert report.rejected_published == report.rejected_expected
    assert report.late_published == report.late_expected
