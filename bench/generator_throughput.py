"""Throughput of `tidemark generate`: events/s into the broker, and generation alone.

Needs a running broker (``tidemark stack up``, or KAFKA_BOOTSTRAP_SERVERS, or --bootstrap). Each
end-to-end run writes to a fresh topic of its own (deleted afterwards unless --keep-topic), as fast
as possible, and waits for every ack, exactly like ``tidemark generate --no-realtime``. The CPU
figures are the whole generator process (the Python thread plus librdkafka's threads).

Prints one JSON line:
  {"bench":"generator_throughput","events":N,"seconds":...,"events_per_s":...,
   "cpu_seconds":...,"cpu_us_per_event":...,"generation_only_events_per_s":...,
   "runs":{"lz4":{...},"none":{...}},...}
(the top-level figures are those of the first --compression run).

    python bench/generator_throughput.py [--count 300000] [--bootstrap HOST:PORT] [--compression lz4,none]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from datetime import datetime, timezone

import benchkit

from tidemark.config import settings
from tidemark.generator import TrafficGenerator, TrafficOptions
from tidemark.generator.manifest import Manifest
from tidemark.generator.produce import GenerateOptions, run
from tidemark.io.kafka_admin import broker_reachable

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def producer_versions() -> str:
    try:
        import confluent_kafka
    except ImportError:
        return "confluent-kafka missing"
    version = confluent_kafka.version()  # a string in 2.x, a (str, int) tuple in 1.x
    version = version[0] if isinstance(version, tuple) else version
    return f"confluent-kafka {version} / librdkafka {confluent_kafka.libversion()[0]}"


def end_to_end(args, bootstrap: str, topic: str, compression: str) -> dict:
    timings: dict[str, float] = {}
    cpu0, thread0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    manifest = run(
        GenerateOptions(
            count=args.count,
            seed=args.seed,
            start_time=START,
            topic=topic,
            bootstrap=bootstrap,
            realtime=False,
            progress=False,
            producer_overrides={"compression.type": compression},
            timings=timings,
        )
    )
    wall, cpu, thread = time.perf_counter() - wall0, time.process_time() - cpu0, time.thread_time() - thread0
    n = manifest["messages_sent"]
    return {
        "events": n,
        "seconds": round(wall, 3),  # topic check, producer start, generation, acks and manifest
        "events_per_s": round(n / wall),
        "sent_events_per_s": round(n / timings["send_seconds"]),  # until the last produce() returned
        "acked_events_per_s": round(n / timings["ack_seconds"]),  # until the last ack
        "cpu_seconds": round(cpu, 3),
        "cpu_us_per_event": round(cpu / n * 1e6, 2),
        "python_thread_cpu_seconds": round(thread, 3),
        "one_core_events_per_s": round(n / cpu),  # the rate if the generator had one core to itself
        "topic": topic,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bootstrap", default=None, help="default: settings (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument(
        "--compression",
        default="lz4,none",
        help="comma-separated librdkafka compression.type values, one run each (default lz4,none)",
    )
    parser.add_argument("--topic-prefix", default="bench_generator", help="runs use <prefix>_<codec>_<id>")
    parser.add_argument("--keep-topic", action="store_true", help="do not delete the bench topics afterwards")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    benchkit.load_average()

    cfg = settings()
    bootstrap = args.bootstrap or cfg.kafka.bootstrap_servers
    if not broker_reachable(bootstrap):
        print(
            f"error: no Kafka broker answers at {bootstrap}. Start the embedded stack with "
            "`tidemark stack up` (or point KAFKA_BOOTSTRAP_SERVERS / --bootstrap at a broker).",
            file=sys.stderr,
        )
        return 2
    run_id = uuid.uuid4().hex[:8]

    # 1. generation only (event model + manifest, no Kafka)
    traffic = TrafficOptions(
        start_ms=int(START.timestamp() * 1000),
        count=args.count,
        seed=args.seed,
        partitions=cfg.kafka.partitions,
        retention_days=cfg.retention_days,
        max_future_skew_s=cfg.max_future_skew_s,
        max_payload_bytes=cfg.max_payload_bytes,
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    gen = TrafficGenerator(traffic, Manifest())
    n = sum(1 for _ in gen.records())
    gen.manifest.to_dict(messages_sent=n)
    gen_wall, gen_cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    # 2. end to end into the broker, as fast as possible, all acks awaited; one topic per run
    runs: dict[str, dict] = {}
    try:
        for codec in [c.strip() for c in args.compression.split(",") if c.strip()]:
            runs[codec] = end_to_end(args, bootstrap, f"{args.topic_prefix}_{codec}_{run_id}", codec)
    finally:
        if not args.keep_topic and runs:
            benchkit.delete_topics(bootstrap, [r["topic"] for r in runs.values()])

    first = next(iter(runs.values()))
    print(
        json.dumps(
            {
                "bench": "generator_throughput",
                "events": first["events"],
                "seconds": first["seconds"],
                "events_per_s": first["events_per_s"],
                "acked_events_per_s": first["acked_events_per_s"],
                "cpu_seconds": first["cpu_seconds"],
                "cpu_us_per_event": first["cpu_us_per_event"],
                "generation_only_events_per_s": round(n / gen_wall),
                "generation_only_cpu_seconds": round(gen_cpu, 3),
                "generation_only_cpu_us_per_event": round(gen_cpu / n * 1e6, 2),
                "runs": runs,
                "producer": producer_versions(),
                "bootstrap": bootstrap,
            },
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
