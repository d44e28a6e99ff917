"""Throughput of `tidemark generate`: events/s into the broker, and generation alone.

Needs a running broker (``tidemark stack up``, or KAFKA_BOOTSTRAP_SERVERS).
Prints one JSON line:
  {"bench":"generator_throughput","events":N,"seconds":...,"events_per_s":...,
   "cpu_seconds":...,"generation_only_events_per_s":...,...}

    python bench/generator_throughput.py [--count 300000] [--bootstrap HOST:PORT]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tidemark.config import settings  # noqa: E402
from tidemark.generator.manifest import Manifest  # noqa: E402
from tidemark.generator.produce import GenerateOptions, run  # noqa: E402
from tidemark.generator.traffic import TrafficGenerator, TrafficOptions  # noqa: E402
from tidemark.io.kafka_admin import broker_reachable  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def crc32c_accelerated() -> bool:
    try:
        from kafka.record import util
    except ImportError:
        return False
    return getattr(util, "crc32c_c", None) is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--topic", default=None, help="default: a fresh bench_generator_<id> topic")
    parser.add_argument("--keep-topic", action="store_true", help="do not delete the bench topic afterwards")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    cfg = settings()
    bootstrap = args.bootstrap or cfg.kafka.bootstrap_servers
    if not broker_reachable(bootstrap):
        print(f"error: no Kafka broker answers at {bootstrap}. Start the embedded stack with "
              "`tidemark stack up` (or point KAFKA_BOOTSTRAP_SERVERS at a broker).", file=sys.stderr)
        return 2
    topic = args.topic or f"bench_generator_{uuid.uuid4().hex[:8]}"

    # 1. generation only (event model + manifest, no Kafka)
    traffic = TrafficOptions(start_ms=int(START.timestamp() * 1000), count=args.count, seed=args.seed,
                             partitions=cfg.kafka.partitions, retention_days=cfg.retention_days,
                             max_future_skew_s=cfg.max_future_skew_s, max_payload_bytes=cfg.max_payload_bytes)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    n = sum(1 for _ in TrafficGenerator(traffic, Manifest()).records())
    gen_wall, gen_cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    # 2. end to end into the broker, as fast as possible, all acks awaited
    cpu0, wall0 = time.process_time(), time.perf_counter()
    manifest = run(GenerateOptions(count=args.count, seed=args.seed, start_time=START, topic=topic,
                                   bootstrap=bootstrap, realtime=False, progress=False))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    if not args.keep_topic and args.topic is None:
        try:
            from kafka.admin import KafkaAdminClient
            admin = KafkaAdminClient(bootstrap_servers=bootstrap)
            admin.delete_topics([topic])
            admin.close()
        except Exception as exc:  # the result stands even if cleanup fails
            logging.getLogger("bench").warning("could not delete topic %s: %s", topic, exc)

    print(json.dumps({
        "bench": "generator_throughput",
        "events": manifest["messages_sent"],
        "seconds": round(wall, 3),
        "events_per_s": round(manifest["messages_sent"] / wall),
        "cpu_seconds": round(cpu, 3),
        "cpu_us_per_event": round(cpu / manifest["messages_sent"] * 1e6, 1),
        "generation_only_events_per_s": round(n / gen_wall),
        "generation_only_cpu_seconds": round(gen_cpu, 3),
        "crc32c_c_extension": crc32c_accelerated(),
        "bootstrap": bootstrap,
        "topic": topic,
    }, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
