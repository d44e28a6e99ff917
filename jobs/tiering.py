"""Tiering: the Spark steps (cold move, Delta maintenance) of one run (spark-submit, the tiering DAG's
SparkSubmitOperator, or `tidemark tiering run`).

    spark-submit $(tidemark spark-conf) jobs/tiering.py --interval-end 2026-12-01T00:00:00+00:00 [--steps cold,delta]

Every boundary derives from --interval-end (the Airflow data interval's end; required here, so a
scheduled run never falls back to the clock). Flags are declared in tidemark/tiering/options.py.
Prints one JSON line with what each step did. Safe to kill and re-run (see tidemark/tiering/cold.py).
"""

import argparse
import json
import sys

from tidemark import logs
from tidemark.tiering.options import SPARK_STEPS, add_arguments, options_from_args


def main(argv=None) -> int:
    parser = add_arguments(
        argparse.ArgumentParser(prog="tiering", description=__doc__.splitlines()[0]), steps=SPARK_STEPS
    )
    args = parser.parse_args(argv)
    if args.interval_end is None:
        parser.error("--interval-end is required (the data interval's end)")
    opts = options_from_args(parser, args, steps=SPARK_STEPS)
    from tidemark.config import settings
    from tidemark.spark import session
    from tidemark.tiering.run import spark_steps

    cfg = settings()
    logs.configure(cfg)
    spark = session("tidemark-tiering", cfg)
    try:
        result = spark_steps(spark, cfg, opts)
    finally:
        spark.stop()
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
