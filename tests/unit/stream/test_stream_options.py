"""The speed layer's Kafka source options, from the environment (no Spark, no broker)."""

import pytest

from tidemark.config import load
from tidemark.stream.options import StreamOptions, kafka_source_options


def test_source_options_come_from_config(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("TIDEMARK_KAFKA_CLIENT_OPTIONS", "security.protocol=SASL_SSL, sasl.mechanism=PLAIN")
    monkeypatch.setenv("TIDEMARK_STARTING_OFFSETS", "latest")
    monkeypatch.setenv("TIDEMARK_FAIL_ON_DATA_LOSS", "false")
    monkeypatch.setenv("TIDEMARK_MAX_OFFSETS_PER_TRIGGER", "5000")
    cfg = load()
    opts = kafka_source_options(cfg, StreamOptions.from_settings(cfg, topic="views"))
    assert opts["kafka.bootstrap.servers"] == "kafka-1:9092,kafka-2:9092"
    assert opts["kafka.security.protocol"] == "SASL_SSL" and opts["kafka.sasl.mechanism"] == "PLAIN"
    assert (opts["subscribe"], opts["startingOffsets"], opts["failOnDataLoss"]) == ("views", "latest", "false")
    assert opts["maxOffsetsPerTrigger"] == "5000"


def test_client_options_cannot_override_the_bootstrap_servers(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "real:9092")
    monkeypatch.setenv("TIDEMARK_KAFKA_CLIENT_OPTIONS", "bootstrap.servers=elsewhere:9092")
    cfg = load()
    assert kafka_source_options(cfg, StreamOptions.from_settings(cfg))["kafka.bootstrap.servers"] == "real:9092"


def test_malformed_client_options_name_the_variable(monkeypatch):
    monkeypatch.setenv("TIDEMARK_KAFKA_CLIENT_OPTIONS", "security.protocol")
    with pytest.raises(ValueError, match="TIDEMARK_KAFKA_CLIENT_OPTIONS"):
        load()
