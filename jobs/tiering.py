"""Tiering: the Spark steps (cold move, Delta maintenance) of one run (spark-submit, the tiering DAG's
SparkSubmitOperator, or `tidemark tiering run`).

    spark-submit $(tidemark spark-conf) jobs/tiering.py --interval-end 2026-12-01T00:00:00+00:00 [--steps cold,delta]

Every boundary derives from --interval-end (the Airflow data interval's end). Prints one JSON line
with what each step did. Safe to kill and re-run (see tidemark/tiering/cold.py).
"""
import argparse
import json
import sys
from datetime import datetime

from tidemark import logs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tiering", description=__doc__.splitlines()[0])
    p.add_argument("--interval-end", required=True, type=datetime.fromisoformat,
                   help="the data interval's end, ISO-8601 with a UTC offset")
    p.add_argument("--steps", default="cold,delta", help="comma-separated: cold, delta")
    p.add_argument("--run-id", default="")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logs.configure()
    from tidemark.config import settings
    from tidemark.spark import session
    from tidemark.tiering.options import SPARK_STEPS, RunOptions
    from tidemark.tiering.run import spark_steps

    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    if not set(steps) <= set(SPARK_STEPS):
        print(f"jobs/tiering.py runs the Spark steps only ({', '.join(SPARK_STEPS)}), not {args.steps}", file=sys.stderr)
        return 2
    cfg = settings()
    opts = RunOptions(args.interval_end, run_id=args.run_id, steps=steps)
    spark = session("tidemark-tiering", cfg)
    try:
        result = spark_steps(spark, cfg, opts)
    finally:
        spark.stop()
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
