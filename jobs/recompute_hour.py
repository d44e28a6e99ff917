"""Batch layer entry point (spark-submit, Airflow's SparkSubmitOperator, or `tidemark recompute`).

    spark-submit --master local[2] jobs/recompute_hour.py --hour 2026-11-25T03 [--run-id R] [--no-publish]
    spark-submit ... jobs/recompute_hour.py --from 2026-11-25T00 --to 2026-11-25T06

Flags are declared in tidemark/batch/options.py. Each hour is read, deduplicated, checked, staged
and (unless --no-publish) published.
With --no-publish the run summary is left for the quality-gate and publish steps
(Airflow runs them as separate tasks). Exit code 3 means a quality gate failed.
"""

import argparse
import json
import sys

from tidemark import logs
from tidemark.batch.options import add_arguments, hours
from tidemark.hours import label


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="recompute_hour", description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    todo = hours(parser, args)
    from tidemark.batch.recompute import QualityGateFailed, conclude, recompute, summary_path
    from tidemark.config import settings
    from tidemark.spark import session

    cfg = settings()
    logs.configure(cfg)
    spark = session("tidemark-recompute-hour", cfg)
    failed = 0
    try:
        for i, hour in enumerate(todo, 1):
            summary = recompute(spark, cfg, hour, run_id=args.run_id, publish_now=False, force=args.force)
            path = summary_path(cfg, hour, summary.run_id)
            summary.write(path)
            if not args.no_publish:
                try:
                    conclude(cfg, summary)
                except QualityGateFailed:
                    failed += 1
                summary.write(path)
            print(
                json.dumps(
                    {
                        "hour": label(hour),
                        "status": summary.status,
                        "version": summary.version,
                        "dedup_rows": summary.dedup_rows,
                        "rollup_rows": summary.rollup_rows,
                        "passed": summary.passed,
                        "reason": summary.reason,
                        "summary": str(path),
                        "progress": f"{i}/{len(todo)}",
                        "seconds": summary.seconds,
                    }
                ),
                flush=True,
            )
    finally:
        spark.stop()
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
