"""Quality gates end to end: GE 1.x Checkpoints on tiny Spark frames, actions, offline Data Docs.

Needs Spark only (no broker / ClickHouse). GE state and the site go to a temporary home.
"""

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from tidemark.quality import (
    apply_drops,
    docs,
    gx,
    hour_rollups_params,
    keep_predicate,
    offline,
    raw_hour_params,
    validate,
)
from tidemark.tables import EVENTS_RAW, table

HOUR = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def quality_home(tmp_path_factory):
    return tmp_path_factory.mktemp("quality")


@pytest.fixture(scope="module")
def raw_schema():
    # As read back from the lake, but nullable, so a test can put the nulls the gate must catch.
    from pyspark.sql import types as T

    return T.StructType([replace_nullable(f) for f in table(EVENTS_RAW).spark().fields])


def replace_nullable(field):
    from pyspark.sql import types as T

    return T.StructField(field.name, field.dataType, True)


def event(i, minute=5, **overrides):
    at = overrides.pop("event_time", HOUR + timedelta(minutes=minute, seconds=i % 60))
    row = {
        "event_id": f"00000000-0000-4000-8000-{i:012d}",
        "tenant_id": "t1" if i % 2 else "t2",
        "event_time": at,
        "user_id": f"u{i % 4}",
        "session_id": f"s{i % 3}",
        "country": "US",
        "device": "mobile",
        "page": "/a",
        "referrer": None,
        "schema_version": 1,
        "is_late": False,
        "kafka_topic": "page_views",
        "kafka_partition": 0,
        "kafka_offset": i,
        "kafka_timestamp": at,
        "ingest_time": at + timedelta(seconds=2),
        "batch_version": 1,
        "event_date": at.date(),
        "event_hour": at.hour,
    }
    row.update(overrides)
    return row


def frame(spark, schema, rows):
    return spark.createDataFrame([tuple(r[f.name] for f in schema.fields) for r in rows], schema)


def by_rule(gate, expectation, column=None):
    (outcome,) = [o for o in gate.outcomes if o.expectation == expectation and (column is None or o.column == column)]
    return outcome


def test_clean_hour_passes(spark, quality_home, raw_schema):
    df = frame(spark, raw_schema, [event(i) for i in range(6)])
    gate = validate(df, "raw_hour", raw_hour_params(HOUR, [6, 5, 7]), run_name="clean-2026-11-25T03", home=quality_home)
    print(f"validate(raw_hour, 13 rules, 6 rows): {gate.duration_s:.2f}s")

    assert gate.passed, gate.reason()
    assert gate.reason() == ""
    assert all(o.success for o in gate.outcomes if o.action == "fail")
    assert gate.warnings == [] and gate.dropped_rows == 0
    volume = by_rule(gate, "expect_table_row_count_to_be_between")
    assert (volume.skipped, volume.success, volume.observed) == (False, True, 6)
    assert len(gate.outcomes) == 13
    json.dumps(gate.as_dict())
    assert gate.data_docs_index == str(quality_home / "data_docs" / "index.html")
    assert gate.validation_page and "clean-2026-11-25T03" in gate.validation_page
    assert not df.is_cached  # validate() caches for its own run only


def test_bad_hour_fails_with_a_readable_reason(spark, quality_home, raw_schema):
    rows = [event(i) for i in range(8)]
    rows[1]["event_time"] = HOUR + timedelta(hours=1)  # first instant of the next hour
    rows[2]["event_time"] = HOUR - timedelta(microseconds=1)  # last instant of the previous one
    rows[3]["user_id"] = None
    rows[4]["event_id"] = rows[5]["event_id"]  # a duplicate that dedup let through...
    rows[4]["tenant_id"] = rows[5]["tenant_id"]  # ...(the same id under another tenant is another event)
    rows[6]["event_id"] = rows[7]["event_id"]  # not a duplicate: rows 6 and 7 are of two tenants
    gate = validate(
        frame(spark, raw_schema, rows),
        "raw_hour",
        raw_hour_params(HOUR, []),
        run_name="bad-2026-11-25T03",
        home=quality_home,
    )

    assert not gate.passed
    lines = gate.reason().splitlines()
    assert sorted(lines) == sorted(
        [
            "raw_hour: event_time outside [2026-11-25 03:00, 04:00) for 2 of 8 rows (e.g. 2026-11-25 04:00:00, "
            "2026-11-25 02:59:59.999999) (expect_column_values_to_be_between)",
            "raw_hour: user_id is null for 1 of 8 rows (expect_column_values_to_not_be_null)",
            "raw_hour: (tenant_id, event_id) not unique: 2 of 8 rows share their values with another row (e.g. "
            "('t1', '00000000-0000-4000-8000-000000000005')) "
            "(expect_compound_columns_to_be_unique)",
        ]
    ), gate.reason()
    between = by_rule(gate, "expect_column_values_to_be_between")
    assert (between.action, between.success, between.unexpected_count) == ("fail", False, 2)
    volume = by_rule(gate, "expect_table_row_count_to_be_between")
    assert volume.skipped and volume.success and "volume_max" in volume.message  # no history
    assert json.loads(json.dumps(gate.as_dict()))["passed"] is False


def test_schema_drift_fails(spark, quality_home, raw_schema):
    df = frame(spark, raw_schema, [event(i) for i in range(3)]).drop("referrer").withColumnRenamed("page", "path")
    gate = validate(df, "raw_hour", raw_hour_params(HOUR, []), run_name="drift-2026-11-25T03", home=quality_home)
    reasons = gate.reason()
    assert (
        "raw_hour: columns differ from the expected set: missing ['page', 'referrer'], unexpected ['path'] "
        "(expect_table_columns_to_match_set)" in reasons
    )
    # GE cannot evaluate the rule on the missing column: that fails too, and says why.
    page_rule = by_rule(gate, "expect_column_values_to_not_be_null", "page")
    assert not page_rule.success and page_rule.error and "raw_hour: page: GE could not evaluate" in reasons


def test_drop_rules_remove_unknown_devices_and_countries(spark, quality_home, raw_schema):
    from pyspark.sql import functions as F

    rows = [event(i) for i in range(10)]
    rows[0]["device"] = "smart-tv"
    rows[1]["device"] = "fridge"
    rows[2]["country"] = "XX"
    rows[3].update(device="car", country="ZZ")  # violates both: dropped once
    df = frame(spark, raw_schema, rows).cache()
    params = raw_hour_params(HOUR, [40, 50, 60])  # 10 rows << 0.5 * 50: the volume rule warns

    gate = validate(df, "raw_hour", params, run_name="drops-2026-11-25T03", home=quality_home)
    assert gate.passed, gate.reason()
    assert gate.dropped_rows == 4
    assert by_rule(gate, "expect_column_values_to_be_in_set", "device").unexpected_count == 3
    assert by_rule(gate, "expect_column_values_to_be_in_set", "country").unexpected_count == 2
    assert [o.expectation for o in gate.warnings] == ["expect_table_row_count_to_be_between"]
    assert gate.warnings[0].message == "row count 10 outside [25, 100]"

    kept, dropped = apply_drops(df, "raw_hour", params)
    assert dropped == 4 and kept.count() == 6
    assert kept.where(~F.col("device").isin(*params["devices"]) | (F.col("country") == "XX")).count() == 0

    # A single failing drop rule: dropped_rows comes straight from GE's unexpected_count.
    one = validate(
        df.where(F.col("event_id") != rows[3]["event_id"]).where(F.col("country") != "XX"),
        "raw_hour",
        params,
        run_name="drops-one-2026-11-25T03",
        home=quality_home,
    )
    assert one.dropped_rows == 2 == apply_drops(df.where("device IN ('smart-tv', 'fridge')"), "raw_hour", params)[1]
    df.unpersist()


def test_between_predicate_matches_ge_on_timestamps(spark, raw_schema):
    from pyspark.sql import functions as F

    rows = [
        event(0, event_time=HOUR),
        event(1, event_time=HOUR + timedelta(minutes=59, seconds=59, microseconds=999999)),
        event(2, event_time=HOUR + timedelta(hours=1)),
        event(3, event_time=HOUR - timedelta(microseconds=1)),
    ]
    df = frame(spark, raw_schema, rows)
    keep = keep_predicate(
        "expect_column_values_to_be_between",
        {"column": "event_time", "min_value": HOUR, "max_value": HOUR + timedelta(hours=1), "strict_max": True},
    )
    assert sorted(r["kafka_offset"] for r in df.where(F.expr(keep)).collect()) == [0, 1]


def rollup_frame(spark, rows):
    return spark.createDataFrame(
        rows,
        "tenant_id STRING, events_sum BIGINT, dedup_rows BIGINT, exact_users BIGINT, "
        "hll_users BIGINT, users_rel_error DOUBLE, min_events BIGINT",
    )


def test_rollup_suite(spark, quality_home):
    good = rollup_frame(spark, [("t1", 120, 120, 50, 50, 0.0, 1), ("t2", 30, 30, 1000, 1012, 0.012, 1)])
    gate = validate(
        good, "hour_rollups", hour_rollups_params(150), run_name="rollups-ok-2026-11-25T03", home=quality_home
    )
    assert gate.passed, gate.reason()
    assert len(gate.outcomes) == 5

    bad = rollup_frame(
        spark, [("t1", 119, 120, 50, 50, 0.0, 1), ("t2", 30, 30, 1000, 1050, 0.05, 1), ("t3", 5, 5, 2, 2, 0.0, -1)]
    )
    gate = validate(
        bad, "hour_rollups", hour_rollups_params(155), run_name="rollups-bad-2026-11-25T03", home=quality_home
    )
    assert not gate.passed
    assert sorted(gate.reason().splitlines()) == sorted(
        [
            "hour_rollups: events_sum != dedup_rows for 1 of 3 rows (e.g. (119, 120)) "
            "(expect_column_pair_values_to_be_equal)",
            "hour_rollups: sum of events_sum is 154, expected 155 (expect_column_sum_to_be_between)",
            "hour_rollups: users_rel_error outside [-0.02, 0.02] for 1 of 3 rows (e.g. 0.05) "
            "(expect_column_values_to_be_between)",
            "hour_rollups: min_events below 0 for 1 of 3 rows (e.g. -1) (expect_column_values_to_be_between)",
        ]
    ), gate.reason()

    # Without expected_rows the total check is skipped, the per-tenant one still runs.
    gate = validate(good, "hour_rollups", {}, run_name="rollups-nototal-2026-11-25T03", home=quality_home)
    assert gate.passed and by_rule(gate, "expect_column_sum_to_be_between").skipped


def test_data_docs_are_offline(spark, quality_home, raw_schema):
    validate(
        frame(spark, raw_schema, [event(i) for i in range(3)]),
        "raw_hour",
        raw_hour_params(HOUR, []),
        run_name="docs-2026-11-25T03",
        home=quality_home,
    )
    site = quality_home / "data_docs"
    gx._CONTEXTS.clear()  # as a new process would: the context is read back from disk
    index = docs.build_docs(quality_home, keep_days=30)
    assert index == site / "index.html" and index.exists()

    report = offline.check_site(site)
    assert report["pages"] >= 3  # index, a suite page, validation pages
    assert report["remote"] == {}, report["remote"]
    assert report["broken"] == {}, report["broken"]
    for page in offline.pages(site):
        html = page.read_text()
        for tag in re.findall(r"<(?:link|script)\b[^>]*>", html):
            assert "http://" not in tag and "https://" not in tag, (page, tag)
        assert "integrity=" not in html
    assert (site / "static" / "vendor" / "bootstrap" / "bootstrap.min.css").exists()
    suite_page = (site / "expectations" / "raw_hour.html").read_text()
    assert "Tidemark action: FAIL" in suite_page or "Tidemark action: FAIL".replace(" ", "&nbsp;") in suite_page

    # Retention: runs older than keep_days leave the store and the site; the index stays valid.
    with gx.gx_lock(quality_home):
        removed = docs.prune(quality_home, keep_days=1, now=datetime.now(timezone.utc) + timedelta(days=2))
    assert removed >= 1
    assert not (site / "validations").exists() or not any((site / "validations").rglob("*.html"))
    docs.build_docs(quality_home, keep_days=30)
    assert offline.check_site(site)["remote"] == {} and offline.check_site(site)["broken"] == {}


def test_figures_judge_as_great_expectations_does(spark, quality_home, raw_schema):
    # validate() judges the rules on one aggregation's figures; GE's own Checkpoint run on the same
    # frame must reach the same outcome for every rule (counts, observed values, messages).
    from tidemark.quality.gates import validate_with_ge

    rows = [event(i) for i in range(12)]
    rows[1]["event_time"] = HOUR + timedelta(hours=1)
    rows[3]["user_id"] = None
    rows[4].update(event_id=rows[6]["event_id"], tenant_id=rows[6]["tenant_id"])
    rows[5]["device"] = "fridge"
    rows[7].update(device="car", country="ZZ", page=None)
    df = frame(spark, raw_schema, rows).cache()
    params = raw_hour_params(HOUR, [40, 50, 60])

    def seen(gate):
        return [(o.rule, o.success, o.skipped, o.unexpected_count, o.message) for o in gate.outcomes]

    ours = validate(df, "raw_hour", params, run_name="figures-2026-11-25T03", docs=False, home=quality_home)
    ge = validate_with_ge(df, "raw_hour", params, run_name="ge-2026-11-25T03", home=quality_home)
    assert seen(ours) == seen(ge)
    assert (ours.dropped_rows, ours.passed) == (ge.dropped_rows, ge.passed) == (2, False)
    assert ours.data_docs_index is None  # docs=False: recorded later, e.g. after the publish

    # The recompute's dedup guarantees (tenant_id, event_id): that rule is then not recounted.
    unique = validate(
        df,
        "raw_hour",
        params,
        run_name="unique-2026-11-25T03",
        unique_by=[("tenant_id", "event_id")],
        home=quality_home,
    )
    assert by_rule(unique, "expect_compound_columns_to_be_unique").success
    assert unique.validation_page and "unique-2026-11-25T03" in unique.validation_page
    df.unpersist()

    bad = rollup_frame(spark, [("t1", 119, 120, 50, 50, 0.0, 1), ("t2", 30, 30, 1000, 1050, None, -1)])
    assert seen(
        validate(bad, "hour_rollups", hour_rollups_params(155), run_name="r1", docs=False, home=quality_home)
    ) == seen(validate_with_ge(bad, "hour_rollups", hour_rollups_params(155), run_name="r2", home=quality_home))
