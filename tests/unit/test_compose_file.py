"""docker/compose.yaml, checked here since no Docker engine runs on the development machine: it parses,
every service has an image or is built from docker/Dockerfile, the topology is the one docs/production.md
describes, the settings it passes to Tidemark's containers are variables tidemark/config.py reads, and
its pins are the ones `make setup` installs (jvm/*/pom.xml, requirements.txt)."""

import re
import xml.etree.ElementTree as ET

import yaml

from tidemark.config import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker" / "compose.yaml"
# Variables Tidemark's containers may carry that are not Tidemark's: Airflow's own configuration,
# hadoop-aws / boto credentials, Spark's daemon switches.
FOREIGN = ("AIRFLOW_", "AIRFLOW__", "AWS_", "SPARK_NO_DAEMONIZE")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _config_variables() -> set[str]:
    text = (PROJECT_ROOT / "tidemark" / "config.py").read_text()
    return set(re.findall(r'_(?:env|int|float|is_set|pairs)\(\s*"([A-Z0-9_]+)"', text))


def _pom_property(pom: str, name: str) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(PROJECT_ROOT / "jvm" / pom / "pom.xml").getroot()
    found = root.find(f"m:properties/m:{name}", ns)
    if found is None:
        found = root.find(f"properties/{name}")
    assert found is not None and found.text, (pom, name)
    return found.text.strip()


def _ours(service: dict) -> bool:
    return "build" in service


def test_compose_file_has_the_production_topology():
    services = _compose()["services"]
    assert (PROJECT_ROOT / "docker" / "docker-compose.yml").exists() is False  # one compose file
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if _ours(svc):
            assert svc["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}, name
            assert (PROJECT_ROOT / "docker" / "Dockerfile").exists()
    kafka = [n for n in services if n.startswith("kafka-")]
    assert len(kafka) == 3
    voters = services["kafka-1"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters == ",".join(f"{i}@kafka-{i}:9093" for i in (1, 2, 3))
    assert {services[k]["environment"]["KAFKA_NODE_ID"] for k in kafka} == {1, 2, 3}
    assert services["kafka-1"]["environment"]["KAFKA_MIN_INSYNC_REPLICAS"] == 2
    assert len([n for n in services if n.startswith("spark-worker-")]) == 2
    assert "org.apache.spark.deploy.master.Master" in services["spark-master"]["entrypoint"]
    commands = {n: services[n].get("command") for n in services if n.startswith("airflow-")}
    assert commands["airflow-api-server"] == ["api-server"]
    assert commands["airflow-scheduler"] == ["scheduler"]
    assert commands["airflow-dag-processor"] == ["dag-processor"]
    assert commands["airflow-triggerer"] == ["triggerer"]
    assert commands["airflow-worker"][:2] == ["celery", "worker"]
    env = services["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    for name in ("postgres", "redis", "clickhouse", "minio", "stream", "api"):
        assert name in services, name
    assert services["stream"]["command"] == ["stream"] and services["api"]["command"][0] == "serve"


def test_tidemark_containers_pass_only_settings_config_reads():
    known = _config_variables()
    assert {"KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_HOST", "REDIS_URL", "SPARK_MASTER"} <= known
    for name, svc in _compose()["services"].items():
        if not _ours(svc):
            continue
        for var in svc.get("environment") or {}:
            assert var in known or var.startswith(FOREIGN), (name, var)


def test_pins_match_make_setup():
    services = _compose()["services"]
    kafka = _pom_property("kafka", "kafka.version")
    assert {services[f"kafka-{i}"]["image"] for i in (1, 2, 3)} == {f"apache/kafka:{kafka}"}
    requirements = (PROJECT_ROOT / "requirements.txt").read_text()
    chdb = re.search(r"^chdb-core==(\d+\.\d+)", requirements, re.M)
    assert chdb is not None
    assert services["clickhouse"]["image"] == f"clickhouse/clickhouse-server:{chdb.group(1)}"
    for pin in ("apache-airflow==", "apache-airflow-providers-celery==", "psycopg2-binary==", "pyspark=="):
        assert pin in requirements, pin
    dockerfile = (PROJECT_ROOT / "docker" / "Dockerfile").read_text()
    assert "-r requirements.txt -c constraints.txt" in dockerfile  # the same lock as `make setup`
    assert "jvm/spark/pom.xml" in dockerfile  # the same jars
    assert services["postgres"]["image"] == "postgres:15"  # the major the embedded stack runs (Debian 12)
