"""A suite's rules judged on figures: every metric the rules need, computed in one Spark aggregation.

Great Expectations on Spark computes its metrics expectation by expectation (several jobs over the
frame, and a window count over the whole frame for a uniqueness rule). Here each active rule
becomes a few additive aggregate columns (row count, null count, violation count, sum), all
evaluated by one ``agg`` that the caller may also group (the recompute groups by tenant and adds its
own per-tenant figures to the same pass). ``Figures.judge`` then evaluates the rules on those totals
with GE's semantics (nulls are left to the not-null rules, ``mostly``, strict bounds) and builds
the same ``GateResult`` a GE run gives, with GE-shaped result dicts (``GateResult.evidence``) from
which ``tidemark.quality.record`` writes the Data Docs later, off the critical path.

Samples of unexpected values (the readable messages) cost one small extra job per failed rule, and
only then. A uniqueness rule costs a grouped count, unless the caller says the frame is unique by
construction (``unique_by``: the recompute's dedup keeps one row per key).

``SUPPORTED`` lists the expectations judged here; a suite using any other goes to GE whole
(``gates.validate`` does that).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from tidemark.quality.drops import keep_predicate, sql_identifier
from tidemark.quality.results import GateResult, jsonable, outcome_of, skipped_outcome
from tidemark.quality.rules import Rule, resolve, rules_for

SUPPORTED = frozenset(
    {
        "expect_table_columns_to_match_set",
        "expect_table_row_count_to_be_between",
        "expect_table_row_count_to_equal",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_column_pair_values_to_be_equal",
        "expect_column_sum_to_be_between",
    }
)
_MAP_RULES = (
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_be_between",
)
_UNIQUE_RULES = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")
SAMPLE = 10  # GE's partial_unexpected_count in the gates' result format
ROWS = "_q_rows"
DROPPED = "_q_dropped"


def _columns_of(rule: Rule, kwargs: Mapping[str, Any]) -> list[str]:
    if "column" in kwargs:
        return [kwargs["column"]]
    if "column_A" in kwargs:
        return [kwargs["column_A"], kwargs["column_B"]]
    return list(kwargs.get("column_list") or [])


def _unexpected_sql(expectation: str, kwargs: Mapping[str, Any]) -> str | None:
    """TRUE for a row the rule counts as unexpected (None: not a row-level rule)."""
    if expectation == "expect_column_values_to_not_be_null":
        return f"{sql_identifier(kwargs['column'])} IS NULL"
    if expectation in _MAP_RULES:
        col = sql_identifier(kwargs["column"])
        return f"({col} IS NOT NULL AND NOT {keep_predicate(expectation, kwargs)})"
    if expectation == "expect_column_pair_values_to_be_equal":
        a, b = sql_identifier(kwargs["column_A"]), sql_identifier(kwargs["column_B"])
        return f"(NOT ({a} IS NULL AND {b} IS NULL) AND NOT ({a} <=> {b}))"
    return None


@dataclass
class _Active:
    rule: Rule
    kwargs: dict[str, Any]
    error: str | None = None  # a column the rule needs is missing
    names: dict[str, str] = field(default_factory=dict)  # metric -> aggregate column name


def _metrics(rule: Rule, kwargs: Mapping[str, Any]) -> dict[str, str]:
    """metric -> aggregate column name, for the metrics the rule is judged on."""
    kind, prefix = rule.expectation, f"_q{rule.index}_"
    names = {}
    if _unexpected_sql(kind, kwargs) is not None:
        names["unexpected"] = prefix + "unexpected"
    if kind in _MAP_RULES or kind == "expect_column_sum_to_be_between":
        names["nulls"] = prefix + "nulls"
    if kind == "expect_column_sum_to_be_between":
        names["sum"] = prefix + "sum"
    return names


class Figures:
    """The aggregates a suite needs over a frame with ``columns``, and the verdict on their totals."""

    def __init__(
        self,
        suite: str,
        params: Mapping[str, Any],
        columns: Sequence[str],
        *,
        unique_by: Iterable[Sequence[str]] = (),
    ) -> None:
        self.suite = suite
        self.columns = list(columns)
        self.unique_by = {tuple(k) for k in unique_by}
        self.resolved: list[tuple[Rule, dict | None, list[str]]] = []
        self.active: list[_Active] = []
        for rule in rules_for(suite):
            kwargs, unset = resolve(rule, params)
            self.resolved.append((rule, kwargs, unset))
            if kwargs is not None:
                missing = [c for c in _columns_of(rule, kwargs) if c not in self.columns]
                error = f"column(s) {missing} not found among {self.columns}" if missing else None
                self.active.append(_Active(rule, kwargs, error, {} if error else _metrics(rule, kwargs)))
        self.supported = all(a.rule.expectation in SUPPORTED for a in self.active)
        drops = [a for a in self.active if a.rule.action == "drop" and a.error is None]
        self.keep_sql = (
            f"COALESCE({' AND '.join(keep_predicate(a.rule.expectation, a.kwargs) for a in drops)}, FALSE)"
            if drops
            else None
        )

    def aggregates(self) -> list:
        """Aggregate columns (additive: sums of counts) for one ``agg`` or ``groupBy().agg``."""
        from pyspark.sql import functions as F

        def count_where(sql: str):
            return F.sum(F.when(F.expr(sql), F.lit(1)).otherwise(F.lit(0)))

        out = [F.count(F.lit(1)).alias(ROWS)]
        if self.keep_sql is not None:
            out.append(count_where(f"NOT {self.keep_sql}").alias(DROPPED))
        for a in self.active:
            column = sql_identifier(a.kwargs["column"]) if "column" in a.kwargs else None
            for metric, name in a.names.items():
                if metric == "unexpected":
                    out.append(count_where(_unexpected_sql(a.rule.expectation, a.kwargs) or "FALSE").alias(name))
                elif metric == "nulls":
                    out.append(count_where(f"{column} IS NULL").alias(name))
                else:  # sum
                    out.append(F.sum(F.col(a.kwargs["column"])).alias(name))
        return out

    def names(self) -> list[str]:
        """The aggregate columns ``aggregates`` adds (to total them over groups)."""
        named = [ROWS] + ([DROPPED] if self.keep_sql is not None else [])
        return named + [n for a in self.active for n in a.names.values()]

    def judge(self, df, totals: Mapping[str, Any], run_name: str, started: float | None = None) -> GateResult:
        """The gate on the totals of ``aggregates`` over ``df`` (``df`` is read again only for samples
        of failed rules and for uniqueness rules not guaranteed by ``unique_by``)."""
        started = time.monotonic() if started is None else started
        rows = int(totals.get(ROWS) or 0)
        by_rule: dict[int, Any] = {}
        evidence = []
        for a in self.active:
            result, success, error = self._evaluate(df, a, totals, rows)
            info = {"raised_exception": bool(error), "exception_message": error, "exception_traceback": None}
            by_rule[a.rule.index] = SimpleNamespace(result=result, success=success, exception_info=info)
            evidence.append(
                {"rule": a.rule.index, "kwargs": a.kwargs, "success": success, "result": result, "error": error}
            )
        outcomes = []
        for rule, kwargs, unset in self.resolved:
            if kwargs is None:
                outcomes.append(skipped_outcome(rule, unset))
            else:
                outcomes.append(outcome_of(rule, kwargs, by_rule[rule.index]))
        dropped = int(totals.get(DROPPED) or 0) if self.keep_sql is not None else 0
        return GateResult(
            suite=self.suite,
            outcomes=outcomes,
            dropped_rows=dropped,
            data_docs_index=None,
            run_name=run_name,
            duration_s=time.monotonic() - started,
            evidence=jsonable(evidence),
        )

    def _evaluate(self, df, a: _Active, totals: Mapping[str, Any], rows: int) -> tuple[dict, bool, str | None]:
        kind, kw = a.rule.expectation, a.kwargs
        if a.error is not None:
            return {}, False, a.error
        if kind == "expect_table_columns_to_match_set":
            wanted, have = list(kw.get("column_set") or []), self.columns
            missing = sorted(set(wanted) - set(have))
            unexpected = sorted(set(have) - set(wanted))
            exact = kw.get("exact_match", True) is not False
            success = not missing and (not exact or not unexpected)
            result: dict[str, Any] = {"observed_value": list(have)}
            if missing or unexpected:
                result["details"] = {"mismatched": {"missing": missing, "unexpected": unexpected}}
            return result, success, None
        if kind in ("expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"):
            if kind.endswith("_equal"):
                return {"observed_value": rows}, rows == kw.get("value"), None
            return {"observed_value": rows}, _between(rows, kw), None
        if kind == "expect_column_sum_to_be_between":
            total = totals.get(a.names["sum"])
            return {"observed_value": total}, total is not None and _between(total, kw), None
        if kind in _UNIQUE_RULES:
            keys = tuple(_columns_of(a.rule, kw))
            sample: list = []
            if keys in self.unique_by:
                unexpected_n = 0  # one row per key by construction (the caller's dedup)
            else:
                unexpected_n, sample = _duplicates(df, kind, keys)
            return _map_result(rows, 0, unexpected_n, rows, sample), _mostly(rows, unexpected_n, kw), None
        nulls = int(totals.get(a.names.get("nulls", ""), 0) or 0)
        unexpected_n = int(totals.get(a.names["unexpected"]) or 0)
        # not_null counts over every row; the others over the non-null ones (GE's semantics).
        base = rows if kind == "expect_column_values_to_not_be_null" else rows - nulls
        found = _sample(df, a) if unexpected_n and kind != "expect_column_values_to_not_be_null" else []
        return _map_result(rows, nulls, unexpected_n, base, found), _mostly(base, unexpected_n, kw), None


def _between(value: Any, kw: Mapping[str, Any]) -> bool:
    low, high = kw.get("min_value"), kw.get("max_value")
    if low is not None and (value <= low if kw.get("strict_min") else value < low):
        return False
    return not (high is not None and (value >= high if kw.get("strict_max") else value > high))


def _mostly(base: int, unexpected: int, kw: Mapping[str, Any]) -> bool:
    if base == 0:
        return True  # nothing to judge: GE reports success
    return (base - unexpected) / base >= float(kw.get("mostly", 1.0))


def _map_result(rows: int, nulls: int, unexpected: int, base: int, sample: list) -> dict[str, Any]:
    percent = 100.0 * unexpected / base if base else 0.0
    return {
        "element_count": rows,
        "unexpected_count": unexpected,
        "unexpected_percent": percent,
        "partial_unexpected_list": sample,
        "missing_count": nulls,
        "missing_percent": 100.0 * nulls / rows if rows else 0.0,
        "unexpected_percent_total": 100.0 * unexpected / rows if rows else 0.0,
        "unexpected_percent_nonmissing": 100.0 * unexpected / (rows - nulls) if rows - nulls else 0.0,
    }


def _sample(df, a: _Active) -> list:
    """Up to SAMPLE unexpected values (pairs for a column-pair rule), in the frame's order."""
    from pyspark.sql import functions as F

    kind, kw = a.rule.expectation, a.kwargs
    unexpected = F.expr(_unexpected_sql(kind, kw) or "FALSE")
    if kind == "expect_column_pair_values_to_be_equal":
        rows = df.where(unexpected).select(kw["column_A"], kw["column_B"]).limit(SAMPLE).collect()
        return [[r[0], r[1]] for r in rows]
    return [r[0] for r in df.where(unexpected).select(kw["column"]).limit(SAMPLE).collect()]


def _duplicates(df, kind: str, keys: tuple[str, ...]) -> tuple[int, list]:
    """Rows sharing their key with another row (GE counts every copy), and a sample of them."""
    from pyspark.sql import functions as F

    cols = list(keys)
    present = F.lit(True)
    if kind == "expect_compound_columns_to_be_unique":  # GE ignores a row whose values are all missing
        present = ~F.expr(" AND ".join(f"{sql_identifier(c)} IS NULL" for c in cols))
    else:
        present = F.col(cols[0]).isNotNull()
    counted = df.where(present).groupBy(*cols).agg(F.count(F.lit(1)).alias("_n")).where("_n > 1").cache()
    try:
        total = counted.agg(F.sum("_n")).first()[0]
        if not total:
            return 0, []
        groups = counted.limit(SAMPLE).collect()
    finally:
        counted.unpersist()
    sample: list = []
    for g in groups:
        value = {c: g[c] for c in cols} if kind == "expect_compound_columns_to_be_unique" else g[cols[0]]
        sample.extend([value] * min(int(g["_n"]), SAMPLE - len(sample)))
        if len(sample) >= SAMPLE:
            break
    return int(total), sample


def totals_of(rows: Iterable[Any], names: Sequence[str]) -> dict[str, Any]:
    """Sum the aggregate columns over the groups of a grouped ``agg`` (all of them are additive)."""
    totals: dict[str, Any] = {n: None for n in names}
    for row in rows:
        for n in names:
            value = row[n]
            if value is not None:
                totals[n] = value if totals[n] is None else totals[n] + value
    return totals
