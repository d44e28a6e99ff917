"""The recompute job's flags, declared once for ``jobs/recompute_hour.py`` and ``tidemark
recompute`` (which forwards them to spark-submit). Light on purpose: the CLI builds its parser
from this module on every call."""

from __future__ import annotations

import argparse
from datetime import datetime

from tidemark.hours import hours_between, parse_hour


def _hour(text: str) -> datetime:
    try:
        return parse_hour(text)
    except ValueError as exc:  # argparse shows an ArgumentTypeError's own message
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--hour H`` or ``--from H --to H`` (end exclusive), plus how the run ends."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--hour", type=_hour, help="event hour, e.g. 2026-11-25T03")
    which.add_argument("--from", dest="start", type=_hour, help="first hour of a range (with --to)")
    parser.add_argument("--to", dest="end", type=_hour, help="end of the range, exclusive")
    parser.add_argument("--run-id", default=None, help="names the run summary (Airflow passes its run id)")
    parser.add_argument("--no-publish", action="store_true", help="stage and check only; publish in a later step")
    parser.add_argument("--force", action="store_true", help="recompute even if this content is already published")
    return parser


def hours(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[datetime]:
    """The hours the flags ask for (exits through ``parser.error`` on a range without an end)."""
    if args.hour:
        return [args.hour]
    if not args.end:
        parser.error("--from needs --to")
    if args.end <= args.start:
        parser.error(f"--to {args.end:%Y-%m-%dT%H} is not after --from {args.start:%Y-%m-%dT%H}")
    return hours_between(args.start, args.end)
