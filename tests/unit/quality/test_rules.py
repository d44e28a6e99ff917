"""Quality rules without Spark: loading, placeholders, drop predicates, results, docs rewriting."""
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tidemark.contract import SCHEMA_PATH
from tidemark.quality import gates
from tidemark.quality.gates import (
    ExpectationOutcome,
    GateResult,
    QualityConfigError,
    Rule,
    fill,
    keep_predicate,
    load_rules,
    parse_rules,
    raw_hour_params,
    resolve,
    rules_for,
)
from tidemark.tables import EVENTS_RAW, table

HOUR = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)


def rule(expectation="expect_column_values_to_be_in_set", action="drop", **kwargs):
    return {"expectation": expectation, "kwargs": kwargs or {"column": "device", "value_set": "{devices}"},
            "action": action, "description": "why"}


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
    assert actions[("expect_column_values_to_be_unique", "event_id")] == "fail"
    assert actions[("expect_table_columns_to_match_set", None)] == "fail"
    assert actions[("expect_table_row_count_to_be_between", None)] == "warn"
    assert {r.action for r in rules["hour_rollups"]} == {"fail"}
    assert all(r.description for suite in rules.values() for r in suite)


def test_every_rule_is_a_real_ge_expectation_with_valid_kwargs():
    # Imports Great Expectations (a few seconds) but no Spark: catches a misspelt class or kwarg.
    params = {**raw_hour_params(HOUR, [100]), **gates.hour_rollups_params(10)}
    for suite, rules in load_rules().items():
        active = [(r, resolve(r, params)[0]) for r in rules]
        built = gates.build_suite(suite, active)
        assert len(built.expectations) == len(rules)
        for expectation, r in zip(built.expectations, rules):
            assert expectation.expectation_type == r.expectation
            assert expectation.meta == {"tidemark_rule": r.index, "tidemark_action": r.action}
            assert expectation.severity == gates.SEVERITY[r.action]


def test_expectation_names_in_camel_or_snake_case():
    rules = parse_rules({"s": [rule("ExpectColumnValuesToBeInSet"), rule("expect_column_values_to_be_in_set")]})
    assert [r.expectation for r in rules["s"]] == ["expect_column_values_to_be_in_set"] * 2
    assert rules["s"][0].class_name == "ExpectColumnValuesToBeInSet"
    assert gates.snake_case("ExpectTableRowCountToBeBetween") == "expect_table_row_count_to_be_between"


@pytest.mark.parametrize("doc, message", [
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
])
def test_bad_rule_files_are_rejected(doc, message):
    with pytest.raises(QualityConfigError, match=re.escape(message)):
        parse_rules(doc)


def test_an_unquoted_placeholder_in_yaml_is_caught(tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text("s:\n  - expectation: expect_column_values_to_be_in_set\n"
                    "    kwargs: {column: device, value_set: {devices}}\n    action: drop\n    description: x\n")
    with pytest.raises(QualityConfigError, match="quote the placeholder"):
        load_rules(path)
    with pytest.raises(QualityConfigError, match="unknown suite"):
        rules_for("nope")


# -- placeholders ----------------------------------------------------------------------------

def test_placeholders_keep_their_types_and_nest():
    params = {"hour_start": HOUR, "devices": ["desktop", "mobile"], "n": 5}
    assert fill({"min_value": "{hour_start}", "value_set": "{devices}", "other": ["{n}", "x"], "s": "plain"},
                params) == {"min_value": HOUR, "value_set": ["desktop", "mobile"], "other": [5, "x"], "s": "plain"}
    with pytest.raises(QualityConfigError, match=r"placeholder \{missing\} has no value"):
        fill("{missing}", params)
    assert fill("{expected_rows}", params) is None        # optional: absent means None (rule skipped)


def test_a_rule_with_an_unset_placeholder_is_skipped():
    volume = next(r for r in rules_for("raw_hour") if r.expectation == "expect_table_row_count_to_be_between")
    assert volume.placeholders == ["volume_max", "volume_min"]
    assert resolve(volume, raw_hour_params(HOUR, [])) == (None, ["volume_max", "volume_min"])
    kwargs, unset = resolve(volume, raw_hour_params(HOUR, [90, 100, 130]))
    assert (kwargs, unset) == ({"min_value": 50, "max_value": 200}, [])
    total = next(r for r in rules_for("hour_rollups") if r.expectation == "expect_column_sum_to_be_between")
    assert resolve(total, {}) == (None, ["expected_rows"])
    between = next(r for r in rules_for("raw_hour") if r.kwargs.get("column") == "event_time" and "min_value" in r.kwargs)
    with pytest.raises(QualityConfigError, match="hour_start"):
        resolve(between, {})                              # required: a gate without its hour bounds is an error


def test_raw_hour_params():
    params = raw_hour_params(datetime(2026, 11, 25, 3), [10, 20])     # naive: UTC
    assert params["hour_start"] == HOUR and params["hour_end"] == HOUR + timedelta(hours=1)
    contract = json.loads(Path(SCHEMA_PATH).read_text())["properties"]
    assert params["devices"] == contract["device"]["enum"]
    assert params["countries"] == contract["country"]["enum"]
    assert params["raw_columns"] == table(EVENTS_RAW).names
    assert (params["volume_min"], params["volume_max"]) == (7, 30)    # median 15 * [0.5, 2.0]
    assert raw_hour_params(HOUR.astimezone(timezone(timedelta(hours=2))), [])["hour_start"] == HOUR
    with pytest.raises(ValueError, match="start of an hour"):
        raw_hour_params(HOUR + timedelta(minutes=5), [])


# -- drop predicates -------------------------------------------------------------------------

def test_drop_predicates_follow_ge_semantics():
    assert keep_predicate("expect_column_values_to_not_be_null", {"column": "user_id"}) == "`user_id` IS NOT NULL"
    assert keep_predicate("expect_column_values_to_be_in_set", {"column": "device", "value_set": ["a", "O'B\\"]}) \
        == "(`device` IS NULL OR `device` IN ('a', 'O\\'B\\\\'))"
    assert keep_predicate("expect_column_values_to_not_be_in_set", {"column": "c", "value_set": [1, 2]}) \
        == "(`c` IS NULL OR `c` NOT IN (1, 2))"
    assert keep_predicate("expect_column_values_to_be_between",
                          {"column": "event_time", "min_value": HOUR, "max_value": HOUR + timedelta(hours=1),
                           "strict_max": True}) == (
        "(`event_time` IS NULL OR (`event_time` >= TIMESTAMP '2026-11-25 03:00:00.000000+00:00' AND "
        "`event_time` < TIMESTAMP '2026-11-25 04:00:00.000000+00:00'))")
    assert keep_predicate("expect_column_values_to_be_between", {"column": "x", "min_value": 0, "strict_min": True}) \
        == "(`x` IS NULL OR (`x` > 0))"
    assert keep_predicate("expect_column_values_to_be_in_set", {"column": "we`ird", "value_set": []}) \
        == "`we``ird` IS NULL"


def test_drop_filter_for_the_raw_hour():
    sql = gates.drop_filter_sql("raw_hour", raw_hour_params(HOUR, []))
    assert sql.startswith("COALESCE((`device` IS NULL OR `device` IN ('desktop', 'mobile', 'tablet', 'other')) AND "
                          "(`country` IS NULL OR `country` IN ('AD', ")
    assert sql.endswith("'ZW')), FALSE)")
    assert gates.drop_filter_sql("hour_rollups", gates.hour_rollups_params(5)) is None


# -- results ---------------------------------------------------------------------------------

def outcome(action, success, **kw):
    return ExpectationOutcome(suite="raw_hour", expectation=kw.pop("expectation", "expect_x"), column="c",
                              action=action, success=success, unexpected_count=kw.pop("n", None),
                              observed=kw.pop("observed", None), description="d", message=kw.pop("message", ""), **kw)


def test_gate_result_judges_actions():
    gate = GateResult("raw_hour", [outcome("fail", True), outcome("warn", False), outcome("drop", False, n=3)], 3, None)
    assert gate.passed and gate.reason() == "" and len(gate.warnings) == 1 and len(gate.drops) == 1
    failed = outcome("fail", False, n=12, expectation="expect_column_values_to_be_between",
                     message="event_time outside [2026-11-25 03:00, 04:00) for 12 of 90 rows",
                     observed={"sample": [HOUR]})
    gate = GateResult("raw_hour", [failed, outcome("fail", False, message="user_id is null for 1 of 90 rows",
                                                   expectation="expect_column_values_to_not_be_null")], 0, "/x")
    assert not gate.passed and len(gate.failures) == 2
    assert gate.reason().splitlines() == [
        "raw_hour: event_time outside [2026-11-25 03:00, 04:00) for 12 of 90 rows (expect_column_values_to_be_between)",
        "raw_hour: user_id is null for 1 of 90 rows (expect_column_values_to_not_be_null)",
    ]
    as_dict = json.loads(json.dumps(gate.as_dict()))
    assert as_dict["passed"] is False and as_dict["outcomes"][0]["observed"] == {"sample": ["2026-11-25T03:00:00+00:00"]}


def test_messages_name_the_rule_and_the_count():
    between = Rule("raw_hour", 10, "expect_column_values_to_be_between", {}, "fail", "d")
    kwargs = {"column": "event_time", "min_value": HOUR, "max_value": HOUR + timedelta(hours=1), "strict_max": True}
    result = {"unexpected_count": 12, "element_count": 90, "partial_unexpected_list": [HOUR + timedelta(hours=1)] * 2}
    assert gates._message(between, kwargs, result) == \
        "event_time outside [2026-11-25 03:00, 04:00) for 12 of 90 rows (e.g. 2026-11-25 04:00:00)"
    total = Rule("hour_rollups", 1, "expect_column_sum_to_be_between", {}, "fail", "d")
    assert gates._message(total, {"column": "events_sum", "min_value": 10, "max_value": 10}, {"observed_value": 9.0}) \
        == "sum of events_sum is 9, expected 10"
    volume = Rule("raw_hour", 12, "expect_table_row_count_to_be_between", {}, "warn", "d")
    assert gates._message(volume, {"min_value": 50, "max_value": 200}, {"observed_value": 20}) == \
        "row count 20 outside [50, 200]"
    assert gates._error({"('column_values.nonnull.unexpected_count', 'x')": {
        "raised_exception": True, "exception_message": "Column page does not exist\nTrace"}}) == "Column page does not exist"


# -- offline docs ----------------------------------------------------------------------------

def test_docs_rewrite_points_cdn_assets_at_vendored_copies(tmp_path):
    from tidemark.quality import offline

    site = tmp_path
    page_dir = site / "validations" / "s" / "run" / "time"
    (site / "static" / "images").mkdir(parents=True)
    (site / "static" / "images" / "favicon.ico").write_bytes(b"")
    page_dir.mkdir(parents=True)
    html = (
        '<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>'
        '<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js" '
        'integrity="sha384-abc" crossorigin="anonymous"></script>'
        '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1&x=2">'
        '<link rel="shortcut icon" href="../../../static/images/favicon.ico"/>'
        "<style>a { background: url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png') }</style>"
        '<a href="https://greatexpectations.io">GX</a>'
        '<script src="https://cdn.example.com/new.js"></script>'
    )
    new, unmapped = offline.rewrite(html, page_dir, site / "static")
    assert unmapped == ["https://cdn.example.com/new.js"]
    assert '<link rel="stylesheet" href="../../../../static/vendor/bootstrap/bootstrap.min.css"/>' in new
    assert '<script src="../../../../static/vendor/bootstrap/bootstrap.min.js"></script>' in new
    assert '<img src="../../../../static/images/logo-long.png">' in new
    assert 'href="../../../../static/images/favicon.ico"' in new          # GE's off-by-one depth, fixed
    assert "url('../../../../static/images/logo-long.png')" in new
    assert '<a href="https://greatexpectations.io">' in new
    assert offline.remote_asset_refs(new) == ["https://cdn.example.com/new.js"]


def test_every_cdn_url_has_a_vendored_file():
    from tidemark.quality.vendor import ASSETS, URL_MAP, VENDOR_DIR

    for asset in ASSETS:
        assert (VENDOR_DIR / asset.target).is_file(), asset.target
    assert all(t.startswith(("vendor/", "images/")) for t in URL_MAP.values())
    css = (VENDOR_DIR / "fontawesome" / "css" / "all.min.css").read_text()
    assert ".ttf" not in css and "fa-solid-900.woff2" in css
