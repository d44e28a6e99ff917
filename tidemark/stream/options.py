"""What one run of the stream reads and how: ``StreamOptions`` (from settings, overridable per
run), the flags that override them (declared once, for ``jobs/stream_events.py`` and ``tidemark
stream``), and the options of Spark's ``kafka`` source."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tidemark.config import ObjectStoreSettings, Settings

if TYPE_CHECKING:
    from tidemark.stream.identity import StreamIdentity

STREAM_NAME = "stream_events"


@dataclass(frozen=True)
class StreamOptions:
    topic: str
    checkpoint: str
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int = 200_000
    trigger_seconds: float = 2.0
    dedup_window: str = "10 minutes"
    allowed_lateness_s: int = 600
    fail_on_data_loss: bool = True
    # May run although another stream serves the topic (its rows count only once promoted).
    candidate: bool = False
    store: ObjectStoreSettings | None = None  # how to reach an s3a:// checkpoint

    @classmethod
    def from_settings(cls, cfg: Settings, **overrides) -> StreamOptions:
        base = cls(
            topic=cfg.kafka.topic,
            checkpoint=f"{cfg.spark.checkpoint_root}/{STREAM_NAME}",
            starting_offsets=cfg.spark.starting_offsets,
            fail_on_data_loss=cfg.spark.fail_on_data_loss,
            max_offsets_per_trigger=cfg.spark.max_offsets_per_trigger,
            trigger_seconds=cfg.spark.trigger_seconds,
            dedup_window=cfg.spark.dedup_window,
            allowed_lateness_s=cfg.spark.allowed_lateness_s,
            store=cfg.object_store,
        )
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def identity(self) -> StreamIdentity:
        from tidemark.stream.identity import StreamIdentity

        return StreamIdentity.load_or_create(self.checkpoint, self.store)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The stream job's flags (every one optional: settings give the defaults)."""
    parser.add_argument("--topic", help="Kafka topic (default: TIDEMARK_TOPIC)")
    parser.add_argument("--checkpoint", help="checkpoint directory (default: under TIDEMARK_CHECKPOINT_ROOT)")
    parser.add_argument("--starting-offsets", choices=["earliest", "latest"], help="where a new checkpoint starts")
    parser.add_argument("--max-offsets-per-trigger", type=int, help="admission control per micro-batch")
    parser.add_argument("--trigger-seconds", type=float, help="micro-batch interval")
    parser.add_argument("--available-now", action="store_true", help="process the current backlog, then exit")
    parser.add_argument(
        "--candidate",
        action="store_true",
        default=None,
        help="run although another stream serves the topic: its rows count only once "
        "`tidemark stream-promote` names it (without this flag such a run is refused)",
    )
    return parser


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``StreamOptions`` fields the flags set (None = use the settings)."""
    return {
        "topic": args.topic,
        "checkpoint": args.checkpoint,
        "starting_offsets": args.starting_offsets,
        "max_offsets_per_trigger": args.max_offsets_per_trigger,
        "trigger_seconds": args.trigger_seconds,
        "candidate": args.candidate,
    }


def kafka_source_options(cfg: Settings, opts: StreamOptions) -> dict[str, str]:
    """Options of Spark's ``kafka`` source: consumer settings pass through as ``kafka.*``."""
    return {
        **{f"kafka.{k}": v for k, v in cfg.kafka.client_options.items()},
        "kafka.bootstrap.servers": cfg.kafka.bootstrap_servers,
        "subscribe": opts.topic,
        "startingOffsets": opts.starting_offsets,
        "maxOffsetsPerTrigger": str(opts.max_offsets_per_trigger),
        "failOnDataLoss": str(opts.fail_on_data_loss).lower(),
        # Spark's default 4 min poll timeout would hide a dead broker for minutes.
        "kafkaConsumer.pollTimeoutMs": "30000",
    }
