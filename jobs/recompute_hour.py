"""Batch layer entry point (spark-submit, Airflow's SparkSubmitOperator, or `tidemark recompute`).

    spark-submit --master local[2] jobs/recompute_hour.py --hour 2026-11-25T03 [--run-id R] [--no-publish]
    spark-submit ... jobs/recompute_hour.py --from 2026-11-25T00 --to 2026-11-25T06

Each hour is read, deduplicated, checked, staged and (unless --no-publish) published.
With --no-publish the run summary is left for the quality-gate and publish steps
(Airflow runs them as separate tasks). Exit code 3 means a quality gate failed.
"""
import argparse
import json
import sys

from tidemark import logs
from tidemark.batch.hours import hours_between, label, parse_hour


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="recompute_hour", description=__doc__.splitlines()[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--hour", type=parse_hour, help="event hour, e.g. 2026-11-25T03")
    which.add_argument("--from", dest="start", type=parse_hour, help="first hour of a range (with --to)")
    p.add_argument("--to", dest="end", type=parse_hour, help="end of the range, exclusive")
    p.add_argument("--run-id", default=None, help="names the run summary (Airflow passes its run id)")
    p.add_argument("--no-publish", action="store_true", help="stage and check only; publish in a later step")
    p.add_argument("--force", action="store_true", help="recompute even if this content is already published")
    args = p.parse_args(argv)
    if args.start and not args.end:
        p.error("--from needs --to")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logs.configure()
    from tidemark.batch.recompute import QualityGateFailed, conclude, recompute, summary_path
    from tidemark.config import settings
    from tidemark.spark import session

    cfg = settings()
    hours = [args.hour] if args.hour else hours_between(args.start, args.end)
    spark = session("tidemark-recompute-hour", cfg)
    failed = 0
    try:
        for i, hour in enumerate(hours, 1):
            summary = recompute(spark, cfg, hour, run_id=args.run_id, publish_now=False, force=args.force)
            path = summary_path(cfg, hour, summary.run_id)
            summary.write(path)
            if not args.no_publish:
                try:
                    conclude(cfg, summary)
                except QualityGateFailed:
                    failed += 1
                summary.write(path)
            print(json.dumps({"hour": label(hour), "status": summary.status, "version": summary.version,
                              "dedup_rows": summary.dedup_rows, "rollup_rows": summary.rollup_rows,
                              "passed": summary.passed, "reason": summary.reason, "summary": str(path),
                              "progress": f"{i}/{len(hours)}", "seconds": summary.seconds}), flush=True)
    finally:
        spark.stop()
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
