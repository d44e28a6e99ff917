"""Which hours to recompute, and whether an hour is complete enough to publish.

* **Dirty:** a published hour is dirty when a lake commit after the Delta version its publication
  read added data to it (tidemark/batch/lake_log.py). Late events, on-time events that arrived
  after the publish, events that landed mid-run: one rule.
* **Complete:** hour H may be published once the serving stream (the topic's promoted identity,
  tidemark/stream/identity.py; never a candidate) has committed, on every partition of the topic,
  the Kafka offsets that were current at H's end + the allowed lateness (Kafka's own
  offsets-by-timestamp lookup). Event time is not a signal: one fast clock would pass it.
  Anything that still arrives later makes the hour dirty.

  The lookup assumes record timestamps grow with offsets within a partition. That holds when the
  broker stamps them (``LogAppendTime``); with producer timestamps (``CreateTime``) they need not
  be ordered: a record stamped before the cutoff may sit after the first one stamped at or past it,
  and the hour can then be published without it. Nothing is lost: the record lands in the lake,
  the hour turns dirty, and ``late_data_recompute`` republishes it (usually within 15 minutes).
* **Due:** what ``late_data_recompute`` runs: dirty hours, hours with lake data that were never
  published (no hourly run, or it failed), and failed hours once their back-off has passed, over
  the contract's whole acceptance window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tidemark.batch import lake_log, registry
from tidemark.config import Settings
from tidemark.hours import HOUR, label

# A failed hour is retried after 15 min, then 30, 60, ... at most daily; after this many failures
# in a row it is reported as failing (it is still retried at the slowest pace).
RETRY_BASE = timedelta(minutes=15)
RETRY_MAX = timedelta(hours=24)
FAILING_AFTER = 4
# An unpublished hour is the hourly DAG's until this long after its end (+ lateness).
HOURLY_OWNS_FOR = timedelta(hours=2)


def retry_delay(failures: int) -> timedelta:
    return min(RETRY_BASE * (2 ** min(max(failures - 1, 0), 16)), RETRY_MAX)


def dirty_hours(cfg: Settings, start: datetime, end: datetime) -> list[datetime]:
    """Published hours in [start, end) with data added after their publication read the lake."""
    lake_log.index(cfg)
    newest = lake_log.hours_with_data(cfg, start, end)
    published = registry.current(cfg, list(newest))
    return sorted(h for h, v in newest.items() if h in published and v > published[h].delta_version)


@dataclass
class DueHours:
    dirty: list[datetime] = field(default_factory=list)
    unpublished: list[datetime] = field(default_factory=list)
    retry: list[datetime] = field(default_factory=list)
    backing_off: dict[datetime, registry.FailureRecord] = field(default_factory=dict)
    failing: dict[datetime, registry.FailureRecord] = field(default_factory=dict)

    def to_run(self, limit: int) -> list[datetime]:
        """Oldest first within each kind: dirty hours, then retries, then never published."""
        return (self.dirty + self.retry + self.unpublished)[:limit]

    def failing_report(self) -> str:
        return "; ".join(
            f"{label(h)}: {f.failures} failures in a row, last: {f.reason[:200]}"
            for h, f in sorted(self.failing.items())
        )


def due_hours(cfg: Settings, end: datetime, *, window: timedelta | None = None) -> DueHours:
    """Hours in [end - window, end) that late_data_recompute should run (window: the contract's
    acceptance window, retention_days). ``end`` is the run's data interval end, never the clock."""
    window = window or timedelta(days=cfg.retention_days)
    lateness = timedelta(seconds=cfg.spark.allowed_lateness_s)
    lake_log.index(cfg)
    newest = lake_log.hours_with_data(cfg, end - window, end)
    published = registry.current(cfg, list(newest))
    failed = registry.failures(cfg, list(newest))
    due = DueHours()
    for hour, version in newest.items():
        pub, fail = published.get(hour), failed.get(hour)
        if fail is not None:
            if fail.failures >= FAILING_AFTER:
                due.failing[hour] = fail
            if fail.last_failure + retry_delay(fail.failures) > end:
                due.backing_off[hour] = fail
            else:
                due.retry.append(hour)
        elif pub is not None:
            if version > pub.delta_version:
                due.dirty.append(hour)
        elif hour + HOUR + lateness + HOURLY_OWNS_FOR <= end:
            due.unpublished.append(hour)
    return due


@dataclass(frozen=True)
class Completeness:
    ready: bool
    reason: str
    behind: dict[int, int] = field(default_factory=dict)  # partition -> records still to commit


def hour_complete(cfg: Settings, hour: datetime, now: datetime, *, topic: str | None = None) -> Completeness:
    """Whether the serving stream has committed everything that arrived by ``hour``'s end + lateness
    (arrival as Kafka's record timestamps tell it: see the module docstring for CreateTime)."""
    from tidemark.io.kafka_admin import offsets_at
    from tidemark.stream import identity as stream_identities
    from tidemark.stream.identity import stream_offsets

    topic = topic or cfg.kafka.topic
    cutoff = hour + HOUR + timedelta(seconds=cfg.spark.allowed_lateness_s)
    if now < cutoff:
        return Completeness(False, f"waiting for {cutoff.isoformat()} (hour end + allowed lateness)")
    ident = stream_identities.current(cfg, topic)
    if ident is None:
        return Completeness(False, f"no stream serves topic {topic!r}: start one (`tidemark stream`)")
    target = offsets_at(cfg.kafka.bootstrap_servers, topic, int(cutoff.timestamp() * 1000))
    done = stream_offsets(cfg, ident.stream_id, topic)
    behind = {p: off - done.get(p, 0) for p, off in target.items() if done.get(p, 0) < off}
    if behind:
        return Completeness(
            False,
            f"stream {ident.stream_id} has {sum(behind.values())} records of topic "
            f"{topic!r} to commit before {label(hour)} is complete",
            behind,
        )
    return Completeness(True, f"stream {ident.stream_id} committed every partition past {cutoff.isoformat()}")
