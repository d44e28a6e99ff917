"""Batch-layer quality gates (Great Expectations 1.x) and their offline Data Docs.

Rules: quality/expectations.yml (documented in quality/README.md). Importing this package is
cheap: Great Expectations and PySpark load only when a gate runs.
"""
from tidemark.quality.gates import (
    ExpectationOutcome,
    GateResult,
    QualityConfigError,
    apply_drops,
    hour_rollups_params,
    load_rules,
    raw_hour_params,
    validate,
)

__all__ = [
    "ExpectationOutcome",
    "GateResult",
    "QualityConfigError",
    "apply_drops",
    "hour_rollups_params",
    "load_rules",
    "raw_hour_params",
    "validate",
]
