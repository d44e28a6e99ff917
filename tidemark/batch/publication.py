"""Publishing one hour: stage -> gate -> switch -> clean up. The one owner of an hour's versions.

Who may write what, and when:

* A run stages its rollups under a **new version, unique to the run** (``begin`` records it as
  ``staged`` first). Staged rows are invisible: readers only read the version the registry calls
  current. A re-run never reuses a version, so nothing it writes or deletes can touch rows a
  reader or another run depends on.
* **Gate.** A failed gate records ``failed_quality`` and removes the run's own version only.
* **Switch** = one registry insert (``published``). The current version of an hour is the
  published row with the highest (Delta version read, sequence): a run that read an older
  snapshot can never replace a newer one. Compare-and-set: a run whose snapshot is older than
  what is already current does not switch (``discarded``) and removes its own rows. Two switches
  at the same moment commute: the ordering picks the same winner whichever lands last. The
  switch also checks its own version: still staged (no clean-up or run discarded it) and whole
  (its rows in every rollup table add up to what staging wrote). A publish task that runs long
  after staging (a scheduler or worker outage) would otherwise publish an hour whose rows
  clean-up already removed: it would serve 0, and never look dirty again. Refused, it raises
  ``PublishRefused``; the hour keeps its current version and stays dirty (or unpublished), so
  the next run recomputes it.
* **Clean up** removes only versions that are not current and (a) failed or were discarded, or
  (b) were superseded at least ``SUPERSEDED_GRACE`` ago, or (c) were staged by a run that has
  not switched for ``STAGING_TIMEOUT`` (a dead run). Never the current version, never a young
  staged version (another live run's), so a reader never sees a gap and never a partial hour.

The switch and clean-up of (c) meet on the registry, which is append-only (no transaction):
the switch first records a claim (a ``staged`` row), then reads the version's log and refuses
if it was discarded; clean-up first records ``discarded``, then reads the log again and removes
the rows only if nobody wrote to it meanwhile. Each writes before it reads, so at least one sees
the other: either the switch refuses or clean-up leaves the rows. A claim also shields the
version from clean-up for ``STAGING_TIMEOUT``: a switch stalled longer than that between its
checks and its insert is the one case left open.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import NoReturn

from tidemark.batch import registry
from tidemark.config import Settings
from tidemark.errors import TidemarkError
from tidemark.hours import label
from tidemark.io.clickhouse import client

log = logging.getLogger(__name__)

# Bump when the recompute's output for the same input changes (transforms, dedup rule), so a
# recompute of unchanged data still publishes the new logic.
TRANSFORM_VERSION = "rollups-v2"  # v2: dedup by (tenant_id, event_id), not event_id alone
# A superseded version stays readable this long after the switch, for readers that resolved the
# registry just before it.
SUPERSEDED_GRACE = timedelta(minutes=10)
# A staged version whose run has not switched or failed within this long belongs to a dead run.
STAGING_TIMEOUT = timedelta(hours=3)
_VERSION_BITS = 59  # batch versions stay below 2**60 (the bench's throw-away versions live above)


class PublishRefused(TidemarkError, RuntimeError):
    """The switch found its version discarded or not whole; nothing was published."""


def content_key(hour: datetime, files: Iterable[str]) -> str:
    """What a version is computed from: the hour's lake files (and the transform logic)."""
    digest = hashlib.sha256(f"{TRANSFORM_VERSION}|{hour.isoformat()}".encode())
    for path in sorted(files):
        digest.update(b"\0" + path.encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class Plan:
    """What one run publishes: its hour, the lake snapshot it read, and its own new version."""

    hour: datetime
    delta_version: int
    content_key: str
    version: int
    run_id: str

    @classmethod
    def new(cls, hour: datetime, delta_version: int, files: Iterable[str], run_id: str) -> Plan:
        return cls(hour, delta_version, content_key(hour, files), secrets.randbits(_VERSION_BITS) or 1, run_id)


@dataclass(frozen=True)
class Stats:
    raw_rows: int = 0
    dedup_rows: int = 0
    rollup_rows: int = 0
    late_rows: int = 0


def unchanged(cfg: Settings, plan: Plan) -> registry.Publication | None:
    """The current publication if it was computed from the same lake files (nothing to do)."""
    cur = registry.current(cfg, [plan.hour]).get(plan.hour)
    return cur if cur is not None and cur.content_key == plan.content_key else None


def reconfirm(cfg: Settings, plan: Plan, cur: registry.Publication) -> None:
    """Record that the current version also holds for the newer snapshot ``plan`` read (its files
    are the same), so the hour stops looking dirty. Same version: readers see no change."""
    if cur.delta_version < plan.delta_version:
        registry.record(
            cfg,
            plan.hour,
            cur.version,
            "published",
            delta_version=plan.delta_version,
            run_id=plan.run_id,
            raw_rows=cur.raw_rows,
            dedup_rows=cur.dedup_rows,
            rollup_rows=cur.rollup_rows,
            reason="reconfirmed: same lake files",
            content_key=cur.content_key,
        )


def begin(cfg: Settings, plan: Plan) -> None:
    """Record the version as staged (before any row is written), and throw away what an earlier
    attempt of the same run staged (an Airflow retry)."""
    for old in registry.staged_by_run(cfg, plan.hour, plan.run_id):
        discard(cfg, plan.hour, old, plan.run_id, "an earlier attempt of the same run")
    _record_staged(cfg, plan)


def _record_staged(cfg: Settings, plan: Plan, reason: str = "") -> None:
    """A 'staged' registry row for the plan's version (begin's, and the switch's claim)."""
    registry.record(
        cfg,
        plan.hour,
        plan.version,
        "staged",
        delta_version=plan.delta_version,
        run_id=plan.run_id,
        reason=reason,
        content_key=plan.content_key,
    )


def stage(cfg: Settings, plan: Plan, rollups) -> int:
    """Insert the rollups DataFrame under the plan's version, from the executors."""
    from tidemark.batch.staging import stage_rollups

    return stage_rollups(rollups, cfg.clickhouse, plan.version)


def fail(cfg: Settings, plan: Plan, stats: Stats, reason: str, *, status: str = "failed_quality") -> None:
    registry.record(
        cfg,
        plan.hour,
        plan.version,
        status,
        delta_version=plan.delta_version,
        run_id=plan.run_id,
        reason=reason,
        content_key=plan.content_key,
        **stats.__dict__,
    )
    remove_version(cfg, plan.hour, plan.version)


def discard(cfg: Settings, hour: datetime, version: int, run_id: str, reason: str) -> None:
    remove_version(cfg, hour, version)
    registry.record(cfg, hour, version, "discarded", delta_version=0, run_id=run_id, reason=reason)


def switch(cfg: Settings, plan: Plan, stats: Stats, *, staged_events: int) -> bool:
    """The compare-and-set switch. Returns False (and discards the version) when the hour is
    already current from a newer lake snapshot; raises PublishRefused (after discarding it) when
    the version is no longer staged and whole: ``stats.rollup_rows`` minute rows holding
    ``staged_events`` events, what staging wrote."""
    # The claim comes first: see the module docstring (switch vs clean-up).
    _record_staged(cfg, plan, registry.SWITCH_CLAIM)
    entry = registry.versions(cfg, plan.hour).get(plan.version)
    if entry is None or entry.ended:
        _refuse(
            cfg, plan, "the version was discarded (by clean-up, or a failed or superseded run): its rows may be gone"
        )
    cur = registry.current(cfg, [plan.hour]).get(plan.hour)
    if cur is not None and cur.newer_than(plan.delta_version):
        discard(
            cfg,
            plan.hour,
            plan.version,
            plan.run_id,
            f"superseded: version {cur.version} read Delta version {cur.delta_version} > {plan.delta_version}",
        )
        log.warning(
            "a newer snapshot of the hour is already published; not switching",
            extra={"hour": label(plan.hour), "ours": plan.delta_version, "current": cur.delta_version},
        )
        return False
    problem = staged_problem(cfg, plan.hour, plan.version, stats.rollup_rows, staged_events)
    if problem:
        _refuse(cfg, plan, problem)
    registry.record(
        cfg,
        plan.hour,
        plan.version,
        "published",
        delta_version=plan.delta_version,
        run_id=plan.run_id,
        content_key=plan.content_key,
        **stats.__dict__,
    )
    log.info(
        "hour published",
        extra={
            "hour": label(plan.hour),
            "version": plan.version,
            "delta_version": plan.delta_version,
            "dedup_rows": stats.dedup_rows,
        },
    )
    return True


def _refuse(cfg: Settings, plan: Plan, why: str) -> NoReturn:
    """Discard the version (whatever is left of its rows) and raise. 'discarded' is no failure: the
    hour is due again as dirty or unpublished, not backing off, and an unchanged hour is not retried."""
    cur = registry.current(cfg, [plan.hour]).get(plan.hour)
    discard(cfg, plan.hour, plan.version, plan.run_id, f"publish refused: {why}")
    log.error(
        "publish refused",
        extra={"hour": label(plan.hour), "version": plan.version, "why": why, "current": cur and cur.version},
    )
    raise PublishRefused(
        f"hour {label(plan.hour)} version {plan.version} was not published: {why}. The hour keeps "
        f"{f'version {cur.version}' if cur else 'its streaming rows'}; the next recompute of the hour "
        f"(it is still dirty or unpublished) stages and publishes a new version: nothing to do by hand "
        f"unless this repeats (then look for a publish task running long after its staging)"
    )


def cleanup(cfg: Settings, hour: datetime, *, now: datetime | None = None) -> list[int]:
    """Remove the versions of ``hour`` that no reader and no live run can need (see the module
    docstring). Safe to run at any time, by anyone, any number of times. Returns versions removed."""
    now = now or datetime.now(timezone.utc)
    # Rows first, registry second: a run records 'staged' before it writes a row, so every version
    # seen here is known below (the other order could mistake a just-begun run for a left-over).
    present = present_versions(cfg, hour)
    cur = registry.current(cfg, [hour]).get(hour)
    known = registry.versions(cfg, hour)
    removed = []
    for version in present:
        if cur is not None and version == cur.version:
            continue
        entry = known.get(version)
        if entry is None:
            why = "left over"
        elif entry.published:
            if cur is None or now - cur.published_at < SUPERSEDED_GRACE:
                continue
            why = "superseded"
        elif entry.claimed_at is not None and now - entry.claimed_at < STAGING_TIMEOUT:
            continue  # a switch may be between its checks and its insert; if it refuses, it removes the rows
        elif entry.ended:
            why = entry.status
        elif entry.status == "staged":
            if now - entry.first_seen < STAGING_TIMEOUT:
                continue  # a live run's
            if not _discard_abandoned(cfg, hour, entry):
                continue
            why = "abandoned staging"
        else:
            continue
        remove_version(cfg, hour, version)
        removed.append(version)
        log.info("removed a batch version", extra={"hour": label(hour), "version": version, "why": why})
    return removed


def _discard_abandoned(cfg: Settings, hour: datetime, entry: registry.VersionEntry) -> bool:
    """Record an abandoned staging as discarded, then look again: True if nobody else wrote to the
    version meanwhile (its rows may go), False if a switch claimed it (its rows stay)."""
    registry.record(
        cfg, hour, entry.version, "discarded", delta_version=0, run_id=entry.run_id, reason="abandoned staging"
    )
    again = registry.versions(cfg, hour).get(entry.version)
    if again is not None and again.rows > entry.rows + 1:
        log.warning(
            "a switch claimed an abandoned staging while clean-up discarded it; its rows stay",
            extra={"hour": label(hour), "version": entry.version},
        )
        return False
    return True


# -- the version's rows in ClickHouse ------------------------------------------------------------


def _hour_params(hour: datetime, version: int = 0) -> dict:
    start = int(hour.timestamp())
    return {"s": start, "e": start + 3600, "v": version}


# The batch rows of one hour in each rollup table, and of one version of it.
_HOUR_ROWS = {
    "minute_rollups": "layer = 'batch' AND minute >= toDateTime(%(s)s) AND minute < toDateTime(%(e)s)",
    "hour_rollups": "layer = 'batch' AND hour = toDateTime(%(s)s)",
    "day_rollups": "layer = 'batch' AND hour = toDateTime(%(s)s)",
}
_VERSION_ROWS = {table: f"{cond} AND version = %(v)s" for table, cond in _HOUR_ROWS.items()}


def present_versions(cfg: Settings, hour: datetime) -> list[int]:
    """Batch versions that have rows for ``hour`` in any rollup table (the tiering DAG drops old
    minute partitions, so an hour's versions may live in the hour and day tables only)."""
    db = cfg.clickhouse.database
    union = " UNION ALL ".join(f"SELECT version FROM {db}.{table} WHERE {cond}" for table, cond in _HOUR_ROWS.items())
    rows = client(cfg.clickhouse).execute(f"SELECT DISTINCT version FROM ({union})", _hour_params(hour))
    return sorted(int(v) for (v,) in rows)


def remove_version(cfg: Settings, hour: datetime, version: int, *, timeout_s: float = 300) -> int:
    """Delete the rows of one version of one hour and wait until gone (mutations are asynchronous)."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    p = _hour_params(hour, version)
    found = 0
    for table, cond in _VERSION_ROWS.items():
        (n,) = ch.execute(f"SELECT count() FROM {db}.{table} WHERE {cond}", p)[0]
        if n:
            found += n
            ch.execute(f"ALTER TABLE {db}.{table} DELETE WHERE {cond}", p)
    deadline = time.monotonic() + timeout_s
    while found and any(
        ch.execute(f"SELECT count() FROM {db}.{t} WHERE {c}", p)[0][0] for t, c in _VERSION_ROWS.items()
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"batch rows of {label(hour)} version {version} not deleted after {timeout_s}s; "
                f"check system.mutations in ClickHouse"
            )
        time.sleep(0.2)
    return found


def staged_problem(cfg: Settings, hour: datetime, version: int, rollup_rows: int, events: int) -> str | None:
    """Why the rows of ``version`` are not what staging wrote (``rollup_rows`` minute rows holding
    ``events`` events, in the minute, hour and day tables), or None if they are."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    totals = {"minute_rollups": "1", "hour_rollups": "dimension = 'all'", "day_rollups": "dimension = 'all'"}
    union = " UNION ALL ".join(
        f"SELECT '{table}', count(), sum(events) FROM {db}.{table} WHERE {_VERSION_ROWS[table]} AND {extra}"
        for table, extra in totals.items()
    )
    found = {t: (int(n), int(e or 0)) for t, n, e in ch.execute(union, _hour_params(hour, version))}
    problems = [
        f"{table} holds {found.get(table, (0, 0))[1]} events, staging wrote {events}"
        for table in ("hour_rollups", "day_rollups")
        if found.get(table, (0, 0))[1] != events
    ]
    minute = found.get("minute_rollups", (0, 0))
    # The hot tier drops the minute rows of days older than TIDEMARK_HOT_DAYS once the hour and day
    # tables hold them (tidemark/tiering/hot.py): an old hour may have none left, never some.
    hot_tier_dropped = minute == (0, 0) and hour.date() < datetime.now(timezone.utc).date() - timedelta(
        days=cfg.tiering.hot_days
    )
    if minute != (rollup_rows, events) and not hot_tier_dropped:
        problems.append(
            f"minute_rollups holds {minute[0]} rows and {minute[1]} events, staging wrote {rollup_rows} and {events}"
        )
    return "; ".join(problems) or None


def staged_totals(cfg: Settings, hour: datetime, version: int) -> dict[str, tuple[int, int, int]]:
    """tenant -> (events, distinct users by HLL, smallest minute count) of a staged version,
    read the way readers will read it."""
    ch = client(cfg.clickhouse)
    db = cfg.clickhouse.database
    p = _hour_params(hour, version)
    hours = ch.execute(
        f"SELECT tenant_id, sum(events), uniqCombinedMerge(users) FROM {db}.hour_rollups "
        f"WHERE dimension = 'all' AND layer = 'batch' AND version = %(v)s AND hour = toDateTime(%(s)s) "
        f"GROUP BY tenant_id",
        p,
    )
    smallest = dict(
        ch.execute(
            f"SELECT tenant_id, min(events) FROM {db}.minute_rollups WHERE layer = 'batch' AND version = %(v)s "
            f"AND minute >= toDateTime(%(s)s) AND minute < toDateTime(%(e)s) GROUP BY tenant_id",
            p,
        )
    )
    return {t: (int(e), int(u), int(smallest.get(t, 0))) for t, e, u in hours}
