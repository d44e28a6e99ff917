"""Machinery for the Airflow DAG tests (tests/integration/orchestration): raw events written into an hour
of the lake, a stream that has caught up with the topic (the hourly sensor's condition), and the
published-hours registry's latest row for an hour. Used by dag.test() runs and by the runs through a
real scheduler (standalone, or Postgres + Celery)."""

import json
import uuid
from datetime import datetime, timedelta, timezone


def raw_rows(hour, n, *, tenant="tenant-airflow", late=False, start_minute=0):
    """n distinct valid events in ``hour`` (one user each)."""
    now = datetime.now(timezone.utc)
    rows = []
    for i in range(n):
        t = hour + timedelta(minutes=(start_minute + i) % 60, seconds=i % 60)
        rows.append(
            (
                str(uuid.uuid4()),
                tenant,
                t,
                f"u-{start_minute + i}",
                "s1",
                "US",
                "desktop",
                "/airflow",
                None,
                1,
                late,
                "manual",
                0,
                i,
                t,
                now,
                0,
                hour.date(),
                hour.hour,
            )
        )
    return rows


def write_hour(spark, cfg, rows, *, replace_hour=None):
    """Write raw rows into the lake; with replace_hour, replace that hour's partition (re-runnable)."""
    from tidemark.tables import ensure_delta_table, table

    schema = table("events_raw")
    ensure_delta_table(spark, "events_raw", cfg.lake.events_raw)
    w = spark.createDataFrame(rows, schema.spark()).write.format("delta").partitionBy(*schema.partition_by)
    if replace_hour is not None:
        w = w.mode("overwrite").option(
            "replaceWhere", f"event_date = '{replace_hour.date()}' AND event_hour = {replace_hour.hour}"
        )
    else:
        w = w.mode("append")
    w.save(cfg.lake.events_raw)


def stream_caught_up(cfg):
    """A stream that has committed everything the topic holds now: the hourly sensor's condition
    for any hour whose end + lateness has passed (the sensor reads real Kafka offsets)."""
    from tidemark.io.clickhouse import client, insert_rows
    from tidemark.io.kafka_admin import end_offsets, ensure_topic
    from tidemark.stream import identity as stream_identities
    from tidemark.stream.metrics import PROGRESS_COLUMNS

    topic = cfg.kafka.topic
    ensure_topic(cfg.kafka.bootstrap_servers, topic, cfg.kafka.partitions)
    stream_id = f"test-airflow-dags-{uuid.uuid4().hex[:8]}"
    stream_identities.register(cfg, stream_id, 1, topic, "/nowhere", datetime.now(timezone.utc))
    stream_identities.record_promotion(
        client(cfg.clickhouse), cfg.clickhouse.database, topic, stream_id, 1, by="test", reason="caught up"
    )
    ends = end_offsets(cfg.kafka.bootstrap_servers, topic)
    insert_rows(
        client(cfg.clickhouse),
        f"{cfg.clickhouse.database}.stream_progress",
        PROGRESS_COLUMNS,
        [(stream_id, 0, datetime.now(timezone.utc), 0, 0.0, 0.0, 0, 0, "", json.dumps(ends), 0)],
    )


def latest_registry_row(cfg, hour):
    from tidemark.io.clickhouse import client

    rows = client(cfg.clickhouse).execute(
        f"SELECT status, version, dedup_rows, run_id FROM {cfg.clickhouse.database}.published_hours "
        f"WHERE hour = %(h)s ORDER BY sequence DESC LIMIT 1",
        {"h": hour},
    )
    return rows[0] if rows else None
