"""Issue 23: Kafka record timestamps stay the producer's CreateTime, bounded ahead by the broker exactly
as the contract bounds them (no broker, no Kafka: the generated configuration only)."""

from tidemark.config import load
from tidemark.contract import MAX_RECORD_SKEW
from tidemark.io.kafka_admin import TOPIC_CONFIGS
from tidemark.stack.kafka import Broker


def _properties() -> dict[str, str]:
    text = Broker(load()).server_properties()
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_broker_and_topics_keep_create_time_bounded_one_hour_ahead():
    ahead_ms = str(int(MAX_RECORD_SKEW.total_seconds() * 1000))
    props = _properties()
    assert props["log.message.timestamp.type"] == "CreateTime"  # never LogAppendTime: late data needs arrival
    assert props["log.message.timestamp.after.max.ms"] == ahead_ms == "3600000"
    assert TOPIC_CONFIGS == {"message.timestamp.type": "CreateTime", "message.timestamp.after.max.ms": ahead_ms}


def test_stale_timestamps_are_left_to_the_stream():
    """before.max.ms would make the broker refuse a whole produce batch for one stale record; the
    stream dead-letters exactly that record instead (implausible_kafka_time)."""
    assert "log.message.timestamp.before.max.ms" not in _properties()
    assert "message.timestamp.before.max.ms" not in TOPIC_CONFIGS
