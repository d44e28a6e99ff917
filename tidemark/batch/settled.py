"""Settled-day states: a day whose 24 hours are all published, summed once into one row per
(tenant, dimension, value, day) (025_settled_days.sql), so a long-range question merges one
distinct-user state per day instead of 24.

A build is tied to the versions it was made from (``lambda_merge.day_digest``); a reader takes it
only while its own registry snapshot holds exactly those versions, so a republished hour is never
hidden: until the day is built again, readers fall back to the hour rows. Built after every publish
(``tidemark.batch.recompute.conclude``) and by ``tidemark settle`` for a range of days.

Idempotent: a day already built from the current versions is skipped; a day not wholly published is
skipped (``None``). The build's rows are written first, its ``settled_days`` row last, so a build
is visible only complete; the rows of a build that died half-way are never read.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime, timedelta, timezone

from tidemark.config import Settings
from tidemark.io.clickhouse import client, insert_rows
from tidemark.lambda_merge import DAY_S, day_digest, merged_filter, snapshot

log = logging.getLogger(__name__)


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def build_day(cfg: Settings, day: date, ch=None) -> int | None:
    """Build ``day``'s settled states from its published versions; returns the build id (an existing
    one when the day is already built from these versions), or None when an hour is not published."""
    ch = ch or client(cfg.clickhouse)
    db = cfg.clickhouse.database
    start = _day_start(day)
    day_s = int(start.timestamp())
    snap = snapshot(ch, db, start, start + timedelta(days=1))
    digest = day_digest(snap.versions, day_s)
    if digest is None:
        return None
    existing = ch.execute(
        f"SELECT max(build), count() FROM {db}.settled_days WHERE day_start = toDateTime(%(d)s) AND digest = %(g)s",
        {"d": day_s, "g": digest},
    )[0]
    if existing[1]:
        return int(existing[0])
    build = time.time_ns()
    params = {"d": day_s, "e": day_s + DAY_S, "b": build, **snap.params()}
    ch.execute(
        f"INSERT INTO {db}.settled_day_rollups (tenant_id, dimension, day_start, build, value, events, users) "
        f"SELECT tenant_id, dimension, toDateTime(%(d)s, 'UTC'), toUInt64(%(b)s), value, sum(events), "
        f"uniqCombinedMergeState(15)(users) FROM {db}.day_rollups "
        f"WHERE day = toDate(toDateTime(%(d)s, 'UTC')) AND hour >= toDateTime(%(d)s) AND hour < toDateTime(%(e)s) "
        f"AND {merged_filter('toUInt32(hour)')} GROUP BY tenant_id, dimension, value",
        params,
    )
    (rows,) = ch.execute(
        f"SELECT count() FROM {db}.settled_day_rollups WHERE day_start = toDateTime(%(d)s) AND build = %(b)s",
        params,
    )[0]
    marker = (start, build, digest, int(rows), datetime.now(timezone.utc).replace(microsecond=0))
    insert_rows(ch, f"{db}.settled_days", ("day_start", "build", "digest", "rows", "built_at"), [marker])
    log.info("settled day built", extra={"day": day.isoformat(), "build": build, "rows": rows, "digest": digest})
    return build


def build_days(cfg: Settings, first: date, last: date) -> dict[str, int | None]:
    """``build_day`` for every day from ``first`` to ``last`` (inclusive): day -> build (None: not settled)."""
    ch = client(cfg.clickhouse)
    out: dict[str, int | None] = {}
    day = first
    while day <= last:
        out[day.isoformat()] = build_day(cfg, day, ch)
        day += timedelta(days=1)
    return out


def after_publish(cfg: Settings, hour: datetime) -> int | None:
    """Rebuild the published hour's day if it is now wholly published. Best effort: a publish stands
    without it (readers fall back to the hour rows), so a failure is logged, not raised."""
    try:
        return build_day(cfg, hour.astimezone(timezone.utc).date())
    except Exception as exc:  # noqa: BLE001 - never fail or undo a publish for a read accelerator
        log.warning(
            "could not build the settled day; long-range reads use the hour rows until `tidemark settle` runs",
            extra={"hour": hour.isoformat(), "error": str(exc)[:300]},
        )
        return None
