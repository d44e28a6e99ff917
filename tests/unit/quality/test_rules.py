"""tidemark.quality.rules: the rule file, its checks, and placeholders (no Spark, no GE)."""

import re
from datetime import datetime, timezone

import pytest

from tidemark.quality import QualityConfigError, load_rules, parse_rules, raw_hour_params, rules_for
from tidemark.quality.rules import camel_case, fill, resolve, snake_case

HOUR = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)


def rule(expectation="expect_column_values_to_be_in_set", action="drop", **kwargs):
    return {
        "expectation": expectation,
        "kwargs": kwargs or {"column": "device", "value_set": "{devices}"},
        "action": action,
        "description": "why",
    }


# -- loading ---------------------------------------------------------------------------------


def test_the_rule_file_loads_and_covers_the_contract():
    rules = load_rules()
    assert set(rules) == {"raw_hour", "hour_rollups"}
    raw = rules["raw_hour"]
    not_null = {r.kwargs["column"] for r in raw if r.expectation == "expect_column_values_to_not_be_null"}
    assert not_null == {"event_id", "tenant_id", "event_time", "user_id", "country", "device", "page"}
    assert all(r.action == "fail" for r in raw if r.expectation == "expect_column_values_to_not_be_null")
    actions = {(r.expectation, r.kwargs.get("column")): r.action for r in raw}
    assert actions[("expect_column_values_to_be_in_set", "device")] == "drop"
    assert actions[("expect_column_values_to_be_in_set", "country")] == "drop"
    assert actions[("expect_column_values_to_be_between", "event_time")] == "fail"
    # dedup is by (tenant, event_id): the same id under two tenants is two events
    unique = [r for r in raw if r.expectation == "expect_compound_columns_to_be_unique"]
    assert [(r.kwargs["column_list"], r.column, r.action) for r in unique] == [
        (["tenant_id", "event_id"], "tenant_id,event_id", "fail")
    ]
    assert not [r for r in raw if r.expectation == "expect_column_values_to_be_unique"]
    assert actions[("expect_table_columns_to_match_set", None)] == "fail"
    assert actions[("expect_table_row_count_to_be_between", None)] == "warn"
    assert {r.action for r in rules["hour_rollups"]} == {"fail"}
    assert all(r.description for suite in rules.values() for r in suite)


def test_expectation_names_in_camel_or_snake_case():
    rules = parse_rules({"s": [rule("ExpectColumnValuesToBeInSet"), rule("expect_column_values_to_be_in_set")]})
    assert [r.expectation for r in rules["s"]] == ["expect_column_values_to_be_in_set"] * 2
    assert rules["s"][0].class_name == "ExpectColumnValuesToBeInSet"
    assert snake_case("ExpectTableRowCountToBeBetween") == "expect_table_row_count_to_be_between"
    assert camel_case("expect_column_values_to_be_in_set") == "ExpectColumnValuesToBeInSet"


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"s": [rule(action="explode")]}, "action must be one of"),
        ({"s": [{**rule(), "severity": "high"}]}, "unknown keys ['severity']"),
        ({"s": [{k: v for k, v in rule().items() if k != "description"}]}, "missing keys ['description']"),
        ({"s": [rule("expect_column_values_to_be_unique", column="event_id")]}, "action drop supports only"),
        ({"s": [rule(column="device", value_set="{devices}", mostly=0.9)]}, "'mostly' makes no sense"),
        ({"s": [rule(column="device", value_set={"devices": None})]}, "parsed as a YAML mapping: quote"),
        ({"s": [rule(column="device", value_set="one of {devices}")]}, "must be the whole value"),
        ({"s": [rule(action="fail", column="device", value_set=["a"], meta={"x": 1})]}, "are set by Tidemark"),
        ({"s": [rule("column_values_to_be_in_set")]}, "is not a GE expectation name"),
        ({"Bad Suite": [rule()]}, "snake_case"),
        ({"s": []}, "non-empty list"),
    ],
)
def test_bad_rule_files_are_rejected(doc, message):
    with pytest.raises(QualityConfigError, match=re.escape(message)):
        parse_rules(doc)


def test_an_unquoted_placeholder_in_yaml_is_caught(tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text(
        "s:\n  - expectation: expect_column_values_to_be_in_set\n"
        "    kwargs: {column: device, value_set: {devices}}\n    action: drop\n    description: x\n"
    )
    with pytest.raises(QualityConfigError, match="quote the placeholder"):
        load_rules(path)
    with pytest.raises(QualityConfigError, match="unknown suite"):
        rules_for("nope")


# -- placeholders ----------------------------------------------------------------------------


def test_placeholders_keep_their_types_and_nest():
    params = {"hour_start": HOUR, "devices": ["desktop", "mobile"], "n": 5}
    assert fill(
        {"min_value": "{hour_start}", "value_set": "{devices}", "other": ["{n}", "x"], "s": "plain"}, params
    ) == {"min_value": HOUR, "value_set": ["desktop", "mobile"], "other": [5, "x"], "s": "plain"}
    with pytest.raises(QualityConfigError, match=r"placeholder \{missing\} has no value"):
        fill("{missing}", params)
    assert fill("{expected_rows}", params) is None  # optional: absent means None (rule skipped)


def test_a_rule_with_an_unset_placeholder_is_skipped():
    volume = next(r for r in rules_for("raw_hour") if r.expectation == "expect_table_row_count_to_be_between")
    assert volume.placeholders == ["volume_max", "volume_min"]
    assert resolve(volume, raw_hour_params(HOUR, [])) == (None, ["volume_max", "volume_min"])
    kwargs, unset = resolve(volume, raw_hour_params(HOUR, [90, 100, 130]))
    assert (kwargs, unset) == ({"min_value": 50, "max_value": 200}, [])
    total = next(r for r in rules_for("hour_rollups") if r.expectation == "expect_column_sum_to_be_between")
    assert resolve(total, {}) == (None, ["expected_rows"])
    between = next(
        r for r in rules_for("raw_hour") if r.kwargs.get("column") == "event_time" and "min_value" in r.kwargs
    )
    with pytest.raises(QualityConfigError, match="hour_start"):
        resolve(between, {})  # required: a gate without its hour bounds is an error
