"""What one tiering run is asked to do, and the boundaries every step derives from it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from tidemark.config import Settings

STEPS = ("clickhouse", "hot", "cold", "delta")  # the order a run takes them in
SPARK_STEPS = ("cold", "delta")
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Boundaries:
    """Derived from the run's interval end (never the clock), except ``reader_now``."""
    interval_end: datetime
    hot_from: date           # minute_rollups partitions of days before this leave the hot tier
    lake_from: date          # events_raw days before this move to the cold table
    closed_before: datetime  # an event hour starting before this is closed (its end + lateness passed)
    # Grace periods protect readers running *now* (a reader that resolved the registry a minute ago),
    # so they compare with the earlier of the interval end and the wall clock.
    reader_now: datetime

    @property
    def closed_day(self) -> date:
        """Days before this are closed (every hour of them is)."""
        return self.closed_before.date()


@dataclass(frozen=True)
class RunOptions:
    interval_end: datetime
    dry_run: bool = False
    run_id: str = ""
    steps: tuple[str, ...] = STEPS
    wall_now: datetime | None = field(default=None, compare=False)  # tests pin it; else the clock

    def __post_init__(self) -> None:
        if self.interval_end.tzinfo is None:
            raise ValueError("interval_end must be timezone-aware (UTC)")
        unknown = set(self.steps) - set(STEPS)
        if unknown:
            raise ValueError(f"unknown tiering steps {sorted(unknown)}; choose from {', '.join(STEPS)}")

    def boundaries(self, cfg: Settings) -> Boundaries:
        return boundaries(cfg, self.interval_end, self.wall_now)


def boundaries(cfg: Settings, interval_end: datetime, wall_now: datetime | None = None) -> Boundaries:
    end = interval_end.astimezone(timezone.utc)
    reader_now = min(end, wall_now or datetime.now(timezone.utc))
    lateness = timedelta(seconds=cfg.spark.allowed_lateness_s)
    # hour H (hour-aligned) is closed when H + 1h + lateness <= end, i.e. H <= last_open
    last_open = end - lateness - HOUR
    closed_before = last_open.replace(minute=0, second=0, microsecond=0) + HOUR
    # The cold boundary must also hold against the real clock: the contract accepts events up to
    # retention_days old at *arrival*, so only days older than that (by the earlier clock) may move.
    lake_reference = min(end, reader_now)
    return Boundaries(
        interval_end=end,
        hot_from=end.date() - timedelta(days=cfg.tiering.hot_days),
        lake_from=lake_reference.date() - timedelta(days=cfg.tiering.lake_hot_days),
        closed_before=closed_before,
        reader_now=reader_now,
    )


def default_interval_end(now: datetime | None = None) -> datetime:
    """The end of the latest whole daily interval (today 00:00 UTC): the CLI's explicit default."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)
