"""tidemark.quality.drops: drop rules as Spark SQL, with GE's semantics (the SQL only: no Spark)."""

from datetime import datetime, timedelta, timezone

from tidemark.quality import drop_filter_sql, hour_rollups_params, keep_predicate, raw_hour_params

HOUR = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)


def test_drop_predicates_follow_ge_semantics():
    assert keep_predicate("expect_column_values_to_not_be_null", {"column": "user_id"}) == "`user_id` IS NOT NULL"
    assert (
        keep_predicate("expect_column_values_to_be_in_set", {"column": "device", "value_set": ["a", "O'B\\"]})
        == "(`device` IS NULL OR `device` IN ('a', 'O\\'B\\\\'))"
    )
    assert (
        keep_predicate("expect_column_values_to_not_be_in_set", {"column": "c", "value_set": [1, 2]})
        == "(`c` IS NULL OR `c` NOT IN (1, 2))"
    )
    assert keep_predicate(
        "expect_column_values_to_be_between",
        {"column": "event_time", "min_value": HOUR, "max_value": HOUR + timedelta(hours=1), "strict_max": True},
    ) == (
        "(`event_time` IS NULL OR (`event_time` >= TIMESTAMP '2026-11-25 03:00:00.000000+00:00' AND "
        "`event_time` < TIMESTAMP '2026-11-25 04:00:00.000000+00:00'))"
    )
    assert (
        keep_predicate("expect_column_values_to_be_between", {"column": "x", "min_value": 0, "strict_min": True})
        == "(`x` IS NULL OR (`x` > 0))"
    )
    assert (
        keep_predicate("expect_column_values_to_be_in_set", {"column": "we`ird", "value_set": []})
        == "`we``ird` IS NULL"
    )


def test_drop_filter_for_the_raw_hour():
    sql = drop_filter_sql("raw_hour", raw_hour_params(HOUR, []))
    assert sql.startswith(
        "COALESCE((`device` IS NULL OR `device` IN ('desktop', 'mobile', 'tablet', 'other')) AND "
        "(`country` IS NULL OR `country` IN ('AD', "
    )
    assert sql.endswith("'ZW')), FALSE)")
    assert drop_filter_sql("hour_rollups", hour_rollups_params(5)) is None
