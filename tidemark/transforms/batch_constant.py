"""A value that changes every micro-batch, kept out of the Java source Spark generates.

Whole-stage code generation writes a BIGINT or TIMESTAMP literal into the source it compiles
(``4200000000017L``), and Spark caches compiled classes by their source. A per-batch literal, the
batch's version in ``foreachBatch``, makes every plan that touches it a new class to compile with
Janino, and then for HotSpot to JIT, in every micro-batch.

A literal of any other type (an array here) reaches the generated class as a reference object, so
the source, and the cached class, stay the same from batch to batch. ``per_batch_constant`` wraps
the value in a one-element array and reads it back at an index computed from a column: the optimizer
cannot fold that (ConstantFolding would otherwise turn ``element_at([v], 1)`` straight back into an
inlined literal). Spark (4.2) has no setting that parameterises literals in generated code.

Not needed for the stream's ``current_timestamp()``: Spark substitutes the batch's timestamp after
optimisation, so it stays in one small projection (one ~8 KB class per batch, measured) instead of
spreading into the plans that read ``ingest_time``.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def per_batch_constant(value: Column, anchor: str) -> Column:
    """``value`` (a literal) evaluated per row through a reference the generated code shares across
    batches. ``anchor``: any non-null integer column of the rows (it only makes the index non-constant)."""
    return F.element_at(F.array(value), F.col(anchor) * 0 + 1)
