"""Batch-layer quality gates: Great Expectations 1.x suites with per-rule actions (warn / drop / fail).

(``verdict.validate`` is the entry point now: it judges the rules on one aggregation's figures
(``figures``) and records GE's results from them (``record``); the GE Checkpoint run below is
what it falls back to for an expectation ``figures`` does not judge. What follows describes the
actions and the GE run, which both paths share.)

The rules live in ``quality/expectations.yml`` (suite -> list of {expectation, kwargs, action,
description}); ``quality/README.md`` explains each one. Actions follow Delta Live Tables:

* ``fail``: the gate fails (``GateResult.passed`` is False) and ``GateResult.reason()`` names the
  rule and the count: the recompute job must not publish the hour.
* ``drop``: rows violating the rule are removed by ``apply_drops`` (the rule is translated into a
  Spark SQL predicate with GE's semantics: nulls are left to the not-null rules), and counted.
* ``warn``: reported only.

Typical use in the hourly recompute::

    params = raw_hour_params(hour_start, history_rows)
    events = dedup_events.cache()
    gate = validate(events, "raw_hour", params, run_name="raw_hour 2026-11-25T03")
    if not gate.passed:
        raise HourRejected(gate.reason())
    kept, dropped = apply_drops(events, "raw_hour", params)   # dropped == gate.dropped_rows

``validate`` runs the whole suite, drop rules included, on the frame it is given, through a GE
Checkpoint on a Spark dataframe asset, and updates the Data Docs site (localised for offline use
by ``tidemark.quality.offline``). GE state is a file data context under ``<home>/quality/gx``;
the site is ``<home>/quality/data_docs`` (``tidemark.quality.gx``). Nothing here imports Great
Expectations or PySpark until it is needed, so rule loading stays fast and Spark-free.

The pieces: ``rules`` (the rule file), ``params`` (placeholder values), ``drops`` (drop rules as
Spark SQL), ``results`` (outcomes and the verdict), ``gx`` (the GE context, lock and paths),
``offline`` (Data Docs without network). This module puts them together around one GE run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tidemark.quality.drops import dropped_rows
from tidemark.quality.gx import SITE_NAME, context, docs_dir, gx_lock, quiet, validation_page
from tidemark.quality.offline import localise
from tidemark.quality.results import GateResult, outcome_of, skipped_outcome
from tidemark.quality.rules import QualityConfigError, Rule, resolve, rules_for

log = logging.getLogger(__name__)

# GE's FailureSeverity per action (shown in Data Docs and the stored results).
SEVERITY = {"fail": "critical", "warn": "warning", "drop": "info"}
DATASOURCE = "tidemark_spark"
BATCH_DEFINITION = "whole_dataframe"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}


def _batch_definition(ctx, asset_name: str):
    try:
        source = ctx.data_sources.get(DATASOURCE)
    except (KeyError, LookupError, ValueError):
        # persist=False: validate() caches the frame itself and unpersists it afterwards.
        source = ctx.data_sources.add_spark(DATASOURCE, persist=False)
    try:
        asset = source.get_asset(asset_name)
    except (KeyError, LookupError):
        asset = source.add_dataframe_asset(asset_name)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION)
    except (KeyError, LookupError):
        return asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)


def build_suite(suite: str, active: Sequence[tuple[Rule, Mapping[str, Any]]]):
    """A GE ExpectationSuite of the active rules; meta carries the rule index and action."""
    quiet()
    import great_expectations as gx

    expectations = []
    for rule, kwargs in active:
        cls = getattr(gx.expectations, rule.class_name, None)
        if cls is None:
            raise QualityConfigError(f"{suite}[{rule.index}]: GE has no expectation {rule.class_name}")
        try:
            expectations.append(
                cls(
                    **kwargs,
                    meta={"tidemark_rule": rule.index, "tidemark_action": rule.action},
                    notes=f"Tidemark action: {rule.action.upper()}. {rule.description}",
                    severity=SEVERITY[rule.action],
                )
            )
        except Exception as exc:  # pydantic validation of the kwargs
            raise QualityConfigError(f"{suite}[{rule.index}] {rule.class_name}: {exc}") from exc
    return gx.ExpectationSuite(
        name=suite, expectations=expectations, meta={"source": "quality/expectations.yml (see quality/README.md)"}
    )


def validate_with_ge(df, suite: str, params: Mapping[str, Any], run_name: str, home: Path) -> GateResult:
    """Run the suite on ``df`` through a GE Checkpoint, update Data Docs, and judge the actions.

    ``verdict.validate`` comes here for a suite using an expectation ``figures`` does not judge.
    Every rule is evaluated on ``df`` as given (drop rules report what ``apply_drops`` removes:
    ``dropped_rows``). Rules whose placeholders are None are skipped and reported as such.
    """
    started = time.monotonic()
    resolved = []
    for rule in rules_for(suite):
        kwargs, unset = resolve(rule, params)
        resolved.append((rule, kwargs, unset))
    active = [(rule, kwargs) for rule, kwargs, _ in resolved if kwargs is not None]

    quiet()
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    gx_suite = build_suite(suite, active)
    cached_here = not df.is_cached
    if cached_here:
        df = df.cache()
    try:
        with gx_lock(home):
            ctx = context(home)
            batch_definition = _batch_definition(ctx, suite)
            gx_suite = ctx.suites.add_or_update(gx_suite)
            definition = ctx.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=suite, data=batch_definition, suite=gx_suite)
            )
            checkpoint = ctx.checkpoints.add_or_update(
                gx.Checkpoint(
                    name=suite,
                    validation_definitions=[definition],
                    actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[SITE_NAME])],
                    result_format=RESULT_FORMAT,
                )
            )
            pages_since = time.time() - 1.0
            run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(timezone.utc))
            checkpoint_result = checkpoint.run(batch_parameters={"dataframe": df}, run_id=run_id)
            localise(docs_dir(home), since=pages_since)

        ((identifier, suite_result),) = checkpoint_result.run_results.items()
        by_rule = {}
        for result in suite_result.results:
            meta = result.expectation_config.meta or {}
            by_rule[meta.get("tidemark_rule")] = result
        outcomes = []
        for rule, kwargs, unset in resolved:
            if kwargs is None:
                outcomes.append(skipped_outcome(rule, unset))
            else:
                outcomes.append(outcome_of(rule, kwargs, by_rule[rule.index]))
        dropped = dropped_rows(df, active, outcomes)
    finally:
        if cached_here:
            df.unpersist()

    site = docs_dir(home)
    page = validation_page(site, identifier)
    gate = GateResult(
        suite=suite,
        outcomes=outcomes,
        dropped_rows=dropped,
        data_docs_index=str(site / "index.html") if (site / "index.html").exists() else None,
        run_name=run_name,
        duration_s=time.monotonic() - started,
        validation_page=str(page) if page else None,
    )
    level = logging.WARNING if not gate.passed or gate.warnings or dropped else logging.INFO
    log.log(
        level,
        "quality gate %s %s: %s, %d warnings, %d rows dropped, %.1fs%s",
        suite,
        run_name,
        "passed" if gate.passed else "FAILED",
        len(gate.warnings),
        dropped,
        gate.duration_s,
        "" if gate.passed else "\n" + gate.reason(),
    )
    return gate
