"""SparkSession construction and the engine configuration shared by every job and test.

Runs local[2] on the embedded stack and on a cluster in production
(``SPARK_MASTER`` / spark-submit's ``--master`` win; TIDEMARK_STACK=cluster runs a standalone one
here). On a cluster the executors get the jars through ``spark.jars`` and the package as a zip
(``ship_package``), never from the driver's file system. Spark's own ``kafka``
source and ``delta-spark`` come as jars that ``make setup`` fetched with Maven
into ``jvm/lib/spark`` (never Ivy's ``--packages`` at run time).

``engine_conf`` is the one place those jars and the Delta extension are named:
* in-process sessions (tests, the CLI) apply it before the JVM starts;
* ``spark-submit`` (the CLI's ``tidemark stream``, Airflow's SparkSubmitOperator)
  passes it as ``--conf`` pairs from ``submit_args`` / ``engine_conf``;
* a person's ad-hoc job or shell runs through ``tidemark submit`` / ``tidemark pyspark`` (see README),
  or a ``spark-submit`` of their own with ``tidemark spark-conf``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from tidemark import object_store
from tidemark.config import Settings
from tidemark.errors import TidemarkError

# The streaming dedup's state store (its class name alone is longer than a line).
_ROCKSDB_STATE_STORE = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"


class MissingJars(TidemarkError, RuntimeError):
    """The Kafka/Delta jars are not on disk: `make setup` has not run (or TIDEMARK_SPARK_JARS_DIR is wrong)."""


def spark_home() -> str | None:
    """The installed pyspark package, which is Spark's home (found without importing it)."""
    spec = importlib.util.find_spec("pyspark")
    return str(Path(spec.origin).parent) if spec and spec.origin else None


def python_env() -> dict[str, str]:
    """Interpreter settings every Spark process needs: Python workers must run the venv's
    interpreter, or they lack pyarrow & co. SPARK_HOME too: without it, pyspark's launchers
    (spark-submit, pyspark) look for Spark through whatever ``python3`` is first on PATH, and
    outside the venv fail with ``/bin/spark-class: No such file or directory``."""
    home = spark_home()
    return {
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        **({"SPARK_HOME": home} if home else {}),
    }


def _apply_python_env() -> None:
    for key, value in python_env().items():
        os.environ.setdefault(key, value)


def jars(cfg: Settings) -> list[str]:
    found = sorted(str(p) for p in Path(cfg.spark.jars_dir).glob("*.jar"))
    if not any("delta-spark" in Path(j).name for j in found) or not any("spark-sql-kafka" in j for j in found):
        raise MissingJars(
            f"Spark's Kafka source and delta-spark jars are missing from {cfg.spark.jars_dir}: "
            f"run `make setup` (it fetches them with Maven from jvm/spark/pom.xml)"
        )
    return found


def engine_conf(cfg: Settings) -> dict[str, str]:
    """Spark settings that every Tidemark Spark process runs with."""
    conf = _base_conf(cfg)
    s3a = object_store.spark_conf(cfg)  # {} unless a storage root is s3a://
    if s3a and not cfg.spark.master.startswith("local"):
        # Executors on other hosts get hadoop-aws the normal way (the driver has it on its class path).
        conf["spark.jars"] += "," + ",".join(object_store.s3a_jars(cfg.object_store))
    return conf | s3a


def _base_conf(cfg: Settings) -> dict[str, str]:
    return {
        "spark.jars": ",".join(jars(cfg)),
        # Python workers run the venv's interpreter (or they lack pyarrow & co.), under spark-submit too.
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": cfg.spark.driver_memory,
        # The dedup state is checkpointed as a changelog per batch instead of a RocksDB snapshot
        # copy: batches of 40 k rows ran ~17 % faster here (measured on a 300 k backlog).
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.sql.streaming.stateStore.providerClass": _ROCKSDB_STATE_STORE,
        # Counting the state's rows costs a RocksDB read before every write; the dedup never needs
        # the count (the progress then reports numRowsTotal as 0).
        "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
        # Delta rebuilds a table's snapshot after every commit with a shuffle of this many partitions
        # (default 50). The lake's log is small and local[2] has two cores: 50 tasks per commit cost
        # 4-6 s per micro-batch here, 1 costs ~1 s (measured). Raise it on a cluster with long logs.
        "spark.databricks.delta.snapshotPartitions": str(cfg.spark.delta_snapshot_partitions),
        # The stream lands a busy hour as thousands of small files (one per micro-batch, and the late
        # tail in the micro-batches of its arrival: 5k for bench/recompute_hour.py's hour, 20k before
        # the append was coalesced). At Spark's default open cost (4 MB per file) a scan of 20k was
        # ~640 tasks. Packed into a few (6 at 8 KB), a cold count of that hour took 18 instead of 30
        # CPU-s (measured); 64 KB keeps several tasks, so a cluster still gets parallelism.
        "spark.sql.files.openCostInBytes": "65536",
        # The contract's validation compiles to one ~39 KB method; HotSpot never JIT-compiles methods
        # over 8 KB, so whole-stage codegen is cut at 8 KB instead (10-20 % faster here, measured).
        "spark.sql.codegen.hugeMethodLimit": "8000",
        # Compiled classes are cached by (source, class loader) in an LRU of 100 entries split into
        # segments; a micro-batch generates ~40 (driver and executor loaders), and a full segment
        # evicts in a cycle: 13-36 identical classes were compiled again in every batch (~0.25 s of
        # Janino, and HotSpot's JIT kept a third of the stream JVM busy). 1,000 holds them all.
        "spark.sql.codegen.cache.maxEntries": "1000",
        # The only window is the batch dedup (row_number() = 1 over a key that is ~99 % unique). Spark's
        # WindowGroupLimit would sort every row before the shuffle too, to drop nothing: 10 of its 43
        # CPU-s on a 4.2M-event hour (measured, bench/recompute_hour.py's data).
        "spark.sql.optimizer.windowGroupLimitThreshold": "-1",
        # Cached frames (the stream's micro-batch, the recompute's deduplicated hour) are read two or
        # three times within seconds, then dropped; compressing them cost 7 CPU-s of the 12 it took
        # to cache a 4.2M-event hour (524 MB uncompressed, inside a 2 GB driver's storage memory).
        # Whatever does not fit spills to disk (MEMORY_AND_DISK): CPU is the scarcer resource here.
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    }


def submit_args(cfg: Settings) -> list[str]:
    """``--conf k=v`` pairs for ``spark-submit`` (the CLI and anything else that shells out)."""
    args: list[str] = []
    for key, value in engine_conf(cfg).items():
        args += ["--conf", f"{key}={value}"]
    return args


def session(app_name: str, cfg: Settings, extra_conf: dict[str, str] | None = None):
    _apply_python_env()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    for key, value in {**engine_conf(cfg), **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    # Under spark-submit the JVM already exists (it exported PYSPARK_GATEWAY_PORT)
    # and its --master wins; only choose the master when running in-process.
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(cfg.spark.master)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    _check_engine(spark)
    if not (spark.sparkContext.master or "local").startswith("local"):
        ship_package(spark.sparkContext)
    return spark


def package_zip(target_dir: Path) -> Path:
    """A zip of the installed ``tidemark`` package's Python files (what executors import), in ``target_dir``."""
    import zipfile

    import tidemark

    root = Path(tidemark.__file__).resolve().parent
    path = target_dir / "tidemark.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(root.rglob("*.py")):
            if "node_modules" not in file.parts:
                zf.write(file, file.relative_to(root.parent))
    return path


def ship_package(sc) -> None:
    """Give a cluster's executors this driver's Tidemark, the way Spark ships Python code (``addPyFile``,
    what ``--py-files`` does): their Python workers import it from the zip, whatever is (or is not)
    installed on the worker machines. UDFs, ``mapInArrow`` functions (batch staging) and pickled
    settings need it there. Built at every session start from the installed package, so it is the
    driver's code, never a stale wheel. The driver itself keeps importing the installed package (the
    zip holds Python files only): addPyFile also puts the zip on the driver's sys.path, taken off here."""
    import atexit
    import shutil
    import tempfile

    where = tempfile.mkdtemp(prefix="tidemark-pyfiles-")
    atexit.register(shutil.rmtree, where, True)  # served to executors until the driver exits
    path = package_zip(Path(where))
    before = list(sys.path)
    sc.addPyFile(str(path))
    sys.path[:] = before


def _check_engine(spark) -> None:
    """A spark-submit without Tidemark's conf has no Delta: say so now, not at the first write."""
    if "DeltaSparkSessionExtension" not in (spark.conf.get("spark.sql.extensions", "") or ""):
        raise MissingJars(
            "this Spark session runs without delta-spark: submit jobs with "
            "`tidemark submit jobs/...` (or `spark-submit $(tidemark spark-conf) jobs/...`)"
        )
