"""tidemark.quality.gates: the GE suites built from the rules (imports GE, no Spark; runs are in
tests/integration/quality/test_quality_gates.py)."""

from datetime import datetime, timezone

from tidemark.quality import build_suite, hour_rollups_params, load_rules, raw_hour_params
from tidemark.quality.gates import SEVERITY
from tidemark.quality.rules import resolve

HOUR = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)


def test_every_rule_is_a_real_ge_expectation_with_valid_kwargs():
    # Imports Great Expectations (a few seconds) but no Spark: catches a misspelt class or kwarg.
    params = {**raw_hour_params(HOUR, [100]), **hour_rollups_params(10)}
    for suite, rules in load_rules().items():
        active = [(r, resolve(r, params)[0]) for r in rules]
        built = build_suite(suite, active)
        assert len(built.expectations) == len(rules)
        for expectation, r in zip(built.expectations, rules, strict=True):
            assert expectation.expectation_type == r.expectation
            assert expectation.meta == {"tidemark_rule": r.index, "tidemark_action": r.action}
            assert expectation.severity == SEVERITY[r.action]
