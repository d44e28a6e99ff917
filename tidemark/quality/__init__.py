"""Batch-layer quality gates (Great Expectations 1.x) and their offline Data Docs.

Rules: quality/expectations.yml (documented in quality/README.md). Importing this package is
cheap: Great Expectations and PySpark load only when a gate runs.

Modules, each importing only those listed before it::

    rules     the rule file: Rule, parse / load, placeholders filled (fill, resolve)
    params    placeholder values: raw_hour_params, hour_rollups_params, volume bounds
    results   ExpectationOutcome, GateResult and their readable messages
    drops     drop rules as Spark SQL: keep predicates, drop filter, apply_drops
    figures   every metric of a suite in one aggregation, and the rules judged on the totals
    vendor    the CDN assets GE's pages load, and our vendored copies
    gx        the shared GE layer: context, lock, quiet, paths of the GE state and the site
    offline   Data Docs made to render offline (localise, check_site)
    gates     the GE suite of the rules; validate_with_ge (a whole GE Checkpoint run)
    record    judged figures into GE's store and Data Docs (at once or after the publish)
    verdict   validate: figures, then record (GE whole for an expectation figures lacks)
    docs      the site as a whole: rebuild, retention, serve (``tidemark quality docs``)

The names below are the public interface; ``docs`` is imported as a module
(``from tidemark.quality import docs``) and stays out of ``__init__``, so gate users do not load
the HTTP server.
"""

from tidemark.quality.drops import apply_drops, drop_filter_sql, keep_predicate
from tidemark.quality.figures import Figures, totals_of
from tidemark.quality.gates import build_suite
from tidemark.quality.gx import quality_home
from tidemark.quality.params import contract_value_sets, hour_rollups_params, raw_hour_params, volume_bounds
from tidemark.quality.record import record
from tidemark.quality.results import ExpectationOutcome, GateResult
from tidemark.quality.rules import QualityConfigError, Rule, load_rules, parse_rules, rules_for
from tidemark.quality.verdict import report, validate

__all__ = [
    "ExpectationOutcome",
    "Figures",
    "GateResult",
    "QualityConfigError",
    "Rule",
    "apply_drops",
    "build_suite",
    "contract_value_sets",
    "drop_filter_sql",
    "hour_rollups_params",
    "keep_predicate",
    "load_rules",
    "parse_rules",
    "quality_home",
    "raw_hour_params",
    "record",
    "report",
    "rules_for",
    "totals_of",
    "validate",
    "volume_bounds",
]
