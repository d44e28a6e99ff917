"""``tidemark generate``: argument parsing and the one-line summary."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from kafka.errors import KafkaError

try:  # the generator's producer (produce.py); topic admin stays on kafka-python
    from confluent_kafka import KafkaException
except ImportError:  # pragma: no cover - only --output works without it

    class KafkaException(Exception):  # type: ignore[no-redef]
        pass


from tidemark.config import settings
from tidemark.generator.injections import parse_injection
from tidemark.generator.produce import DeliveryError, GenerateOptions, run
from tidemark.io.kafka_admin import TopicPartitionsError

log = logging.getLogger(__name__)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from '90m', '3h', '1h30m', '45s', '1500ms' or a bare number of seconds."""
    raw = text.strip().lower()
    try:
        value = float(raw)
    except ValueError:
        pos, value = 0, 0.0
        for match in _DURATION.finditer(raw):
            if match.start() != pos:
                break
            value += float(match.group(1)) * _UNIT_S[match.group(2)]
            pos = match.end()
        if pos != len(raw) or not raw:
            raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 90m, 3h, 1h30m, 45s)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} is negative")
    return value


def parse_time(text: str) -> datetime:
    """ISO-8601 instant; 'Z' or an offset; a naive time is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid ISO-8601 time {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid fraction {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"fraction {text!r} is outside [0, 1]")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _ms_as_seconds(text: str) -> float:
    return _positive_int(text) / 1000.0


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("rate must be > 0")
    return value


def _injection(text: str):
    try:
        return parse_injection(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Generate deterministic page-view traffic (late events, duplicates and malformed "
        "records included) into Kafka, and write a manifest of exactly what was sent."
    )
    size = parser.add_argument_group("volume and clock")
    size.add_argument(
        "--rate",
        type=_rate,
        metavar="EV_PER_S",
        help="records per second of simulated time (default 1000); with a start time "
        "of now, also the wall-clock send rate",
    )
    how_many = size.add_mutually_exclusive_group(required=True)
    how_many.add_argument(
        "--duration",
        type=parse_duration,
        metavar="DUR",
        help="simulated duration (e.g. 600, 10m); records = rate x duration",
    )
    how_many.add_argument("--count", type=_positive_int, metavar="N", help="number of Kafka records")
    size.add_argument(
        "--start-time",
        type=parse_time,
        metavar="T",
        help="simulated send time of the first record, ISO-8601 UTC (default: now, to the second)",
    )
    size.add_argument(
        "--realtime",
        dest="realtime",
        action="store_true",
        default=None,
        help="pace sends to the wall clock at --rate (default when --rate is given and the start time is now)",
    )
    size.add_argument("--no-realtime", dest="realtime", action="store_false", help="send as fast as possible")

    shape = parser.add_argument_group("traffic shape and faults")
    shape.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    shape.add_argument("--tenants", type=int, default=5, help="number of tenants (default 5)")
    shape.add_argument(
        "--late-fraction", type=_fraction, default=0.02, help="fraction of valid events that arrive late (default 0.02)"
    )
    shape.add_argument(
        "--min-lateness",
        type=parse_duration,
        default=15 * 60.0,
        metavar="DUR",
        help="minimum lateness of a late event (default 15m)",
    )
    shape.add_argument(
        "--max-lateness",
        type=parse_duration,
        default=2 * 3600.0,
        metavar="DUR",
        help="maximum lateness of a late event (default 2h)",
    )
    shape.add_argument(
        "--duplicate-fraction",
        type=_fraction,
        default=0.01,
        help="probability that an on-time event is re-sent 1-60 s later (default 0.01)",
    )
    shape.add_argument(
        "--malformed-fraction",
        type=_fraction,
        default=0.01,
        help="fraction of records that break the contract (default 0.01)",
    )

    edge = parser.add_argument_group(
        "edge cases", "All off by default; with the defaults the traffic is the same as without them."
    )
    ontime = edge.add_mutually_exclusive_group()
    ontime.add_argument(
        "--ontime-max-lateness",
        type=parse_duration,
        default=5.0,
        metavar="DUR",
        help="on-time events arrive up to this long after their event time (default 5s; "
        "at most 10m, the pipeline's allowed lateness), so with e.g. 10m some "
        "on-time events sent just after an hour boundary belong to the previous hour",
    )
    ontime.add_argument(
        "--ontime-max-lateness-ms",
        dest="ontime_max_lateness",
        type=_ms_as_seconds,
        metavar="MS",
        help="the same in milliseconds",
    )
    edge.add_argument(
        "--ontime-lag-fraction",
        type=_fraction,
        default=1.0,
        metavar="F",
        help="share of on-time events whose lateness is drawn up to --ontime-max-lateness; "
        "the rest keep 0-5 s (default 1.0)",
    )
    edge.add_argument(
        "--hour-boundary-fraction",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="share of valid events whose event time is put exactly on xx:59:59.999 or "
        "xx:00:00.000, when their lateness window holds one (default 0)",
    )
    edge.add_argument(
        "--poison-fraction",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="share of records that are deeply nested JSON (json.loads raises "
        "RecursionError); manifest: poison.count, expected reason poison.expected_reason "
        "(default 0)",
    )
    edge.add_argument(
        "--poison-depth",
        type=_positive_int,
        default=5000,
        metavar="N",
        help="nesting depth of poison records (default 5000)",
    )

    anomalies = parser.add_argument_group(
        "anomalies", "Ground truth for the anomaly detector; recorded in the manifest under 'injections'."
    )
    anomalies.add_argument(
        "--inject",
        action="append",
        type=_injection,
        default=[],
        metavar="SPEC",
        help="inject an anomaly (repeatable): kind=spike|drop|dead_page,tenant=T,start=ISO,hours=H"
        "[,factor=F][,page=/p]; spike: F x the events; drop: keep F of them; dead_page: no views of "
        "the page (default /); a spike's extra events come on top of --count, the others send fewer",
    )
    anomalies.add_argument(
        "--seasonality",
        type=float,
        default=0.0,
        metavar="A",
        help="daily/weekly traffic shape in [0, 0.9]: 1 - A of the peak at 03:00 UTC, weekends lower (default 0: flat)",
    )

    out = parser.add_argument_group("destination")
    out.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (default from settings)")
    out.add_argument("--topic", help="topic (default from settings)")
    out.add_argument(
        "--partitions",
        type=int,
        metavar="N",
        help="partitions to create the topic with / to assume with --output (default from settings)",
    )
    out.add_argument("--manifest", type=Path, metavar="FILE", help="write the manifest JSON here")
    out.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="write JSONL {key,partition,timestamp_ms,value_b64} instead of sending to Kafka",
    )
    out.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def options_from_args(args: argparse.Namespace) -> GenerateOptions:
    return GenerateOptions(
        count=args.count,
        rate=args.rate,
        duration=args.duration,
        seed=args.seed,
        tenants=args.tenants,
        start_time=args.start_time,
        late_fraction=args.late_fraction,
        min_lateness_ms=int(round(args.min_lateness * 1000)),
        max_lateness_ms=int(round(args.max_lateness * 1000)),
        duplicate_fraction=args.duplicate_fraction,
        malformed_fraction=args.malformed_fraction,
        ontime_max_lateness_ms=int(round(args.ontime_max_lateness * 1000)),
        ontime_lag_fraction=args.ontime_lag_fraction,
        hour_boundary_fraction=args.hour_boundary_fraction,
        poison_fraction=args.poison_fraction,
        poison_depth=args.poison_depth,
        injections=tuple(args.inject),
        seasonality=args.seasonality,
        manifest=args.manifest,
        topic=args.topic,
        bootstrap=args.bootstrap,
        realtime=args.realtime,
        output=args.output,
        partitions=args.partitions,
        progress=args.progress,
    )


def main(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    cfg = settings()
    started = time.monotonic()
    try:
        manifest = run(options, cfg)
    except ValueError as exc:
        log.error("invalid options: %s", exc)
        return 2
    except (DeliveryError, TopicPartitionsError) as exc:
        log.error("%s", exc)
        return 1
    except (KafkaError, KafkaException) as exc:
        log.error(
            "Kafka error: %r (is a broker running at %s? `tidemark stack up` starts the embedded one)",
            exc,
            options.bootstrap or cfg.kafka.bootstrap_servers,
        )
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; manifest not written")
        return 130
    elapsed = time.monotonic() - started
    summary = {
        "topic": None if options.output else manifest["topic"],
        "output": str(options.output) if options.output else None,
        "messages_sent": manifest["messages_sent"],
        "valid_events": manifest["valid_events"],
        "late_events": manifest["late_events"],
        "duplicates_sent": manifest["duplicates_sent"],
        "malformed": sum(manifest["malformed"].values()),
        "poison": manifest["poison"]["count"],
        "start_time": manifest["start_time"],
        "end_time": manifest["end_time"],
        "seconds": round(elapsed, 3),
        "records_per_s": round(manifest["messages_sent"] / elapsed) if elapsed > 0 else None,
        "manifest": str(options.manifest) if options.manifest else None,
    }
    print(json.dumps(summary, separators=(",", ":")), file=sys.stdout, flush=True)
    return 0


def build_parser(prog: str = "tidemark generate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser)
    return parser
