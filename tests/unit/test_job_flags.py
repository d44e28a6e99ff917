"""Each job's flags are declared once (``add_arguments`` beside its code): the job's own parser and
the ``tidemark`` CLI must accept exactly the same flags, and the CLI forwards what the user typed."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

import pytest

from tidemark import cli
from tidemark.batch import options as batch_options
from tidemark.stream import options as stream_options
from tidemark.tiering import options as tiering_options


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings} - {"-h", "--help"}


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize(
    ("command", "declare", "cli_only"),
    [
        ("stream", stream_options.add_arguments, {"--detach"}),
        ("recompute", batch_options.add_arguments, set()),
        ("tiering", tiering_options.add_arguments, {"--dry-run", "--json"}),
    ],
)
def test_the_cli_and_the_job_accept_the_same_flags(command, declare, cli_only):
    job = declare(argparse.ArgumentParser())
    assert _flags(_subparser(command)) - cli_only == _flags(job)


def test_recompute_hours_from_flags():
    parser = batch_options.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--from", "2026-11-25T22", "--to", "2026-11-26T01"])
    assert [h.hour for h in batch_options.hours(parser, args)] == [22, 23, 0]
    one = parser.parse_args(["--hour", "2026-11-25T03:00:00+01:00"])  # any offset, normalised to UTC
    assert batch_options.hours(parser, one) == [datetime(2026, 11, 25, 2, tzinfo=timezone.utc)]


@pytest.mark.parametrize(
    "argv",
    [
        ["--from", "2026-11-25T03"],  # no end
        ["--from", "2026-11-25T03", "--to", "2026-11-25T03"],  # empty range
        ["--hour", "2026-11-25T03:30"],  # not an hour boundary
        ["--hour", "yesterday"],
    ],
)
def test_bad_hour_flags_exit_with_a_usage_error(argv, capsys):
    parser = batch_options.add_arguments(argparse.ArgumentParser())
    with pytest.raises(SystemExit) as exited:
        batch_options.hours(parser, parser.parse_args(argv))
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_tiering_steps_outside_the_job_are_refused(capsys):
    parser = tiering_options.add_arguments(argparse.ArgumentParser(), steps=tiering_options.SPARK_STEPS)
    args = parser.parse_args(["--interval-end", "2026-12-01T00:00:00+00:00", "--steps", "cold,hot"])
    with pytest.raises(SystemExit):
        tiering_options.options_from_args(parser, args, steps=tiering_options.SPARK_STEPS)
    assert "hot" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a naive interval end would be read in the machine's zone: refused
        parser.parse_args(["--interval-end", "2026-12-01T00:00:00"])


def test_the_cli_forwards_the_flags_as_typed_minus_its_own():
    argv = ["stream", "--detach", "--topic", "t1", "--trigger-seconds=0.5", "--available-now"]
    args = cli.build_parser().parse_args(argv)
    args.argv = argv
    assert cli._job_flags(args, cli_only=("--detach",)) == ["--topic", "t1", "--trigger-seconds=0.5", "--available-now"]
    forwarded = stream_options.add_arguments(argparse.ArgumentParser()).parse_args(cli._job_flags(args, ("--detach",)))
    assert stream_options.overrides(forwarded)["trigger_seconds"] == 0.5
