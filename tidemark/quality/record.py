"""Gate results into Great Expectations' store and Data Docs, from the figures a gate was judged on.

``figures.Figures.judge`` evaluates the rules without GE and keeps, per rule, the GE-shaped result
(``GateResult.evidence``: kwargs, success, element/unexpected counts, observed value, samples).
``record`` turns that into what a Checkpoint would have stored (the suite built from the rule book,
one ``ExpectationSuiteValidationResult`` with every expectation and its observed value) and
updates the site for that run. It works from the gate objects or from their ``as_dict`` (the run
summary), so the hourly job can write the docs after the publish, in another process.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tidemark.quality.gates import build_suite
from tidemark.quality.gx import SITE_NAME, context, docs_dir, gx_lock, quiet, validation_page
from tidemark.quality.offline import localise
from tidemark.quality.results import GateResult
from tidemark.quality.rules import rules_for

log = logging.getLogger(__name__)

DATASOURCE = "tidemark_figures"  # shown as the batch's datasource: the rules were judged on figures
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?$")


def _typed(value: Any) -> Any:
    """A kwarg back from JSON: ISO timestamps become datetimes again (GE renders them as such)."""
    if isinstance(value, str) and _ISO.match(value):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return value


def _suite_result(gate: Mapping[str, Any], run_id, run_time: datetime):
    import great_expectations as gx
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult

    suite = gate["suite"]
    rules = {r.index: r for r in rules_for(suite)}
    evidence = sorted(gate.get("evidence") or [], key=lambda e: e["rule"])
    active = [(rules[e["rule"]], {k: _typed(v) for k, v in e["kwargs"].items()}) for e in evidence]
    gx_suite = build_suite(suite, active)
    results = []
    for expectation, e in zip(gx_suite.expectations, evidence, strict=True):
        error = e.get("error")
        results.append(
            ExpectationValidationResult(
                success=bool(e["success"]),
                expectation_config=expectation.configuration,
                result=e.get("result") or {},
                exception_info={
                    "raised_exception": bool(error),
                    "exception_message": error,
                    "exception_traceback": None,
                },
            )
        )
    passed = sum(1 for r in results if r.success)
    result = ExpectationSuiteValidationResult(
        success=passed == len(results),
        results=results,
        suite_name=suite,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results) if results else None,
        },
        meta={
            "great_expectations_version": gx.__version__,
            "run_id": run_id,
            "validation_time": run_time,
            "active_batch_definition": {
                "datasource_name": DATASOURCE,
                "data_asset_name": suite,
                "batch_definition_name": gate.get("run_name") or suite,
            },
            "batch_spec": {"figures": "one aggregation over the validated frame (tidemark.quality.figures)"},
            "batch_markers": {},
            "batch_parameters": None,
        },
        batch_id=f"{DATASOURCE}-{suite}",
    )
    return gx_suite, result


def record(
    gates: Sequence[GateResult | Mapping[str, Any]], home: Path, run_time: datetime | None = None
) -> list[str | None]:
    """Store each gate's results in GE and update Data Docs for them; returns each run's page.

    Sets ``data_docs_index`` and ``validation_page`` on GateResult objects given (dicts are
    updated in place too).
    """
    quiet()
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    run_time = run_time or datetime.now(timezone.utc)
    pages: list[str | None] = []
    with gx_lock(home):
        ctx = context(home)
        since = time.time() - 1.0
        identifiers: list[Any] = []
        for gate in gates:
            as_dict = gate.as_dict() if isinstance(gate, GateResult) else gate
            run_id = RunIdentifier(run_name=as_dict.get("run_name") or None, run_time=run_time)
            gx_suite, result = _suite_result(as_dict, run_id, run_time)
            ctx.suites.add_or_update(gx_suite)
            suite_id = ExpectationSuiteIdentifier(name=gx_suite.name)
            identifier = ValidationResultIdentifier(
                expectation_suite_identifier=suite_id, run_id=run_id, batch_identifier=result.batch_id
            )
            ctx.validation_results_store.set(identifier, result)
            identifiers += [identifier, suite_id]
            pages.append(None)
        ctx.build_data_docs(site_names=[SITE_NAME], resource_identifiers=identifiers)
        localise(docs_dir(home), since=since)
    site = docs_dir(home)
    index = str(site / "index.html") if (site / "index.html").exists() else None
    for i, (gate, identifier) in enumerate(zip(gates, identifiers[::2], strict=True)):
        page = validation_page(site, identifier)
        pages[i] = str(page) if page else None
        if isinstance(gate, GateResult):
            gate.data_docs_index, gate.validation_page = index, pages[i]
        elif isinstance(gate, dict):
            gate["data_docs_index"], gate["validation_page"] = index, pages[i]
    log.info("data docs updated for %s", ", ".join(str(p) for p in pages))
    return pages
