"""Distinct users over 7 days (uniqCombined(15) states of day_rollups merged across 168 hours) are
within 1 % of the exact count; so are 30 days (day buckets), and events are exact."""

import random
from datetime import datetime, timedelta, timezone

from support.serving import insert_minutes, tenant_name


def test_unique_users_over_7_days_within_1_percent(api, writer, serving_cfg):
    t = tenant_name("uniques")
    rnd = random.Random(20261201)  # fixed ids: the estimate is deterministic, so is the test
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(days=7)
    rows, seen, events = [], set(), 0
    for h in range(7 * 24):
        hour = start + timedelta(hours=h)
        for quarter in range(4):
            users = [f"user-{rnd.randrange(400_000)}" for _ in range(700)]
            seen.update(users)
            events += len(users)
            rows.append(
                (t, hour + timedelta(minutes=15 * quarter), rnd.choice(["US", "DE"]), "mobile", "/", len(users), users)
            )
    insert_minutes(writer, serving_cfg.clickhouse.database, rows)
    key = api.key(t)
    week = api.get("/api/v1/totals", key, start=start.isoformat(), end=end.isoformat()).json()
    assert week.get("bucket") == "hour" and week["grain"] == "hourly", week
    assert week["events"] == events, (week, start, end)
    exact = len(seen)
    assert abs(week["users"] - exact) / exact < 0.01, (week["users"], exact)
    month = api.get("/api/v1/totals", key, start=(end - timedelta(days=30)).isoformat(), end=end.isoformat()).json()
    assert month["bucket"] == "day" and month["grain"] == "hourly" and month["events"] == events
    assert abs(month["users"] - exact) / exact < 0.01, (month["users"], exact)
