"""Issue 23, item 7: one tenant's event ids must never erase another tenant's events.

Tenant B sends 10 events carrying the ids of 10 events tenant A has just sent (an SDK bug, a
shared id generator). Before the fix both layers deduplicated by event_id alone: none of B's
events was counted and none dead-lettered. Here the real stream (spark-submit) and a real batch
recompute of the hour (delta-spark, GE gates, publication) must count all 20, while a true re-send
within a tenant still counts once."""

import random
import uuid
from datetime import datetime, timedelta, timezone

import deltalake
from support.broker import Sent, event, send
from support.clickhouse import forget_rows
from support.stream import StreamRun

from tidemark.batch.recompute import recompute
from tidemark.io.clickhouse import client
from tidemark.lambda_merge import minute_counts


def _served(run: StreamRun, hour: datetime, tenants: list[str]) -> dict[str, int]:
    cfg = run.cfg
    totals: dict[str, int] = dict.fromkeys(tenants, 0)
    for tenant, *_key, events in minute_counts(
        client(cfg.clickhouse), cfg.clickhouse.database, hour, hour + timedelta(hours=1), tenants
    ):
        totals[tenant] += events
    return totals


def test_the_same_event_ids_under_two_tenants_are_all_counted(stack, spark, tmp_path):
    # An hour of its own (the published-hours registry is shared by the test database): a random
    # recent past hour (Kafka timestamps plausible, freshness within its column), no other test publishes it.
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    hour = now - timedelta(hours=random.randint(24 * 3, 24 * 40))
    forget_rows(stack, hour, hour + timedelta(hours=1), {"published_hours": "hour", "minute_rollups": "minute"})
    run = StreamRun.create(tmp_path, "tenants")
    a, b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    ids = [str(uuid.uuid4()) for _ in range(10)]
    at = [hour + timedelta(minutes=5, seconds=i) for i in range(10)]
    records = [
        Sent(event(a, t, event_id=i, user=f"ua{n}"), t + timedelta(seconds=1))
        for n, (i, t) in enumerate(zip(ids, at, strict=True))
    ]
    records += [
        Sent(event(b, t, event_id=i, user=f"ub{n}"), t + timedelta(seconds=2))
        for n, (i, t) in enumerate(zip(ids, at, strict=True))
    ]
    records.append(Sent(records[-1].value, at[-1] + timedelta(seconds=3)))  # B re-sends one: a real duplicate
    send(run.cfg, run.topic, records)

    run.run_available_now()
    raw = deltalake.DeltaTable(run.cfg.lake.events_raw).to_pyarrow_table(columns=["tenant_id", "event_id"])
    landed = sorted(zip(raw.column("tenant_id").to_pylist(), raw.column("event_id").to_pylist(), strict=True))
    assert landed == sorted([(a, i) for i in ids] + [(b, i) for i in ids])  # the lake keeps every event once
    assert _served(run, hour, [a, b]) == {a: 10, b: 10}  # the speed layer counts both tenants

    summary = recompute(spark, run.cfg, hour)
    assert summary.status == "published", summary.reason
    assert (summary.raw_rows, summary.dedup_rows) == (20, 20)
    assert _served(run, hour, [a, b]) == {a: 10, b: 10}  # now from the published batch version
