"""Batch-layer quality gates: Great Expectations 1.x suites with per-rule actions (warn / drop / fail).

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
"""
from __future__ import annotations

import json
import logging
import math
import re
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from tidemark.config import PROJECT_ROOT
from tidemark.quality.gx import SITE_NAME, context, docs_dir, gx_lock, quiet, validation_page
from tidemark.quality.offline import localise

log = logging.getLogger(__name__)

RULES_PATH = PROJECT_ROOT / "quality" / "expectations.yml"
ACTIONS = ("warn", "drop", "fail")
# GE's FailureSeverity per action (shown in Data Docs and the stored results).
SEVERITY = {"fail": "critical", "warn": "warning", "drop": "info"}
RULE_KEYS = {"expectation", "kwargs", "action", "description"}
# Arguments Tidemark sets on every expectation itself.
RESERVED_KWARGS = {"meta", "notes", "severity", "result_format", "id", "catch_exceptions", "rendered_content"}
# Expectations a 'drop' rule may use: those with a row-level Spark SQL translation.
DROPPABLE = (
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_be_between",
)
# Placeholders a caller may leave out of params: absent means None, so their rules are skipped.
# Any other placeholder missing from params is an error (a raw_hour gate without its hour bounds
# must not pass by skipping its rules).
OPTIONAL_PLACEHOLDERS = frozenset({"volume_min", "volume_max", "expected_rows"})
VOLUME_BAND = (0.5, 2.0)  # expected hour volume: median of history times these factors
DATASOURCE = "tidemark_spark"
BATCH_DEFINITION = "whole_dataframe"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}

_PLACEHOLDER = re.compile(r"^\{([a-z][a-z0-9_]*)\}$")
_EMBEDDED = re.compile(r"\{[a-z][a-z0-9_]*\}")


class QualityConfigError(ValueError):
    """quality/expectations.yml (or the params given to it) is wrong."""


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------

def snake_case(name: str) -> str:
    """'ExpectColumnValuesToBeInSet' or 'expect_column_values_to_be_in_set' -> the snake form."""
    if "_" in name or name.islower():
        return name.strip().lower()
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.strip()).lower()


def camel_case(name: str) -> str:
    return "".join(part.capitalize() for part in snake_case(name).split("_"))


@dataclass(frozen=True)
class Rule:
    suite: str
    index: int          # position in the suite's list: the rule's id in GE meta
    expectation: str    # snake_case GE expectation type
    kwargs: Mapping[str, Any]
    action: str
    description: str

    @property
    def class_name(self) -> str:
        return camel_case(self.expectation)

    @property
    def column(self) -> str | None:
        column = self.kwargs.get("column")
        if column is None and "column_A" in self.kwargs:
            column = f"{self.kwargs['column_A']},{self.kwargs['column_B']}"
        return column

    @property
    def placeholders(self) -> list[str]:
        return sorted(set(_placeholders(self.kwargs)))


def _placeholders(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        match = _PLACEHOLDER.match(value)
        if match:
            yield match.group(1)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _placeholders(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _placeholders(item)


def _check_kwargs(where: str, value: Any) -> None:
    """Catch the two ways a placeholder goes wrong in YAML: unquoted, or inside a longer string."""
    if isinstance(value, Mapping):
        if len(value) == 1 and next(iter(value.values())) is None:
            raise QualityConfigError(f"{where}: {{{next(iter(value))}}} parsed as a YAML mapping: quote the placeholder")
        for key, item in value.items():
            _check_kwargs(f"{where}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_kwargs(where, item)
    elif isinstance(value, str) and not _PLACEHOLDER.match(value) and _EMBEDDED.search(value):
        raise QualityConfigError(f"{where}: a placeholder must be the whole value, got {value!r}")


def parse_rules(doc: Any, source: str = "expectations.yml") -> dict[str, tuple[Rule, ...]]:
    """Validate the YAML document and build the rules (no GE import)."""
    if not isinstance(doc, Mapping) or not doc:
        raise QualityConfigError(f"{source}: expected a mapping of suite name -> list of rules")
    suites: dict[str, tuple[Rule, ...]] = {}
    for suite, items in doc.items():
        if not isinstance(suite, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", suite):
            raise QualityConfigError(f"{source}: suite names are snake_case identifiers, got {suite!r}")
        if not isinstance(items, list) or not items:
            raise QualityConfigError(f"{source}: suite {suite} must be a non-empty list of rules")
        rules = []
        for index, item in enumerate(items):
            where = f"{source}: {suite}[{index}]"
            if not isinstance(item, Mapping):
                raise QualityConfigError(f"{where}: a rule is a mapping")
            unknown = set(item) - RULE_KEYS
            missing = {"expectation", "action", "description"} - set(item)
            if unknown or missing:
                raise QualityConfigError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
            expectation = snake_case(str(item["expectation"]))
            if not expectation.startswith("expect_"):
                raise QualityConfigError(f"{where}: {item['expectation']!r} is not a GE expectation name")
            action = item["action"]
            if action not in ACTIONS:
                raise QualityConfigError(f"{where}: action must be one of {ACTIONS}, got {action!r}")
            kwargs = item.get("kwargs") or {}
            if not isinstance(kwargs, Mapping):
                raise QualityConfigError(f"{where}: kwargs must be a mapping")
            reserved = RESERVED_KWARGS & set(kwargs)
            if reserved:
                raise QualityConfigError(f"{where}: kwargs {sorted(reserved)} are set by Tidemark")
            _check_kwargs(where, kwargs)
            if action == "drop":
                if expectation not in DROPPABLE:
                    raise QualityConfigError(f"{where}: action drop supports only {DROPPABLE}, not {expectation}")
                if "column" not in kwargs:
                    raise QualityConfigError(f"{where}: a drop rule needs a column")
                if "mostly" in kwargs:
                    raise QualityConfigError(f"{where}: 'mostly' makes no sense for a drop rule (every violating row is dropped)")
            description = str(item["description"]).strip()
            if not description:
                raise QualityConfigError(f"{where}: describe why the rule exists")
            rules.append(Rule(suite, index, expectation, dict(kwargs), action, description))
        suites[suite] = tuple(rules)
    return suites


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> dict[str, tuple[Rule, ...]]:
    from ruamel.yaml import YAML  # a GE dependency

    doc = YAML(typ="safe", pure=True).load(Path(path).read_text(encoding="utf-8"))
    return parse_rules(doc, source=Path(path).name)


def load_rules(path: Path | str = RULES_PATH) -> dict[str, tuple[Rule, ...]]:
    path = Path(path)
    return _load(str(path), path.stat().st_mtime_ns)


def rules_for(suite: str, path: Path | str = RULES_PATH) -> tuple[Rule, ...]:
    rules = load_rules(path)
    if suite not in rules:
        raise QualityConfigError(f"unknown suite {suite!r}; {Path(path).name} defines {sorted(rules)}")
    return rules[suite]


def fill(value: Any, params: Mapping[str, Any]) -> Any:
    """Replace every "{name}" value (nested in lists/mappings too) by params[name], keeping its type."""
    if isinstance(value, str):
        match = _PLACEHOLDER.match(value)
        if not match:
            return value
        name = match.group(1)
        if name not in params:
            if name in OPTIONAL_PLACEHOLDERS:
                return None
            raise QualityConfigError(f"placeholder {{{name}}} has no value: params give {sorted(params)}")
        return params[name]
    if isinstance(value, Mapping):
        return {key: fill(item, params) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [fill(item, params) for item in value]
    return value


def resolve(rule: Rule, params: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """(filled kwargs, []) or (None, [placeholders that are None]) when the rule is skipped."""
    kwargs = fill(rule.kwargs, params)
    unset = [name for name in rule.placeholders if params.get(name) is None]  # None, or optional and absent
    return (None, unset) if unset else (kwargs, [])


# --------------------------------------------------------------------------------------------
# Params
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def contract_value_sets() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(devices, countries) allowed by the page_view contract, read from its JSON Schema."""
    from tidemark.contract import SCHEMA_PATH

    props = json.loads(SCHEMA_PATH.read_text())["properties"]
    return tuple(props["device"]["enum"]), tuple(props["country"]["enum"])


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def volume_bounds(history_rows: Sequence[int | None]) -> tuple[int | None, int | None]:
    """Expected row-count band for an hour: median of its history times VOLUME_BAND; None without history."""
    history = [int(n) for n in history_rows if n is not None]
    if not history:
        return None, None
    median = statistics.median(history)
    return math.floor(median * VOLUME_BAND[0]), math.ceil(median * VOLUME_BAND[1])


def raw_hour_params(hour_start: datetime, history_rows: Sequence[int | None]) -> dict[str, Any]:
    """Placeholders for the raw_hour suite. A naive hour_start is taken as UTC.

    ``history_rows``: deduplicated row counts of comparable past hours (e.g. the same hour of the
    last 7-28 days); empty when there is none, which skips the volume rule.
    """
    from tidemark.tables import EVENTS_RAW, table

    start = _utc(hour_start)
    if start != start.replace(minute=0, second=0, microsecond=0):
        raise ValueError(f"hour_start must be the start of an hour, got {hour_start.isoformat()}")
    devices, countries = contract_value_sets()
    volume_min, volume_max = volume_bounds(history_rows)
    return {
        "hour_start": start,
        "hour_end": start + timedelta(hours=1),
        "raw_columns": list(table(EVENTS_RAW).names),
        "devices": list(devices),
        "countries": list(countries),
        "volume_min": volume_min,
        "volume_max": volume_max,
    }


def hour_rollups_params(expected_rows: int | None = None) -> dict[str, Any]:
    """Placeholders for the hour_rollups suite: the hour's deduplicated raw count, if known."""
    return {"expected_rows": None if expected_rows is None else int(expected_rows)}


# --------------------------------------------------------------------------------------------
# Drop rules -> Spark SQL
# --------------------------------------------------------------------------------------------

def sql_identifier(name: str) -> str:
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
        return f"TIMESTAMP '{_utc(value).strftime('%Y-%m-%d %H:%M:%S.%f')}+00:00'"
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


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return _utc(value).isoformat()
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
    suite: str
    expectation: str            # snake_case GE type
    column: str | None
    action: str                 # warn | drop | fail
    success: bool
    unexpected_count: int | None
    observed: Any               # observed_value, or a sample of unexpected values
    description: str
    message: str = ""           # readable line: what failed and for how many rows
    skipped: bool = False       # a placeholder was None (e.g. no volume history)
    rule: int = -1              # index in the suite's rule list
    element_count: int | None = None
    error: str | None = None    # GE raised instead of evaluating (e.g. a missing column)

    def as_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass
class GateResult:
    suite: str
    outcomes: list[ExpectationOutcome]
    dropped_rows: int            # rows removed by 'drop' expectations
    data_docs_index: str | None  # path to the site's index.html
    run_name: str = ""
    duration_s: float = 0.0
    validation_page: str | None = None  # this run's page in the site

    @property
    def passed(self) -> bool:
        """No 'fail' expectation failed."""
        return not self.failures

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.action == "fail" and not o.success]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.action == "warn" and not o.success]

    @property
    def drops(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.action == "drop" and not o.success]

    def reason(self) -> str:
        """One line per failed 'fail' expectation; empty when the gate passed."""
        return "\n".join(f"{self.suite}: {o.message} ({o.expectation})" for o in self.failures)

    def as_dict(self) -> dict[str, Any]:
        return jsonable({
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
        })


def _fmt(value: Any) -> str:
    if isinstance(value, datetime):
        value = _utc(value)
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
        return _utc(value).isoformat(sep=" ").replace("+00:00", "")
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_fmt_exact(v) for v in value) + ")"
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


def _outcome(rule: Rule, kwargs: Mapping[str, Any], validation_result: Any) -> ExpectationOutcome:
    result = dict(validation_result.result or {})
    error = _error(validation_result.exception_info)
    count = result.get("unexpected_count")
    success = bool(validation_result.success)
    message = "" if success else (f"{rule.column or 'table'}: GE could not evaluate: {error}" if error
                                  else _message(rule, kwargs, result))
    return ExpectationOutcome(
        suite=rule.suite, expectation=rule.expectation, column=rule.column, action=rule.action,
        success=success, unexpected_count=None if count is None else int(count),
        observed=_observed(result), description=rule.description, message=message, rule=rule.index,
        element_count=result.get("element_count"), error=error,
    )


def _skipped(rule: Rule, unset: list[str]) -> ExpectationOutcome:
    return ExpectationOutcome(
        suite=rule.suite, expectation=rule.expectation, column=rule.column, action=rule.action,
        success=True, unexpected_count=None, observed=None, description=rule.description,
        message=f"skipped: {', '.join(unset)} not set", skipped=True, rule=rule.index,
    )


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
            expectations.append(cls(
                **kwargs,
                meta={"tidemark_rule": rule.index, "tidemark_action": rule.action},
                notes=f"Tidemark action: {rule.action.upper()}. {rule.description}",
                severity=SEVERITY[rule.action],
            ))
        except Exception as exc:  # pydantic validation of the kwargs
            raise QualityConfigError(f"{suite}[{rule.index}] {rule.class_name}: {exc}") from exc
    return gx.ExpectationSuite(name=suite, expectations=expectations,
                               meta={"source": "quality/expectations.yml (see quality/README.md)"})


def validate(df, suite: str, params: Mapping[str, Any], run_name: str) -> GateResult:
    """Run the suite on ``df`` through a GE Checkpoint, update Data Docs, and judge the actions.

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
        with gx_lock():
            ctx = context()
            batch_definition = _batch_definition(ctx, suite)
            gx_suite = ctx.suites.add_or_update(gx_suite)
            definition = ctx.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=suite, data=batch_definition, suite=gx_suite))
            checkpoint = ctx.checkpoints.add_or_update(gx.Checkpoint(
                name=suite, validation_definitions=[definition],
                actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[SITE_NAME])],
                result_format=RESULT_FORMAT,
            ))
            pages_since = time.time() - 1.0
            run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(timezone.utc))
            checkpoint_result = checkpoint.run(batch_parameters={"dataframe": df}, run_id=run_id)
            localise(docs_dir(), since=pages_since)

        (identifier, suite_result), = checkpoint_result.run_results.items()
        by_rule = {}
        for result in suite_result.results:
            meta = result.expectation_config.meta or {}
            by_rule[meta.get("tidemark_rule")] = result
        outcomes = []
        for rule, kwargs, unset in resolved:
            if kwargs is None:
                outcomes.append(_skipped(rule, unset))
            else:
                outcomes.append(_outcome(rule, kwargs, by_rule[rule.index]))
        dropped = _dropped_rows(df, active, outcomes)
    finally:
        if cached_here:
            df.unpersist()

    site = docs_dir()
    page = validation_page(site, identifier)
    gate = GateResult(
        suite=suite, outcomes=outcomes, dropped_rows=dropped,
        data_docs_index=str(site / "index.html") if (site / "index.html").exists() else None,
        run_name=run_name, duration_s=time.monotonic() - started,
        validation_page=str(page) if page else None,
    )
    level = logging.WARNING if not gate.passed or gate.warnings or dropped else logging.INFO
    log.log(level, "quality gate %s %s: %s, %d warnings, %d rows dropped, %.1fs%s", suite, run_name,
            "passed" if gate.passed else "FAILED", len(gate.warnings), dropped, gate.duration_s,
            "" if gate.passed else "\n" + gate.reason())
    return gate


def _dropped_rows(df, active: Sequence[tuple[Rule, Mapping[str, Any]]], outcomes: Sequence[ExpectationOutcome]) -> int:
    """What apply_drops removes. GE's unexpected_count is exact when only one drop rule failed;
    with several, rows may violate more than one, so count the union with Spark."""
    failed = {o.rule for o in outcomes if o.action == "drop" and not o.success and not o.skipped}
    if not failed:
        return 0
    counts = [o.unexpected_count for o in outcomes if o.rule in failed]
    if len(counts) == 1 and counts[0] is not None:
        return counts[0]
    evaluable = [(r, k) for r, k in active if r.action == "drop" and
                 not next(o for o in outcomes if o.rule == r.index).error]
    keep_sql = _keep_sql(evaluable)
    return _count_dropped(df, keep_sql) if keep_sql else 0
