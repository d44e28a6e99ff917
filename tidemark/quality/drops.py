"""Drop rules as Spark SQL: the rows a suite's 'drop' rules remove, and how many.

Each droppable expectation (``rules.DROPPABLE``) has a row-level predicate with GE's semantics
(nulls are left to the not-null rules); a suite's active drop rules make one ``COALESCE(... AND
..., FALSE)`` filter, so a row violating several rules is dropped (and counted) once.
``apply_drops`` filters with it; ``dropped_rows`` tells the gate the same count, from GE's
results when it can.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tidemark.quality.params import as_utc
from tidemark.quality.results import ExpectationOutcome
from tidemark.quality.rules import RULES_PATH, QualityConfigError, Rule, resolve, rules_for


def sql_identifier(name: str) -> str:
    """A Spark SQL identifier, backquoted.

    Parameters
    ----------
    name : str
        A column name; backquotes in it are doubled.

    Returns
    -------
    str
        ``name`` quoted for Spark SQL, e.g. ```we``ird```.
    """
    return "`" + name.replace("`", "``") + "`"


def sql_literal(value: Any) -> str:
    """A Spark SQL literal (timestamps as UTC instants)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QualityConfigError(f"cannot compare with {value!r}")
        return repr(value)
    if isinstance(value, Decimal):
        return f"{value}BD"
    if isinstance(value, datetime):
        return f"TIMESTAMP '{as_utc(value).strftime('%Y-%m-%d %H:%M:%S.%f')}+00:00'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise QualityConfigError(f"no SQL literal for {type(value).__name__} {value!r}")


def keep_predicate(expectation: str, kwargs: Mapping[str, Any]) -> str:
    """Spark SQL that is TRUE for the rows a drop rule keeps, with GE's semantics.

    GE's column-value expectations other than not_null ignore nulls (a null is neither expected
    nor unexpected), so those predicates keep nulls: the not_null rules decide about them.
    """
    col = sql_identifier(kwargs["column"])
    if expectation == "expect_column_values_to_not_be_null":
        return f"{col} IS NOT NULL"
    if expectation in ("expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"):
        values = list(kwargs.get("value_set") or [])
        negate = expectation == "expect_column_values_to_not_be_in_set"
        if not values:
            return "TRUE" if negate else f"{col} IS NULL"
        members = ", ".join(sql_literal(v) for v in values)
        return f"({col} IS NULL OR {col} {'NOT IN' if negate else 'IN'} ({members}))"
    if expectation == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        bounds = []
        if low is not None:
            bounds.append(f"{col} {'>' if kwargs.get('strict_min') else '>='} {sql_literal(low)}")
        if high is not None:
            bounds.append(f"{col} {'<' if kwargs.get('strict_max') else '<='} {sql_literal(high)}")
        if not bounds:
            return "TRUE"
        return f"({col} IS NULL OR ({' AND '.join(bounds)}))"
    raise QualityConfigError(f"no drop predicate for {expectation}")


def drop_filter_sql(suite: str, params: Mapping[str, Any], path: Path | str = RULES_PATH) -> str | None:
    """The conjunction of the suite's active drop rules (None when there is none)."""
    return _keep_sql(_active_drop_rules(rules_for(suite, path), params))


def _active_drop_rules(rules: Sequence[Rule], params: Mapping[str, Any]) -> list[tuple[Rule, dict]]:
    active = []
    for rule in rules:
        if rule.action == "drop":
            kwargs, _ = resolve(rule, params)
            if kwargs is not None:
                active.append((rule, kwargs))
    return active


def _keep_sql(active: Sequence[tuple[Rule, Mapping[str, Any]]]) -> str | None:
    if not active:
        return None
    parts = [keep_predicate(rule.expectation, kwargs) for rule, kwargs in active]
    return f"COALESCE({' AND '.join(parts)}, FALSE)"


def _count_dropped(df, keep_sql: str) -> int:
    from pyspark.sql import functions as F

    row = df.agg(F.sum(F.when(F.expr(keep_sql), 0).otherwise(1)).alias("dropped")).first()
    return int(row["dropped"] or 0)


def apply_drops(df, suite: str, params: Mapping[str, Any]):
    """Remove the rows violating the suite's 'drop' rules: (kept_df, dropped_count).

    Costs one Spark job over ``df`` (the count); cache ``df`` if it is expensive to recompute.
    """
    keep_sql = drop_filter_sql(suite, params)
    if keep_sql is None:
        return df, 0
    from pyspark.sql import functions as F

    dropped = _count_dropped(df, keep_sql)
    return df.where(F.expr(keep_sql)), dropped


def dropped_rows(df, active: Sequence[tuple[Rule, Mapping[str, Any]]], outcomes: Sequence[ExpectationOutcome]) -> int:
    """What apply_drops removes, for the gate's ``dropped_rows``.

    GE's unexpected_count is exact when only one drop rule failed; with several, rows may violate
    more than one, so count the union with Spark.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        The frame the gate validated.
    active : sequence of (Rule, dict)
        The rules GE ran, with their filled kwargs.
    outcomes : sequence of ExpectationOutcome
        Their outcomes, one per rule of the suite.

    Returns
    -------
    int
        The number of rows ``apply_drops`` removes from ``df``; drop rules GE could not
        evaluate (``error``) are left out.
    """
    failed = {o.rule for o in outcomes if o.action == "drop" and not o.success and not o.skipped}
    if not failed:
        return 0
    counts = [o.unexpected_count for o in outcomes if o.rule in failed]
    if len(counts) == 1 and counts[0] is not None:
        return counts[0]
    evaluable = [
        (r, k) for r, k in active if r.action == "drop" and not next(o for o in outcomes if o.rule == r.index).error
    ]
    keep_sql = _keep_sql(evaluable)
    return _count_dropped(df, keep_sql) if keep_sql else 0
