"""per_batch_constant keeps a per-batch value out of the generated code: the same plan with the next
batch's value compiles nothing new, where a plain literal compiles again (so the check can fail)."""

from pyspark.sql import functions as F

from tidemark.stream.writer import codegen_totals
from tidemark.transforms.batch_constant import per_batch_constant


def _run(spark, value):
    """Classes compiled by one small plan that reads ``value``, and its rows."""
    df = spark.range(50).withColumn("p", (F.col("id") % 3).cast("int")).withColumn("v", value)
    before = codegen_totals(spark)[1]
    rows = df.select((F.col("v") + F.col("id")).alias("x")).collect()
    return codegen_totals(spark)[1] - before, sorted(r.x for r in rows)


def test_the_next_batch_value_compiles_no_new_class(spark):
    _run(spark, per_batch_constant(F.lit(4_200_000_000_001), "p"))  # the first batch compiles
    compiled, rows = _run(spark, per_batch_constant(F.lit(4_200_000_000_002), "p"))
    assert compiled == 0
    assert rows == [4_200_000_000_002 + i for i in range(50)]


def test_a_plain_literal_compiles_again_for_each_value(spark):
    _run(spark, F.lit(4_300_000_000_001))
    compiled, rows = _run(spark, F.lit(4_300_000_000_002))
    assert compiled >= 1
    assert rows == [4_300_000_000_002 + i for i in range(50)]


def test_the_session_keeps_more_compiled_plans_than_a_micro_batch_uses(spark):
    """Spark's default codegen cache (100 entries, by source and class loader) evicted classes a
    micro-batch uses again in the next one; the session's cache keeps 150 plans' worth (each plan
    compiles on the driver and in the task) and compiles none of them a second time."""
    plans = [F.lit(4_400_000_000_000 + k) for k in range(150)]
    for value in plans:
        _run(spark, value)
    compiled = sum(_run(spark, value)[0] for value in plans[:10])
    assert compiled == 0
