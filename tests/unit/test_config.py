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


def test_embedded_kafka_settings(monkeypatch, tmp_path):
    from tidemark.config import PROJECT_ROOT

    for var in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "TIDEMARK_KAFKA_PORT",
        "TIDEMARK_KAFKA_CONTROLLER_PORT",
        "TIDEMARK_KAFKA_HEAP",
        "TIDEMARK_KAFKA_JARS_DIR",
    ):
        monkeypatch.delenv(var, raising=False)
    cfg = load()
    assert (cfg.kafka.port, cfg.kafka.controller_port) == (19092, 19093)
    assert cfg.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert cfg.kafka.heap == "512m"
    assert cfg.kafka.jars_dir == str(PROJECT_ROOT / "jvm" / "lib" / "kafka")
    assert not hasattr(cfg, "s3")  # the S3 emulator behind the old stand-in broker is gone

    monkeypatch.setenv("TIDEMARK_KAFKA_PORT", "29092")
    monkeypatch.setenv("TIDEMARK_KAFKA_CONTROLLER_PORT", "29093")
    monkeypatch.setenv("TIDEMARK_KAFKA_HEAP", "1g")
    cfg = load()
    assert (cfg.kafka.bootstrap_servers, cfg.kafka.controller_port, cfg.kafka.heap) == ("127.0.0.1:29092", 29093, "1g")
    assert not cfg.kafka.external


def test_hot_step_waits_as_long_as_an_api_may_answer_from_an_old_minute_horizon(monkeypatch):
    import pytest

    for var in ("TIDEMARK_HOT_HORIZON_GRACE_S", "TIDEMARK_SERVING_QUEUE_WAIT_S"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TIDEMARK_SERVING_REGISTRY_REFRESH_S", "4")
    cfg = load()
    # a snapshot is trusted max(30 s, 15 refreshes) = 60 s, then a query may queue 2 s for a slot
    assert cfg.serving.registry_max_stale_s == 60.0
    assert cfg.tiering.horizon_grace_s == 60.0 + 2.0 + 5.0 == cfg.serving.horizon_grace_s
    monkeypatch.setenv("TIDEMARK_SERVING_REGISTRY_REFRESH_S", "1")
    assert load().serving.registry_max_stale_s == 30.0
    monkeypatch.setenv("TIDEMARK_HOT_HORIZON_GRACE_S", "0")
    assert load().tiering.horizon_grace_s == 0.0
    monkeypatch.setenv("TIDEMARK_HOT_HORIZON_GRACE_S", "-1")
    with pytest.raises(ValueError, match="TIDEMARK_HOT_HORIZON_GRACE_S"):
        load()
