"""Log formats: a record's structured extras reach both formats, so no line is only its message."""

import json
import logging
from datetime import datetime, timezone

from tidemark.logs import JsonFormatter, TextFormatter
from tidemark.tiering import report
from tidemark.tiering.inventory import PartitionStats


def _record(**extra) -> logging.LogRecord:
    record = logging.LogRecord("tidemark.tiering.report", logging.INFO, __file__, 1, "tiering tier", (), None)
    record.__dict__.update(extra)
    return record


def test_text_format_shows_the_extras():
    line = TextFormatter().format(_record(tier="hot", before={"rows": 3}, dry_run=True))
    assert line.endswith('INFO tidemark.tiering.report: tiering tier tier="hot" before={"rows":3} dry_run=true')


def test_text_format_without_extras_is_the_message():
    assert TextFormatter().format(_record()).endswith("INFO tidemark.tiering.report: tiering tier")


def test_json_format_keeps_the_extras():
    entry = json.loads(JsonFormatter().format(_record(tier="hot", before={"rows": 3})))
    assert (entry["msg"], entry["tier"], entry["before"]) == ("tiering tier", "hot", {"rows": 3})


def test_tier_lines_are_not_warnings(caplog):
    """A (dry) run's per-tier lines are its report: INFO, so a default (WARNING) CLI run prints only
    its table; alerts stay errors."""
    stats = [PartitionStats("hot", "minute_rollups", "20261201", 10, 1000, 1, 0)]
    rep = report.TieringReport("r1", datetime(2026, 12, 2, tzinfo=timezone.utc), True, before=stats)
    rep.alerts.append("too many parts")
    with caplog.at_level(logging.DEBUG, logger="tidemark.tiering.report"):
        report.log_report(rep)
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert levels == [("INFO", "tiering tier"), ("ERROR", "tiering alert")]
