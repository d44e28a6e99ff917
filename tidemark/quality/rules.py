"""The rule file: ``quality/expectations.yml`` parsed into ``Rule``s, and their placeholders filled.

A suite is a list of rules {expectation, kwargs, action, description}; ``quality/README.md``
explains each one. ``parse_rules`` checks everything that can be checked without Great
Expectations (names, actions, which expectations a drop rule may use, placeholder syntax), so a
broken file fails fast and Spark-free; ``gates.build_suite`` catches a misspelt GE class or kwarg.

Placeholders: a kwarg value that is exactly ``"{name}"`` is replaced by ``params[name]``, keeping
its type (datetime, list, int). A rule whose placeholder is None is skipped (e.g. the volume rule
without history); a required placeholder missing from params is an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tidemark.config import PROJECT_ROOT
from tidemark.errors import TidemarkError

RULES_PATH = PROJECT_ROOT / "quality" / "expectations.yml"
ACTIONS = ("warn", "drop", "fail")
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

_PLACEHOLDER = re.compile(r"^\{([a-z][a-z0-9_]*)\}$")
_EMBEDDED = re.compile(r"\{[a-z][a-z0-9_]*\}")


class QualityConfigError(TidemarkError, ValueError):
    """quality/expectations.yml (or the params given to it) is wrong."""


def snake_case(name: str) -> str:
    """'ExpectColumnValuesToBeInSet' or 'expect_column_values_to_be_in_set' -> the snake form."""
    if "_" in name or name.islower():
        return name.strip().lower()
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.strip()).lower()


def camel_case(name: str) -> str:
    """The GE class name of an expectation.

    Parameters
    ----------
    name : str
        In snake_case or CamelCase.

    Returns
    -------
    str
        E.g. ``'ExpectColumnValuesToBeInSet'`` for ``'expect_column_values_to_be_in_set'``.
    """
    return "".join(part.capitalize() for part in snake_case(name).split("_"))


@dataclass(frozen=True)
class Rule:
    """One rule of a suite, as written in the rule file (placeholders not filled)."""

    suite: str
    index: int  # position in the suite's list: the rule's id in GE meta
    expectation: str  # snake_case GE expectation type
    kwargs: Mapping[str, Any]
    action: str
    description: str

    @property
    def class_name(self) -> str:
        """The GE expectation class, e.g. ``ExpectColumnValuesToBeInSet``."""
        return camel_case(self.expectation)

    @property
    def column(self) -> str | None:
        """The column the rule checks: ``"A,B"`` for a column pair or list, None for a table rule."""
        column = self.kwargs.get("column")
        if column is None and "column_A" in self.kwargs:
            column = f"{self.kwargs['column_A']},{self.kwargs['column_B']}"
        if column is None and isinstance(self.kwargs.get("column_list"), (list, tuple)):
            column = ",".join(str(c) for c in self.kwargs["column_list"])
        return column

    @property
    def placeholders(self) -> list[str]:
        """The placeholder names in the rule's kwargs, sorted."""
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
            raise QualityConfigError(
                f"{where}: {{{next(iter(value))}}} parsed as a YAML mapping: quote the placeholder"
            )
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
                    raise QualityConfigError(
                        f"{where}: 'mostly' makes no sense for a drop rule (every violating row is dropped)"
                    )
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
    """Read and check a rule file (cached until the file changes).

    Parameters
    ----------
    path : Path or str, default RULES_PATH
        The YAML rule file, ``quality/expectations.yml`` by default.

    Returns
    -------
    dict of str to tuple of Rule
        Suite name -> its rules, in file order.

    Raises
    ------
    QualityConfigError
        The file breaks a rule of ``parse_rules``.
    """
    path = Path(path)
    return _load(str(path), path.stat().st_mtime_ns)


def rules_for(suite: str, path: Path | str = RULES_PATH) -> tuple[Rule, ...]:
    """The rules of one suite.

    Parameters
    ----------
    suite : str
        A suite defined in the rule file, e.g. ``"raw_hour"``.
    path : Path or str, default RULES_PATH
        The YAML rule file.

    Returns
    -------
    tuple of Rule
        In file order.

    Raises
    ------
    QualityConfigError
        The file does not define ``suite``.
    """
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
