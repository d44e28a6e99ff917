"""The minute tier's horizon: once the hot step (tidemark/tiering/hot.py) drops a day of minute rows,
a question only the minute grain answers (two filters combined, a range off hour boundaries, minute
buckets) over that day is refused with a 400 that says why, never answered partially; a question
the hour grain answers the same (whole hours, at most one filter) is still answered, exactly, also
when it runs from whole hours before the horizon into minutes after it.

The hot step records the horizon before it drops anything, and waits (TieringSettings.
horizon_grace_s) until every API process has read it or refuses to answer.

The day dropped is ~120 days old: older than any range the other tests of the session ask (the
horizon is database-wide), and its row is deleted afterwards so a kept database forgets it."""

import dataclasses
from datetime import datetime, timedelta, timezone

from support.serving import insert_minutes, tenant_name
from support.wait import wait_until

from tidemark.tiering import hot
from tidemark.tiering.options import boundaries


def test_dropped_minute_day_refuses_minute_only_questions_and_hour_grain_still_answers(api, writer, serving_cfg):
    db = serving_cfg.clickhouse.database
    t = tenant_name("horizon")
    key = api.key(t)
    day = (datetime.now(timezone.utc) - timedelta(days=120)).replace(hour=0, minute=0, second=0, microsecond=0)
    ten = day + timedelta(hours=10)
    # 10:00-12:59: US/mobile 2 events a minute, DE/desktop 1
    rows = []
    for m in range(180):
        rows.append((t, ten + timedelta(minutes=m), "US", "mobile", "/", 2, [f"u{m}"]))
        rows.append((t, ten + timedelta(minutes=m), "DE", "desktop", "/a", 1, [f"v{m}"]))
    # 22:00 to 01:59 of the next day (kept): the same, users unique per minute too
    night = day + timedelta(hours=22)
    for m in range(240):
        rows.append((t, night + timedelta(minutes=m), "US", "mobile", "/", 2, [f"n{m}"]))
        rows.append((t, night + timedelta(minutes=m), "DE", "desktop", "/a", 1, [f"m{m}"]))
    insert_minutes(writer, db, rows)

    def ask(path, **params):
        return api.get(path, key, **params)

    def span(start, end):
        return {"start": str(int(start.timestamp())), "end": str(int(end.timestamp()))}

    # Before the drop, the minute grain answers a two-filter question (a range not asked again below).
    before = ask("/api/v1/totals", country="US", device="mobile", **span(ten, ten + timedelta(hours=3)))
    assert before.status_code == 200 and before.json()["events"] == 360, before.text
    # ... and a range from whole hours of the day to be dropped into minutes of the next one
    straddle = span(night, night + timedelta(minutes=210))  # 22:00 .. 01:30
    minute_answer = ask("/api/v1/totals", country="US", **straddle)
    assert minute_answer.status_code == 200 and minute_answer.json()["grain"] == "minute", minute_answer.text
    assert (minute_answer.json()["events"], minute_answer.json()["users"]) == (420, 210), minute_answer.json()

    bounds = dataclasses.replace(
        boundaries(serving_cfg, datetime.now(timezone.utc)), hot_from=(day + timedelta(days=1)).date()
    )
    # The hot step waits this long between recording the horizon and dropping: a few of the test
    # API's 1 s refreshes (the default, ~40 s, also covers an API whose refreshes keep failing).
    cfg = dataclasses.replace(serving_cfg, tiering=dataclasses.replace(serving_cfg.tiering, horizon_grace_s=3.0))
    try:
        results = {r.day: r for r in hot.run(cfg, bounds, run_id="horizon-test")}
        assert results[day.date().isoformat()].dropped, results[day.date().isoformat()]
        through = int((day + timedelta(days=1)).timestamp())
        (recorded, recorded_at, rows) = writer.execute(
            f"SELECT toUInt32(max(dropped_through)), toUInt32(min(recorded_at)), count() FROM {db}.minute_horizon "
            f"WHERE dropped_through >= toDateTime(%(t)s)",
            {"t": through},
        )[0]
        assert recorded == through and rows == 1
        # recorded before the drop, and recording again (a rerun after a crash) writes nothing new
        assert hot.record_horizon(writer, db, day + timedelta(days=1), "again") == recorded_at
        assert writer.execute(
            f"SELECT count() FROM {db}.minute_horizon WHERE dropped_through >= toDateTime(%(t)s)", {"t": through}
        ) == [(1,)]
        # the API reads the horizon with each registry refresh (1 s here)
        wait_until(
            lambda: api.metrics().get("tidemark_minute_horizon", 0) >= through,
            10,
            "the API to read the minute horizon",
            interval_s=0.1,
        )

        two_filters = ask("/api/v1/totals", country="US", device="mobile", **span(ten, ten + timedelta(hours=2)))
        assert two_filters.status_code == 400, two_filters.text
        body = two_filters.json()
        assert body["error"] == "minute_detail_dropped" and "two dimensions" in body["detail"], body
        assert "no longer kept" in body["detail"]

        off_hours = ask("/api/v1/top", dimension="page", **span(ten + timedelta(minutes=30), ten + timedelta(hours=2)))
        assert off_hours.status_code == 400 and "whole hours" in off_hours.json()["detail"], off_hours.text

        minute_buckets = ask("/api/v1/timeseries", **span(ten, ten + timedelta(hours=2)))
        assert minute_buckets.status_code == 400 and "minute buckets" in minute_buckets.json()["detail"]

        # whole hours before the horizon, minutes after it, one dimension: hour_rollups then
        # minute_rollups (the same distinct-user states), exactly what the minute grain answered
        both = ask("/api/v1/totals", country="US", **straddle)
        assert both.status_code == 200 and both.json()["grain"] == "hour+minute", both.text
        assert (both.json()["events"], both.json()["users"]) == (420, 210), both.json()
        top_both = ask("/api/v1/top", dimension="country", **straddle)
        assert top_both.status_code == 200, top_both.text
        assert [(r["value"], r["events"], r["users"]) for r in top_both.json()["rows"]] == [
            ("US", 420, 210),
            ("DE", 210, 210),
        ]
        off_hour_start = ask(
            "/api/v1/totals", country="US", **span(night + timedelta(minutes=30), night + timedelta(hours=3))
        )
        assert off_hour_start.status_code == 400, off_hour_start.text
        assert "whole hours before the horizon" in off_hour_start.json()["detail"]

        # whole hours, one filter: the hour grain gives the same answer the minute grain gave
        one_filter = ask("/api/v1/totals", country="US", **span(ten, ten + timedelta(hours=2)))
        assert one_filter.status_code == 200, one_filter.text
        assert one_filter.json()["events"] == 240 and one_filter.json()["grain"] == "hourly", one_filter.json()
        top = ask("/api/v1/top", dimension="country", **span(ten, ten + timedelta(hours=3)))
        assert top.status_code == 200, top.text
        assert [(r["value"], r["events"]) for r in top.json()["rows"]] == [("US", 360), ("DE", 180)]
    finally:  # a kept test database must not keep this horizon for later runs
        writer.execute(
            f"ALTER TABLE {db}.minute_horizon DELETE WHERE dropped_through <= toDateTime(%(t)s)",
            {"t": int((day + timedelta(days=1)).timestamp())},
        )
