"""`tidemark reconcile`'s distinct-users check on the real ClickHouse, with the rows a stream writes
(rollup_input -> the MVs) and its committed-batch registry, no Spark: other traffic in the same hour
must not read as a users error (issue 21: "max relative error 0.5001" with every count exact)."""

import random
from datetime import datetime, timedelta, timezone

from tidemark.io.clickhouse import insert_rows
from tidemark.stream.identity import stream_version
from tidemark.stream.reconcile import stream_report
from tidemark.stream.sink import BATCH_COLUMNS
from tidemark.tables import ROLLUP_INPUT_COLUMNS


def _commit(ch, db, stream_id, epoch, batch, committed_at, rows):
    """One micro-batch as the sink writes it: its rollup rows, then its registry row."""
    version = stream_version(epoch, batch)
    insert_rows(ch, f"{db}.rollup_input", ROLLUP_INPUT_COLUMNS, [("stream", version, *r) for r in rows])
    empty = (0, 0, 0, [], [], 0, 0, committed_at, 0.0, 0.0, 0.0, [], [])
    insert_rows(ch, f"{db}.stream_batches", BATCH_COLUMNS, [(stream_id, batch, version, committed_at, *empty)])


def test_other_traffic_in_the_same_hour_is_not_a_users_error(stack, clickhouse):
    db = stack.clickhouse.database
    epoch = random.randrange(10**9, 10**10)  # a version range no real stream has
    stream_id, tenant = f"reconcile-users-{epoch}", f"t-reconcile-{epoch}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    hour = now.replace(minute=0, second=0) - timedelta(hours=2)
    earlier = [(tenant, hour + timedelta(minutes=5), "US", "desktop", "/", 100, [f"u{i}" for i in range(100)])]
    ours = [(tenant, hour + timedelta(minutes=30), "DE", "mobile", "/a", 50, [f"v{i}" for i in range(50)])]
    _commit(clickhouse, db, stream_id, epoch, 0, now - timedelta(minutes=10), earlier)
    _commit(clickhouse, db, stream_id, epoch, 1, now, ours)
    label = hour.strftime("%Y-%m-%dT%H")
    manifest = {
        "minute_counts": [
            [tenant, (hour + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M"), "DE", "mobile", "/a", 50, 50]
        ],
        "distinct_users_hour": [[tenant, label, 50, 50]],
        "on_time_events": 50,
        "late_events_per_tenant_hour": [],
        "malformed": {},
        "duplicates_sent": 0,
    }

    # Every batch: the hour's rows hold both traffics (150 users): not comparable, said so, no error.
    everything = stream_report(stack, manifest, stream_id, epoch)
    assert everything.exact and everything.users_hours_compared == 0
    assert everything.users_hours_not_comparable == [[tenant, label, 50, 150]]
    assert "not compared" in everything.users_line()

    # --since the traffic's start: only its own batch, compared like with like.
    since = stream_report(stack, manifest, stream_id, epoch, since=now - timedelta(minutes=1))
    assert since.exact and since.users_hours_not_comparable == []
    assert (since.users_hours_compared, since.users_hour_max_error) == (1, 0.0)
