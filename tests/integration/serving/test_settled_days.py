"""Settled-day states end to end: a day whose 24 hours are published is built into one row per value
(tidemark/batch/settled.py); long-range questions then read that day whole and answer exactly what
the hour rows answer. A republished hour of the day is never hidden: until the day is built again, its
digest no longer matches the registry and readers fall back to the hour rows, through the API too."""

import dataclasses
import secrets
from datetime import datetime, timedelta, timezone

from support.serving import insert_minutes, publish, tenant_name
from support.wait import wait_until

from tidemark.batch import settled
from tidemark.lambda_merge import settled_days, snapshot
from tidemark.serving import queries
from tidemark.serving.queries import Filters
from tidemark.serving.ranges import resolve


def _hour_rows(tenant, hour, a_events, a_users):
    return [
        (tenant, hour, "US", "mobile", "/a", a_events, a_users),
        (tenant, hour + timedelta(minutes=30), "DE", "desktop", "/b", 3, ["u6"]),
    ]


def _answers(ch, db, tenant, snap):
    """The 90-day totals, top pages and daily users series, read with ``snap`` (the API's way)."""
    now = datetime.now(timezone.utc).timestamp()
    r90 = resolve(now, "90d")
    plans = [
        queries.totals(db, tenant, r90, Filters(), False),
        queries.top(db, tenant, r90, "page", 5, Filters()),
        queries.time_series(db, tenant, r90, "users", Filters(page="/a"), False),
    ]
    return [queries.execute(ch, db, p, snap=snap) for p in plans]


def test_settled_day_answers_as_the_hours_do_and_a_republish_is_never_hidden(api, writer, serving_cfg):
    cfg, db, ch = serving_cfg, serving_cfg.clickhouse.database, writer
    t = tenant_name("settled")
    # Publishing hides every tenant's streaming rows of those hours (the registry is per hour): a day 60 days
    # back, which no other test of the session reads exactly, with versions of this run only (a version's rows
    # never change once published, as in the batch layer).
    day = (datetime.now(timezone.utc) - timedelta(days=60)).replace(hour=0, minute=0, second=0, microsecond=0)
    base = 10**12 + secrets.randbelow(10**9) * 100
    users = [f"u{i}" for i in range(1, 6)]
    for h in range(24):
        hour = day + timedelta(hours=h)
        insert_minutes(ch, db, _hour_rows(t, hour, 10, users), layer="batch", version=base + h)
        assert settled.build_day(cfg, day.date()) is None, "not wholly published yet: no build"
        publish(ch, db, hour, base + h)

    def reader_snapshot():
        start, end = day - timedelta(days=100), datetime.now(timezone.utc) + timedelta(hours=2)
        snap = snapshot(ch, db, start, end)
        return dataclasses.replace(snap, settled=settled_days(ch, db, snap, start, end))

    hours_only = _answers(ch, db, t, None)  # no snapshot given: read now, no settled days
    assert hours_only[0] == {"events": 24 * 13, "users": 6}
    assert hours_only[1] == [{"value": "/a", "events": 240, "users": 5}, {"value": "/b", "events": 72, "users": 1}]

    build = settled.build_day(cfg, day.date())
    assert build and settled.build_day(cfg, day.date()) == build, "a second build of the same versions is skipped"
    snap = reader_snapshot()
    assert snap.settled.get(int(day.timestamp())) == build
    # The day_rollups side leaves settled days out: equal answers mean the settled rows supplied the day.
    assert _answers(ch, db, t, snap) == hours_only

    # The API (its registry refresh reads the settled days too) answers the same.
    wait_until(lambda: api.metrics().get("tidemark_settled_days", 0) >= 1, 30, "the API to take the settled day")
    key = api.key(t)
    assert api.get("/api/v1/totals", key, range="90d").json()["events"] == 312

    # Republish 05:00 with other figures: the day's digest changes, the old build is not taken.
    five = day + timedelta(hours=5)
    insert_minutes(ch, db, _hour_rows(t, five, 20, [*users, "u7"]), layer="batch", version=base + 99)
    publish(ch, db, five, base + 99)
    stale = reader_snapshot()
    assert int(day.timestamp()) not in stale.settled
    republished = _answers(ch, db, t, stale)
    assert republished[0] == {"events": 312 + 10, "users": 7}
    assert republished == _answers(ch, db, t, None)
    wait_until(
        lambda: api.get("/api/v1/totals", key, range="90d").json()["events"] == 322,
        30,
        "the API to answer the republished hour (its snapshot no longer takes the old build)",
        interval_s=0.5,
    )

    # After the publish the batch layer builds the day again (recompute.conclude -> settled.after_publish).
    rebuilt = settled.after_publish(cfg, five)
    assert rebuilt and rebuilt != build
    fresh = reader_snapshot()
    assert fresh.settled.get(int(day.timestamp())) == rebuilt
    assert _answers(ch, db, t, fresh) == republished
