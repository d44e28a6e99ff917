from tidemark.config import load


def test_defaults_are_embedded_and_local(monkeypatch, tmp_path):
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_HOST", "REDIS_URL", "TIDEMARK_LAKE_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TIDEMARK_HOME", str(tmp_path))
    cfg = load()
    assert not (cfg.kafka.external or cfg.clickhouse.external or cfg.redis.external)
    assert cfg.kafka.bootstrap_servers.startswith("127.0.0.1:")
    assert cfg.lake.events_raw == f"{tmp_path}/lake/events_raw"


def test_explicit_addresses_mark_services_external(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("CLICKHOUSE_HOST", "ch.internal")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("TIDEMARK_LAKE_ROOT", "s3://lake/tidemark")
    cfg = load()
    assert cfg.kafka.external and cfg.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert cfg.clickhouse.external and cfg.clickhouse.host == "ch.internal"
    assert cfg.redis.external and cfg.redis.url == "redis://cache:6379/2"
    assert cfg.lake.events_rejected == "s3://lake/tidemark/events_rejected"


def test_bad_number_names_the_variable(monkeypatch):
    import pytest

    monkeypatch.setenv("CLICKHOUSE_PORT", "nine")
    with pytest.raises(ValueError, match="CLICKHOUSE_PORT"):
        load()
