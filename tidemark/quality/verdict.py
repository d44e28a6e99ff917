"""``validate``: a suite judged on one aggregation's figures, with Great Expectations' report.

The entry point of the gates. ``figures`` computes every metric the suite's rules need in one
Spark job and judges them; ``record`` stores the results in GE and updates the Data Docs (now, or,
with ``docs=False``, later: the recompute records them after the publish). A suite using an
expectation ``figures`` does not judge runs through a GE Checkpoint instead (``gates``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tidemark.quality.figures import Figures
from tidemark.quality.gates import validate_with_ge
from tidemark.quality.record import record
from tidemark.quality.results import GateResult

log = logging.getLogger(__name__)


def validate(
    df,
    suite: str,
    params: Mapping[str, Any],
    run_name: str,
    *,
    home: Path,
    columns: Sequence[str] | None = None,
    unique_by: Iterable[Sequence[str]] = (),
    docs: bool = True,
) -> GateResult:
    """Judge ``suite`` on ``df`` (one aggregation) and, with ``docs``, write its Data Docs page
    (GE's store and site under ``home``, ``gx.quality_home(cfg)``).

    ``columns``: the columns the table rules see, when ``df`` is a projection of the frame they
    describe. ``unique_by``: keys ``df`` is unique by construction (their uniqueness rules are not
    recounted). Drop rules report what ``apply_drops`` removes (``dropped_rows``).
    """
    started = time.monotonic()
    figures = Figures(suite, params, columns or df.columns, unique_by=unique_by)
    if not figures.supported:
        return validate_with_ge(df, suite, params, run_name, home)
    totals = df.agg(*figures.aggregates()).first().asDict()
    gate = figures.judge(df, totals, run_name, started)
    if docs:
        record([gate], home)
    report(gate)
    return gate


def report(gate: GateResult) -> None:
    """Log the verdict: a warning when anything failed, warned or was dropped."""
    level = logging.WARNING if not gate.passed or gate.warnings or gate.dropped_rows else logging.INFO
    log.log(
        level,
        "quality gate %s %s: %s, %d warnings, %d rows dropped, %.1fs%s",
        gate.suite,
        gate.run_name,
        "passed" if gate.passed else "FAILED",
        len(gate.warnings),
        gate.dropped_rows,
        gate.duration_s,
        "" if gate.passed else "\n" + gate.reason(),
    )
