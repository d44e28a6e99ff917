"""Table schemas: the Delta tables, loaded from ``schemas/delta/*.json`` (their one home), the
columns both layers insert into ClickHouse's rollup input, and the order of the registry's versions
that both the batch layer and serving read by.

Gives each table as a Spark ``StructType`` (and a ``pyarrow.Schema`` for tools
that write test data without Spark), and creates the tables with delta-spark
from that canonical schema, NOT NULL constraints included, before any writer
touches them: a table created by its first append would take the writer's
(nullable) schema instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from tidemark.config import PROJECT_ROOT

DELTA_SCHEMAS = PROJECT_ROOT / "schemas" / "delta"

_SPARK_TYPES = {
    "string": "StringType",
    "timestamp": "TimestampType",
    "integer": "IntegerType",
    "long": "LongType",
    "boolean": "BooleanType",
    "binary": "BinaryType",
    "date": "DateType",
    "double": "DoubleType",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    comment: str = ""


@dataclass(frozen=True)
class TableSchema:
    name: str
    description: str
    partition_by: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def spark(self):
        from pyspark.sql import types as T

        return T.StructType(
            [T.StructField(c.name, getattr(T, _SPARK_TYPES[c.type])(), c.nullable) for c in self.columns]
        )

    def arrow(self):
        import pyarrow as pa

        types = {
            "string": pa.string(),
            "timestamp": pa.timestamp("us", tz="UTC"),
            "integer": pa.int32(),
            "long": pa.int64(),
            "boolean": pa.bool_(),
            "binary": pa.binary(),
            "date": pa.date32(),
            "double": pa.float64(),
        }
        return pa.schema([pa.field(c.name, types[c.type], nullable=c.nullable) for c in self.columns])


# Delta's default (a checkpoint every 10 commits) makes every tenth micro-batch write a Parquet
# checkpoint of the whole log: ~3x the CPU of an ordinary commit here (measured), on the stream's
# freshness path. Readers replay at most this many small JSON commits instead.
CHECKPOINT_INTERVAL = 100


def ensure_delta_table(spark, name: str, path: str) -> None:
    """Create the Delta table at ``path`` with the canonical schema of ``name`` unless it exists; a
    table created before the checkpoint interval was set gets it (one metadata commit, once)."""
    create_delta_table(spark, table(name), path)
    from delta.tables import DeltaTable

    detail = DeltaTable.forPath(spark, path).detail().select("properties").first()
    properties = (detail[0] if detail else None) or {}
    if properties.get("delta.checkpointInterval") != str(CHECKPOINT_INTERVAL):
        quoted = path.replace("`", "``")
        spark.sql(
            f"ALTER TABLE delta.`{quoted}` SET TBLPROPERTIES ('delta.checkpointInterval' = '{CHECKPOINT_INTERVAL}')"
        )


def create_delta_table(spark, schema: TableSchema, path: str) -> None:
    """Create the Delta table at ``path`` with ``schema`` unless it exists (idempotent, safe against a
    concurrent creator: Delta's commit of version 0 is atomic)."""
    from delta.tables import DeltaTable

    (
        DeltaTable.createIfNotExists(spark)
        .location(path)
        .addColumns(schema.spark())
        .partitionedBy(*schema.partition_by)
        .comment(schema.description)
        .property("delta.checkpointInterval", str(CHECKPOINT_INTERVAL))
        .execute()
    )


@cache
def table(name: str) -> TableSchema:
    doc = json.loads((DELTA_SCHEMAS / f"{name}.json").read_text())
    return TableSchema(
        name=doc["table"],
        description=doc["description"],
        partition_by=tuple(doc["partition_by"]),
        columns=tuple(Column(c["name"], c["type"], c["nullable"], c.get("comment", "")) for c in doc["columns"]),
    )


EVENTS_RAW = "events_raw"
EVENTS_REJECTED = "events_rejected"

# The rows both layers insert into ClickHouse's rollup input (one per minute and dimension key;
# the tables' materialized views derive hour and day rollups), in insert order. Both the speed
# layer's sink and the batch layer's staging write exactly these columns.
ROLLUP_INPUT_COLUMNS = ("layer", "version", "tenant_id", "minute", "country", "device", "page", "events", "user_ids")

# The order of an hour's published versions in ClickHouse's ``published_hours`` (the registry), in
# SQL: the one place it is written down. The batch layer's registry (tidemark/batch/registry.py)
# and serving's lambda merge both pick an hour's current version by it.
CURRENT_ORDER = "(delta_version, sequence)"
