"""Speed layer entry point (spark-submit or `tidemark stream`).

    spark-submit --master local[2] jobs/stream_events.py [--topic T] [--checkpoint DIR] [--available-now]

Thin on purpose: the pipeline lives in tidemark.streaming (read -> transform -> write).
"""
import argparse
import sys

from tidemark import logs
from tidemark.streaming import run


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="stream_events", description=__doc__.splitlines()[0])
    p.add_argument("--topic", help="Kafka topic (default: TIDEMARK_TOPIC)")
    p.add_argument("--checkpoint", help="checkpoint directory (default: under TIDEMARK_CHECKPOINT_ROOT)")
    p.add_argument("--starting-offsets", choices=["earliest", "latest"], help="where a new checkpoint starts")
    p.add_argument("--max-offsets-per-trigger", type=int, help="admission control per micro-batch")
    p.add_argument("--trigger-seconds", type=float, help="micro-batch interval")
    p.add_argument("--available-now", action="store_true", help="process the current backlog, then exit")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logs.configure()
    return run(available_now=args.available_now, topic=args.topic, checkpoint=args.checkpoint,
               starting_offsets=args.starting_offsets, max_offsets_per_trigger=args.max_offsets_per_trigger,
               trigger_seconds=args.trigger_seconds)


if __name__ == "__main__":
    sys.exit(main())
