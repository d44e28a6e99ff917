"""Speed layer entry point (spark-submit or `tidemark stream`).

    spark-submit $(tidemark spark-conf) jobs/stream_events.py [--topic T] [--checkpoint DIR] [--available-now]

Thin on purpose: the pipeline lives in tidemark.stream (read -> transform -> write); the flags are
declared once, in tidemark.stream.options.
"""

import argparse
import sys

from tidemark import logs
from tidemark.config import settings
from tidemark.stream.options import add_arguments, overrides
from tidemark.stream.pipeline import run


def main(argv=None) -> int:
    args = add_arguments(argparse.ArgumentParser(prog="stream_events", description=__doc__.splitlines()[0])).parse_args(
        argv
    )
    cfg = settings()
    logs.configure(cfg)
    return run(cfg, available_now=args.available_now, **overrides(args))


if __name__ == "__main__":
    sys.exit(main())
