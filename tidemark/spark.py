"""SparkSession construction shared by every job and test.

Runs local[2] on the embedded stack and on a cluster in production
(``SPARK_MASTER`` / spark-submit's ``--master`` win). Registers Tidemark's
Python data sources (Kafka and Delta) so jobs can use
``spark.readStream.format("tidemark_kafka")`` and
``df.write.format("tidemark_delta")``.
"""
from __future__ import annotations

import os
import sys

from tidemark.config import Settings, settings


def _python_env() -> None:
    # Python workers must run the venv's interpreter, or they lack pyarrow & co.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def session(app_name: str, cfg: Settings | None = None, extra_conf: dict[str, str] | None = None):
    _python_env()
    from pyspark.sql import SparkSession

    cfg = cfg or settings()
    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(cfg.spark.shuffle_partitions))
        .config("spark.sql.python.filterPushdown.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", cfg.spark.driver_memory)
        .config("spark.sql.streaming.stateStore.providerClass",
                "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
    )
    # Under spark-submit the JVM already exists (it exported PYSPARK_GATEWAY_PORT)
    # and its --master wins; only choose the master when running in-process.
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(cfg.spark.master)
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    register_sources(spark)
    return spark


def register_sources(spark) -> None:
    """Register the Python data sources that exist (each arrives with its issue)."""
    try:
        from tidemark.io.kafka_source import KafkaDataSource
        spark.dataSource.register(KafkaDataSource)
    except ImportError:
        pass
    try:
        from tidemark.io.delta import DeltaDataSource
        spark.dataSource.register(DeltaDataSource)
    except ImportError:
        pass
