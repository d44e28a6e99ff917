"""tidemark.quality.results: the verdict of a gate and its readable messages."""

import json
from datetime import datetime, timedelta, timezone

from tidemark.quality import ExpectationOutcome, GateResult, Rule, results

HOUR = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)


def outcome(action, success, **kw):
    return ExpectationOutcome(
        suite="raw_hour",
        expectation=kw.pop("expectation", "expect_x"),
        column="c",
        action=action,
        success=success,
        unexpected_count=kw.pop("n", None),
        observed=kw.pop("observed", None),
        description="d",
        message=kw.pop("message", ""),
        **kw,
    )


def test_gate_result_judges_actions():
    gate = GateResult("raw_hour", [outcome("fail", True), outcome("warn", False), outcome("drop", False, n=3)], 3, None)
    assert gate.passed and gate.reason() == "" and len(gate.warnings) == 1 and len(gate.drops) == 1
    failed = outcome(
        "fail",
        False,
        n=12,
        expectation="expect_column_values_to_be_between",
        message="event_time outside [2026-11-25 03:00, 04:00) for 12 of 90 rows",
        observed={"sample": [HOUR]},
    )
    gate = GateResult(
        "raw_hour",
        [
            failed,
            outcome(
                "fail",
                False,
                message="user_id is null for 1 of 90 rows",
                expectation="expect_column_values_to_not_be_null",
            ),
        ],
        0,
        "/x",
    )
    assert not gate.passed and len(gate.failures) == 2
    assert gate.reason().splitlines() == [
        "raw_hour: event_time outside [2026-11-25 03:00, 04:00) for 12 of 90 rows (expect_column_values_to_be_between)",
        "raw_hour: user_id is null for 1 of 90 rows (expect_column_values_to_not_be_null)",
    ]
    as_dict = json.loads(json.dumps(gate.as_dict()))
    assert as_dict["passed"] is False and as_dict["outcomes"][0]["observed"] == {
        "sample": ["2026-11-25T03:00:00+00:00"]
    }


def test_messages_name_the_rule_and_the_count():
    between = Rule("raw_hour", 10, "expect_column_values_to_be_between", {}, "fail", "d")
    kwargs = {"column": "event_time", "min_value": HOUR, "max_value": HOUR + timedelta(hours=1), "strict_max": True}
    result = {"unexpected_count": 12, "element_count": 90, "partial_unexpected_list": [HOUR + timedelta(hours=1)] * 2}
    assert (
        results._message(between, kwargs, result)
        == "event_time outside [2026-11-25 03:00, 04:00) for 12 of 90 rows (e.g. 2026-11-25 04:00:00)"
    )
    total = Rule("hour_rollups", 1, "expect_column_sum_to_be_between", {}, "fail", "d")
    assert (
        results._message(total, {"column": "events_sum", "min_value": 10, "max_value": 10}, {"observed_value": 9.0})
        == "sum of events_sum is 9, expected 10"
    )
    volume = Rule("raw_hour", 12, "expect_table_row_count_to_be_between", {}, "warn", "d")
    assert (
        results._message(volume, {"min_value": 50, "max_value": 200}, {"observed_value": 20})
        == "row count 20 outside [50, 200]"
    )
    assert (
        results._error(
            {
                "('column_values.nonnull.unexpected_count', 'x')": {
                    "raised_exception": True,
                    "exception_message": "Column page does not exist\nTrace",
                }
            }
        )
        == "Column page does not exist"
    )
