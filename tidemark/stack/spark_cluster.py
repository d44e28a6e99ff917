"""A Spark standalone cluster on 127.0.0.1 (TIDEMARK_STACK=cluster): a master and its workers, run from
the Spark that pyspark ships (``bin/spark-class``, the same jars the jobs use), so `tidemark stream` and
`tidemark recompute` run on it as on any standalone cluster, with SPARK_MASTER=spark://127.0.0.1:<port>.

What reaches the executors is only what a real cluster would give them: the jars through
``spark.jars`` and Tidemark's package as a zip through ``SparkContext.addPyFile`` (tidemark/spark.py).
Workers start with an empty PYTHONPATH, so an executor's Python cannot import
the driver's checkout by accident. The interpreter (spark.pyspark.python) is the venv's: these workers
share the machine with it; on a real cluster every worker needs that interpreter with Tidemark's
requirements (docs/production.md, "Beyond one machine").
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tidemark.config import Settings
from tidemark.stack.service_base import Service

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def master_state(cfg: Settings, timeout: float = 2.0) -> dict:
    """The master's JSON status page (its workers, their state, the running applications); {} if it does not answer."""
    url = f"http://127.0.0.1:{cfg.stack.spark_master_ui_port}/json/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return {}


def alive_workers(cfg: Settings) -> list[dict]:
    return [w for w in master_state(cfg).get("workers", []) if w.get("state") == "ALIVE"]


class _SparkDaemon(Service):
    binary_hint = "run `make setup` (pyspark in the venv ships Spark's bin/spark-class; Java 17 comes with it)"
    start_timeout_s = 90.0  # a JVM on a busy 2-core box
    stop_timeout_s = 20.0
    main_class = ""

    @property
    def dir(self) -> Path:
        return self.cfg.home / "spark-cluster"

    @property
    def properties_file(self) -> Path:
        return self.dir / f"{self.name}.conf"

    def signature(self) -> str:
        # spark-class execs java with the class and our arguments in this order; the properties file
        # is under this TIDEMARK_HOME, so another stack's daemon is never taken for ours.
        return f"{self.main_class} --properties-file {self.properties_file}"

    def binary(self) -> str | None:
        from tidemark.spark import spark_home

        home = spark_home()
        script = Path(home) / "bin" / "spark-class" if home else None
        return str(script) if script and script.exists() else None

    def env(self) -> dict[str, str]:
        from tidemark.spark import python_env

        return {
            **python_env(),
            "SPARK_LOG_DIR": str(self.dir / "logs"),
            "SPARK_NO_DAEMONIZE": "1",
            # The daemons' own heap (executors get spark.executor.memory on top): they only coordinate.
            "SPARK_DAEMON_MEMORY": "256m",
            # Empty, so executors (children of the workers) do not inherit the caller's PYTHONPATH.
            "PYTHONPATH": "",
        }

    def conf(self) -> dict[str, str]:
        return {"spark.ui.reverseProxy": "false"}

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text("".join(f"{k}={v}\n" for k, v in self.conf().items()))


class SparkMaster(_SparkDaemon):
    name = "spark-master"
    main_class = MASTER_CLASS

    @property
    def address(self) -> str:
        return self.cfg.stack.spark_master_url

    def port(self) -> int:
        return self.cfg.stack.spark_master_port

    def ports(self) -> list[tuple[int, str]]:
        s = self.cfg.stack
        return [
            (s.spark_master_port, "TIDEMARK_SPARK_PORT_BASE"),
            (s.spark_master_ui_port, "TIDEMARK_SPARK_PORT_BASE (+1, the master's UI)"),
        ]

    def argv(self, binary: str) -> list[str]:
        s = self.cfg.stack
        return [
            binary,
            self.main_class,
            "--properties-file",
            str(self.properties_file),
            "--host",
            "127.0.0.1",
            "--port",
            str(s.spark_master_port),
            "--webui-port",
            str(s.spark_master_ui_port),
        ]

    def conf(self) -> dict[str, str]:
        return {
            **super().conf(),
            # No REST submission server (port 6066 on every stack otherwise): jobs go through spark-submit's RPC.
            "spark.master.rest.enabled": "false",
            # A worker silent this long is dead and its executors' tasks go elsewhere (default 60 s).
            "spark.worker.timeout": "15",
        }

    def healthy(self) -> bool:
        return master_state(self.cfg).get("status") == "ALIVE"


class SparkWorker(_SparkDaemon):
    """Worker ``index + 1``: ``spark_worker_cores`` cores and ``spark_worker_memory`` offered to executors;
    executors' work directories (their jars, the shipped package zip, logs) under its work dir."""

    main_class = WORKER_CLASS

    def __init__(self, cfg: Settings, index: int):
        self.index = index
        self.name = f"spark-worker-{index + 1}"
        super().__init__(cfg)

    @property
    def work_dir(self) -> Path:
        return self.dir / f"work-{self.index + 1}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port()}"

    def port(self) -> int:
        return self.cfg.stack.spark_worker_ports(self.index)[0]

    def ports(self) -> list[tuple[int, str]]:
        port, ui = self.cfg.stack.spark_worker_ports(self.index)
        return [(port, "TIDEMARK_SPARK_PORT_BASE"), (ui, "TIDEMARK_SPARK_PORT_BASE")]

    def argv(self, binary: str) -> list[str]:
        s = self.cfg.stack
        port, ui = s.spark_worker_ports(self.index)
        return [
            binary,
            self.main_class,
            "--properties-file",
            str(self.properties_file),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui),
            "--cores",
            str(s.spark_worker_cores),
            "--memory",
            s.spark_worker_memory,
            "--work-dir",
            str(self.work_dir),
            s.spark_master_url,
        ]

    def conf(self) -> dict[str, str]:
        return {
            **super().conf(),
            # Finished applications' work dirs (their copies of the jars, ~300 MB each) are removed.
            "spark.worker.cleanup.enabled": "true",
            "spark.worker.cleanup.appDataTtl": "3600",
        }

    def prepare(self) -> None:
        super().prepare()
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def healthy(self) -> bool:
        """The master lists this worker ALIVE (registered and heartbeating)."""
        port = self.port()
        return any(w.get("port") == port for w in alive_workers(self.cfg))


def daemons(cfg: Settings) -> list[_SparkDaemon]:
    return [SparkMaster(cfg), *(SparkWorker(cfg, i) for i in range(cfg.stack.spark_workers))]
