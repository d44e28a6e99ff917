"""What a gate run found: one ``ExpectationOutcome`` per rule and the ``GateResult`` judging them.

The verdict follows the actions (``GateResult.passed``: no 'fail' rule failed), not GE's own
success flag, which is False for any failed rule. Every failed rule gets one readable line naming
the column, the count and a few sampled values (``GateResult.reason()`` for the 'fail' ones), so
the log of a rejected hour says what was wrong without opening Data Docs. Everything converts to
JSON (``as_dict``) for the recompute's run summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tidemark.quality.params import as_utc
from tidemark.quality.rules import Rule


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of a GE result value.

    Parameters
    ----------
    value : Any
        A value from GE's results or from the params: scalars, datetimes, Decimals, numpy
        scalars, and mappings / sequences of them.

    Returns
    -------
    Any
        The same structure made of None, bool, int, float, str, list and dict: datetimes as
        UTC ISO strings, non-finite floats and unknown types as strings.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return str(value)


@dataclass
class ExpectationOutcome:
    """What one rule of a suite found in one run (or that it was skipped)."""

    suite: str
    expectation: str  # snake_case GE type
    column: str | None
    action: str  # warn | drop | fail
    success: bool
    unexpected_count: int | None
    observed: Any  # observed_value, or a sample of unexpected values
    description: str
    message: str = ""  # readable line: what failed and for how many rows
    skipped: bool = False  # a placeholder was None (e.g. no volume history)
    rule: int = -1  # index in the suite's rule list
    element_count: int | None = None
    error: str | None = None  # GE raised instead of evaluating (e.g. a missing column)

    def as_dict(self) -> dict[str, Any]:
        """The outcome as a JSON-safe dict (``jsonable``)."""
        return jsonable(asdict(self))


@dataclass
class GateResult:
    """One run of a suite: every rule's outcome and the verdict of their actions."""

    suite: str
    outcomes: list[ExpectationOutcome]
    dropped_rows: int  # rows removed by 'drop' expectations
    data_docs_index: str | None  # path to the site's index.html
    run_name: str = ""
    duration_s: float = 0.0
    validation_page: str | None = None  # this run's page in the site
    # Per active rule, what GE's store needs for Data Docs (quality.record): kwargs, success, result.
    evidence: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No 'fail' expectation failed."""
        return not self.failures

    @property
    def failures(self) -> list[ExpectationOutcome]:
        """The 'fail' rules that failed (the gate failed when there is any)."""
        return [o for o in self.outcomes if o.action == "fail" and not o.success]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        """The 'warn' rules that failed."""
        return [o for o in self.outcomes if o.action == "warn" and not o.success]

    @property
    def drops(self) -> list[ExpectationOutcome]:
        """The 'drop' rules that found rows to drop."""
        return [o for o in self.outcomes if o.action == "drop" and not o.success]

    def reason(self) -> str:
        """One line per failed 'fail' expectation; empty when the gate passed."""
        return "\n".join(f"{self.suite}: {o.message} ({o.expectation})" for o in self.failures)

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-safe dict: the verdict, the counts and every outcome."""
        return jsonable(
            {
                "suite": self.suite,
                "run_name": self.run_name,
                "passed": self.passed,
                "reason": self.reason(),
                "dropped_rows": self.dropped_rows,
                "failures": len(self.failures),
                "warnings": len(self.warnings),
                "data_docs_index": self.data_docs_index,
                "validation_page": self.validation_page,
                "duration_s": round(self.duration_s, 3),
                "outcomes": [o.as_dict() for o in self.outcomes],
                "evidence": self.evidence,
            }
        )


def _fmt(value: Any) -> str:
    if isinstance(value, datetime):
        value = as_utc(value)
        if value.second == 0 and value.microsecond == 0:
            return value.strftime("%Y-%m-%d %H:%M")
        return value.isoformat(sep=" ").replace("+00:00", "")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _fmt_interval(low: Any, high: Any, strict_min: bool, strict_max: bool) -> str:
    low_s, high_s = _fmt(low), _fmt(high)
    if isinstance(low, datetime) and isinstance(high, datetime) and low_s[:11] == high_s[:11]:
        high_s = high_s[11:]  # same day: "[2026-11-25 03:00, 04:00)"
    return f"{'(' if strict_min else '['}{low_s}, {high_s}{')' if strict_max else ']'}"


def _fmt_exact(value: Any) -> str:
    if isinstance(value, datetime):
        return as_utc(value).isoformat(sep=" ").replace("+00:00", "")
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_fmt_exact(v) for v in value) + ")"
    if isinstance(value, dict):  # a multicolumn rule's sample: {column: value}, in the rule's column order
        return "(" + ", ".join(_fmt_exact(v) for v in value.values()) + ")"
    return _fmt(value)


def _sample(result: Mapping[str, Any], limit: int = 3) -> str:
    """A few distinct unexpected values, as GE sampled them."""
    shown: list[str] = []
    for value in result.get("partial_unexpected_list") or []:
        text = _fmt_exact(value)
        if text not in shown:
            shown.append(text)
        if len(shown) == limit:
            break
    return f" (e.g. {', '.join(shown)})" if shown else ""


def _message(rule: Rule, kwargs: Mapping[str, Any], result: Mapping[str, Any]) -> str:
    kind = rule.expectation
    col = kwargs.get("column")
    n = result.get("unexpected_count")
    of = f" of {result['element_count']}" if result.get("element_count") is not None else ""
    observed = result.get("observed_value")
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if kind == "expect_column_values_to_not_be_null":
        return f"{col} is null for {n}{of} rows"
    if kind == "expect_column_values_to_be_in_set":
        return f"{col} not in the allowed set for {n}{of} rows{_sample(result)}"
    if kind == "expect_column_values_to_not_be_in_set":
        return f"{col} in the forbidden set for {n}{of} rows{_sample(result)}"
    if kind == "expect_column_values_to_be_unique":
        return f"{col} not unique: {n}{of} rows share their value with another row{_sample(result)}"
    if kind == "expect_compound_columns_to_be_unique":
        cols = f"({', '.join(kwargs.get('column_list') or [])})"
        return f"{cols} not unique: {n}{of} rows share their values with another row{_sample(result)}"
    if kind == "expect_column_values_to_be_between":
        strict_min, strict_max = bool(kwargs.get("strict_min")), bool(kwargs.get("strict_max"))
        if low is not None and high is not None:
            where = f"outside {_fmt_interval(low, high, strict_min, strict_max)}"
        elif low is not None:
            where = f"{'at or ' if strict_min else ''}below {_fmt(low)}"
        else:
            where = f"{'at or ' if strict_max else ''}above {_fmt(high)}"
        return f"{col} {where} for {n}{of} rows{_sample(result)}"
    if kind == "expect_column_pair_values_to_be_equal":
        return f"{kwargs['column_A']} != {kwargs['column_B']} for {n}{of} rows{_sample(result)}"
    if kind in ("expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list"):
        mismatched = (result.get("details") or {}).get("mismatched") or {}
        missing, unexpected = mismatched.get("missing") or [], mismatched.get("unexpected") or []
        if missing or unexpected:
            return f"columns differ from the expected set: missing {missing}, unexpected {unexpected}"
        return f"columns are {observed}"
    if kind in ("expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"):
        if kind.endswith("_equal"):
            return f"row count {observed} != {kwargs.get('value')}"
        return f"row count {observed} outside [{_fmt(low)}, {_fmt(high)}]"
    if kind.startswith("expect_column_") and ("min_value" in kwargs or "max_value" in kwargs):
        # aggregate checks: sum / mean / min / max / ... to be between
        metric = kind.removeprefix("expect_column_").removesuffix("_to_be_between").replace("_", " ")
        expected = f"expected {_fmt(low)}" if low == high else f"expected {_fmt_interval(low, high, False, False)}"
        return f"{metric} of {col} is {_fmt(observed)}, {expected}"
    if n is not None:
        return f"{col or 'table'}: {n}{of} rows unexpected{_sample(result)}"
    return f"{col or 'table'}: observed {_fmt(observed)}"


def _observed(result: Mapping[str, Any]) -> Any:
    if "observed_value" in result:
        return jsonable(result["observed_value"])
    if "unexpected_count" in result:
        return {
            "unexpected_percent": jsonable(result.get("unexpected_percent")),
            "sample": jsonable((result.get("partial_unexpected_list") or [])[:5]),
        }
    return None


def _error(info: Any) -> str | None:
    """First exception message in GE's exception_info: flat, or keyed by the metric that failed."""
    if not isinstance(info, Mapping):
        return None
    if "raised_exception" in info or "exception_message" in info:
        if not info.get("raised_exception"):
            return None
        lines = str(info.get("exception_message") or "GE raised an exception").strip().splitlines()
        return lines[0] if lines else "GE raised an exception"
    for nested in info.values():
        if message := _error(nested):
            return message
    return None


def outcome_of(rule: Rule, kwargs: Mapping[str, Any], validation_result: Any) -> ExpectationOutcome:
    """The outcome of a rule GE evaluated.

    Parameters
    ----------
    rule : Rule
        The rule.
    kwargs : Mapping
        Its kwargs with the placeholders filled (what GE ran).
    validation_result : great_expectations ExpectationValidationResult
        GE's result for the rule.

    Returns
    -------
    ExpectationOutcome
        With a readable ``message`` when the rule failed, and ``error`` when GE raised
        instead of evaluating it (that counts as failed).
    """
    result = dict(validation_result.result or {})
    error = _error(validation_result.exception_info)
    count = result.get("unexpected_count")
    success = bool(validation_result.success)
    message = (
        ""
        if success
        else (f"{rule.column or 'table'}: GE could not evaluate: {error}" if error else _message(rule, kwargs, result))
    )
    return ExpectationOutcome(
        suite=rule.suite,
        expectation=rule.expectation,
        column=rule.column,
        action=rule.action,
        success=success,
        unexpected_count=None if count is None else int(count),
        observed=_observed(result),
        description=rule.description,
        message=message,
        rule=rule.index,
        element_count=result.get("element_count"),
        error=error,
    )


def skipped_outcome(rule: Rule, unset: list[str]) -> ExpectationOutcome:
    """The outcome of a rule that did not run because placeholders were None.

    Parameters
    ----------
    rule : Rule
        The rule.
    unset : list of str
        Its placeholders that were None (``rules.resolve``).

    Returns
    -------
    ExpectationOutcome
        A successful, ``skipped`` outcome whose message names ``unset``.
    """
    return ExpectationOutcome(
        suite=rule.suite,
        expectation=rule.expectation,
        column=rule.column,
        action=rule.action,
        success=True,
        unexpected_count=None,
        observed=None,
        description=rule.description,
        message=f"skipped: {', '.join(unset)} not set",
        skipped=True,
        rule=rule.index,
    )
