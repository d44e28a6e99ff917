"""What one tiering run is asked to do (``RunOptions``, and the flags that ask for it, declared once
for ``jobs/tiering.py`` and ``tidemark tiering run``), and the boundaries every step derives from it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from tidemark.config import Settings
from tidemark.hours import HOUR

STEPS = ("clickhouse", "hot", "cold", "delta")  # the order a run takes them in
SPARK_STEPS = ("cold", "delta")


@dataclass(frozen=True)
class Boundaries:
    """Derived from the run's interval end (never the clock), except ``reader_now``."""

    interval_end: datetime
    hot_from: date  # minute_rollups partitions of days before this leave the hot tier
    lake_from: date  # events_raw days before this move to the cold table
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


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; e.g. 2026-12-01T00:00:00+00:00")
    return moment


def _step_list(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def add_arguments(parser: argparse.ArgumentParser, *, steps: tuple[str, ...] = STEPS) -> argparse.ArgumentParser:
    """The run's flags; ``steps`` are those the caller can run (the Spark job runs only SPARK_STEPS)."""
    parser.add_argument(
        "--interval-end",
        type=_aware,
        default=None,
        help="the daily data interval's end, ISO-8601 with a UTC offset (default: today 00:00 UTC)",
    )
    parser.add_argument(
        "--steps",
        type=_step_list,
        default=steps,
        help=f"comma-separated subset of {','.join(steps)} (default: all of them)",
    )
    parser.add_argument("--run-id", default="", help="names the run in its report (Airflow passes its run id)")
    return parser


def options_from_args(
    parser: argparse.ArgumentParser, args: argparse.Namespace, *, steps: tuple[str, ...] = STEPS, dry_run: bool = False
) -> RunOptions:
    """``RunOptions`` from parsed flags (exits through ``parser.error`` on steps outside ``steps``)."""
    outside = [s for s in args.steps if s not in steps]
    if outside:
        parser.error(f"unknown or unsupported steps {outside}: choose from {', '.join(steps)}")
    return RunOptions(
        args.interval_end or default_interval_end(), dry_run=dry_run, run_id=args.run_id, steps=tuple(args.steps)
    )
