"""``tidemark``: the command line for operators.

Subcommands import their heavy dependencies lazily, so ``tidemark --help``
and ``tidemark stack status`` stay fast.

Over 400 lines on purpose: the operator's whole command line in one place, each subcommand a few
lines handing off to its package (the jobs' flags come from their own ``add_arguments``), and
``build_parser`` at the bottom reads as its table of contents.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tidemark.errors import TidemarkError


def _stack(args: argparse.Namespace) -> int:
    from tidemark.config import settings
    from tidemark.stack import services

    cfg = settings()
    if args.action == "up":
        statuses = services.up(cfg)
    elif args.action == "down":
        stopped = services.down(cfg)
        print(
            json.dumps({"stopped": stopped})
            if args.json
            else ("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
        )
        return 0
    else:
        statuses = services.status(cfg)
    healthy = all(s.healthy for s in statuses)
    if args.json:
        print(json.dumps({"healthy": healthy, "services": [s.as_dict() for s in statuses]}))
    else:
        width = max((len(s.name) for s in statuses), default=11)  # celery mode's names are longer
        for s in statuses:
            state = "healthy" if s.healthy else f"UNHEALTHY ({s.detail})"
            owner = "external" if s.external else f"pid {s.pid}"
            print(f"{s.name:<{width}} {s.address:<32} {owner:<12} {state}")
    return 0 if healthy else 1


def _db(args: argparse.Namespace) -> int:
    from tidemark.clickhouse_ddl import Rendering, ddl_text
    from tidemark.config import settings
    from tidemark.migrations import discover, migrate

    if args.action == "ddl":
        print(ddl_text(Rendering(args.profile, settings()), discover()), end="")
        return 0
    applied = migrate(settings(), profile=args.profile)
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from tidemark.generator.cli import main as generate_main

    return generate_main(args)


def _stream(args: argparse.Namespace) -> int:
    from tidemark.config import settings
    from tidemark.stack.workloads import start_stream, stream_process

    forwarded = _job_flags(args, cli_only=("--detach",))
    cfg = settings()
    if args.detach:
        pid = start_stream(cfg, forwarded, detach=True)
        print(f"stream running, pid {pid}; log {stream_process(cfg).log_file}; stop with `tidemark stack down`")
        return 0
    return start_stream(cfg, forwarded, detach=False)


def _status(args: argparse.Namespace) -> int:
    from tidemark.config import settings
    from tidemark.stack import services
    from tidemark.stack.workloads import stream_process

    cfg = settings()
    services_now = [s.as_dict() for s in services.status(cfg)]
    stream: dict[str, Any] = {"pid": stream_process(cfg).pid()}
    healthy = all(s["healthy"] for s in services_now)
    if healthy:
        from tidemark.stream.identity import current
        from tidemark.stream.metrics import health

        try:
            stream.update(health(cfg))
            serving = current(cfg, cfg.kafka.topic)
            stream["serving_stream_id"] = serving.stream_id if serving else None
        except Exception as exc:  # noqa: BLE001 - status must print even before the schema exists
            stream["detail"] = f"no stream metrics: {exc}"
    if args.json:
        print(json.dumps({"services": services_now, "stream": stream}, default=str))
    else:
        for s in services_now:
            print(f"{s['name']:<11} {s['address']:<32} {'healthy' if s['healthy'] else 'UNHEALTHY'}")
        print(
            f"{'stream':<11} pid {stream.get('pid')}  "
            + "  ".join(
                f"{k}={stream[k]}"
                for k in (
                    "serving_stream_id",
                    "stream_id",
                    "last_commit",
                    "freshness_p50_s",
                    "freshness_p95_s",
                    "backfill_events",
                    "consumer_lag",
                    "input_rows_per_s",
                    "detail",
                )
                if k in stream
            )
        )
    return 0 if healthy else 1


def _stream_promote(args: argparse.Namespace) -> int:
    """Make one stream the one serving its topic: the only way the serving stream changes (logged, and
    recorded in ClickHouse ``stream_promotions``)."""
    from tidemark.config import settings
    from tidemark.stream.identity import promote

    done = promote(settings(), args.stream, topic=args.topic, force=args.force, reason=args.reason or "")
    print(json.dumps(done.__dict__) if args.json else done.message())
    return 0


def _stream_retire(args: argparse.Namespace) -> int:
    """Delete the streaming rows of streams a promotion passed over (already unread)."""
    from tidemark.config import settings
    from tidemark.stream.identity import retire

    print(json.dumps({"retired_rows": retire(settings())}))
    return 0


def _tiering(args: argparse.Namespace) -> int:
    """Retention and maintenance (tidemark/tiering/); Spark steps through spark-submit jobs/tiering.py."""
    from tidemark.config import settings
    from tidemark.tiering.options import options_from_args
    from tidemark.tiering.run import run

    cfg = settings()
    opts = options_from_args(args.parser, args, dry_run=args.dry_run)
    rep = run(cfg, opts, spark_runner=lambda o: _tiering_spark_submit(cfg, o))
    print(json.dumps(rep.as_dict(), default=str) if args.json else "\n".join(rep.lines()))
    return 1 if rep.alerts and not args.dry_run else 0


def _tiering_spark_submit(cfg, opts) -> dict:
    import os
    import subprocess

    from tidemark.stack.workloads import job_env, spark_submit_argv
    from tidemark.tiering.options import SPARK_STEPS

    steps = ",".join(s for s in opts.steps if s in SPARK_STEPS)
    argv = spark_submit_argv(
        cfg, "tiering.py", ["--interval-end", opts.interval_end.isoformat(), "--steps", steps, "--run-id", opts.run_id]
    )
    done = subprocess.run(argv, env={**os.environ, **job_env()}, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise TidemarkError(
            f"jobs/tiering.py failed (exit {done.returncode}); its log is above. "
            f"Every step is safe to re-run: run the same command again once the cause is fixed"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _reconcile(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from tidemark.config import settings
    from tidemark.stream.options import StreamOptions
    from tidemark.stream.reconcile import stream_report

    cfg = settings()
    manifest = json.loads(open(args.manifest).read())
    ident = StreamOptions.from_settings(cfg, checkpoint=args.checkpoint).identity
    if args.wait:
        from tidemark.stream.reconcile import wait_until_consumed

        waited = wait_until_consumed(cfg, ident.stream_id, manifest.get("topic") or cfg.kafka.topic, args.wait)
        print(f"stream caught up with the topic in {waited:.1f}s")
    since = datetime.fromisoformat(args.since).astimezone(timezone.utc) if args.since else None
    report = stream_report(cfg, manifest, ident.stream_id, ident.epoch, since=since)
    from tidemark.io.clickhouse import client
    from tidemark.slo.status import record_reconciliation

    # The ingest SLO's figure: produced (the manifest's on-time events) against counted.
    record_reconciliation(
        client(cfg.clickhouse),
        cfg.clickhouse.database,
        ident.stream_id,
        report.on_time_expected,
        report.on_time_published,
    )
    if args.json:
        from dataclasses import asdict

        print(json.dumps({**asdict(report), "exact": report.exact}, default=str))
    else:
        print("\n".join(report.lines()))
    return 0 if report.exact else 1


def _recompute(args: argparse.Namespace) -> int:
    import os
    import subprocess

    from tidemark.batch.options import hours
    from tidemark.config import settings
    from tidemark.stack.workloads import job_env, spark_submit_argv

    hours(args.parser, args)  # a bad range fails here, before a JVM starts
    argv = spark_submit_argv(settings(), "recompute_hour.py", _job_flags(args))
    return subprocess.call(argv, env={**os.environ, **job_env()})


def _spark_conf(args: argparse.Namespace) -> int:
    """Print Tidemark's engine conf as spark-submit flags, for ad-hoc jobs:
    ``spark-submit $(tidemark spark-conf) jobs/recompute_hour.py --hour 2026-11-25T03``."""
    import shlex

    from tidemark.config import settings
    from tidemark.spark import engine_conf, submit_args

    cfg = settings()
    if args.properties:
        print("\n".join(f"{k} {v}" for k, v in engine_conf(cfg).items()))
    else:
        print(" ".join(shlex.quote(a) for a in submit_args(cfg)))
    return 0


def _submit(args: argparse.Namespace) -> int:
    """``spark-submit`` a job, or start the ``pyspark`` shell, as every Tidemark Spark process runs:
    the venv's Spark and Python and the engine conf (jars, Delta extension), whatever shell it is
    typed in. The command becomes the launcher (its signals and exit code are the job's)."""
    import os
    import shutil
    from pathlib import Path

    from tidemark.config import settings
    from tidemark.stack.workloads import job_env, spark_submit_argv

    cfg = settings()
    env = {**os.environ, **job_env()}
    if args.command == "submit":
        argv = spark_submit_argv(cfg, str(Path(args.script).resolve()), args.rest)
    else:
        from tidemark.spark import submit_args

        shell = Path(sys.executable).parent / "pyspark"
        launcher = str(shell) if shell.exists() else shutil.which("pyspark") or "pyspark"
        argv = [launcher, "--master", cfg.spark.master, "--driver-memory", cfg.spark.driver_memory, *submit_args(cfg)]
    os.execvpe(argv[0], argv, env)


def _quality(args: argparse.Namespace) -> int:
    from tidemark.config import settings
    from tidemark.quality import docs
    from tidemark.quality.gx import quality_home

    cfg = settings()
    home = quality_home(cfg)
    index = docs.build_docs(home, cfg.retention_days)
    print(f"Data Docs: file://{index}")
    if args.serve:
        print(f"serving on http://127.0.0.1:{args.port}/ (Ctrl-C to stop)")
        docs.serve(home, cfg.retention_days, args.port, rebuild=False)
    return 0


def _airflow(args: argparse.Namespace) -> int:
    """Run the `airflow` CLI with Tidemark's environment (AIRFLOW_HOME, DAGs folder, spark_default)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from tidemark.config import settings
    from tidemark.stack.airflow_celery import process_env

    binary = Path(sys.executable).parent / "airflow"
    return subprocess.call(
        [str(binary) if binary.exists() else shutil.which("airflow") or "airflow", *args.rest],
        env={**os.environ, **process_env(settings())},
    )


def _batch_run(args: argparse.Namespace) -> int:
    """hourly_recompute for some hours through the embedded Airflow's scheduler (REST API), then unpause DAGs."""
    from tidemark.config import settings
    from tidemark.hours import parse_hour
    from tidemark.stack.airflow_api import run_hours, unpause

    cfg = settings()
    if args.hour:
        run_hours([parse_hour(h) for h in args.hour], cfg=cfg, timeout_s=args.timeout)
    if args.unpause:
        unpause(args.unpause, cfg=cfg)
    return 0


def _batch_report(args: argparse.Namespace) -> int:
    from tidemark.batch.report import batch_report
    from tidemark.config import settings
    from tidemark.hours import parse_hour

    manifest = json.loads(open(args.manifest).read())
    report = batch_report(settings(), manifest, [parse_hour(h) for h in args.hour])
    print("\n".join(report["lines"]))
    return 0 if report["exact"] else 1


def _anomalies(args: argparse.Namespace) -> int:
    """Score hours (an explicit range) or the live tail's minutes; replace their stored anomalies."""
    import time
    from datetime import datetime, timedelta, timezone

    from tidemark.anomalies.detect import detect_hours, detect_minutes
    from tidemark.config import settings
    from tidemark.hours import HOUR, parse_hour

    cfg = settings()
    tenants = args.tenant or None
    out = []
    if args.hours:
        first, _, last = args.hours.partition("..")
        try:
            start = parse_hour(first)
            end = parse_hour(last) if last else start + HOUR
        except ValueError as exc:
            raise SystemExit(args.parser.error(str(exc))) from None
        if end <= start:
            args.parser.error(f"--hours {args.hours}: the end (exclusive) is not after the start")
        out.append(detect_hours(cfg, start, end, tenants=tenants, run_id=args.run_id))
    if args.live_minutes:
        now = datetime.fromtimestamp(int(time.time()) // 60 * 60, timezone.utc)  # the current minute excluded
        start = now - timedelta(minutes=args.live_minutes)
        out.append(detect_minutes(cfg, start, now, tenants=tenants, run_id=args.run_id))
    if not out:
        args.parser.error("give --hours START..END and/or --live-minutes N")
    for summary in out:
        print(json.dumps(summary.as_dict()))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tidemark.config import settings
    from tidemark.serving import server

    cfg = settings()
    host, port = args.host or cfg.serving.host, args.port or cfg.serving.port
    if not args.detach:
        server.run(cfg, host, port)
        return 0
    pid = server.start_detached(cfg, host, port)
    print(f"API and dashboard on http://{host}:{port}/ (docs /docs), pid {pid}; stop with `tidemark stack down`")
    return 0


def _slo(args: argparse.Namespace) -> int:
    from tidemark.config import settings

    cfg = settings()
    if args.action == "probe":
        from tidemark.slo.monitor import Monitor

        url = args.url or f"http://{cfg.serving.host}:{cfg.serving.port}/health"
        Monitor(cfg, url).run()
        return 0
    from datetime import datetime, timezone
    from pathlib import Path

    from tidemark.io.clickhouse import client
    from tidemark.slo.maths import parse_window
    from tidemark.slo.report import report

    window_s = parse_window(args.window)
    png = Path(args.chart) if args.chart else cfg.home / "reports" / "slo.png"
    shown, _figures = report(
        client(cfg.clickhouse),
        cfg.clickhouse.database,
        datetime.now(timezone.utc),
        window_s,
        args.window,
        png,
        live_within_s=cfg.spark.allowed_lateness_s,
    )
    print("\n".join(shown))
    return 0


def _keys(args: argparse.Namespace) -> int:
    from tidemark.config import settings
    from tidemark.serving import keys

    cfg = settings()
    if args.action == "create" and not args.tenant:
        raise keys.KeyAdminError("--tenant is required")
    if args.action == "revoke" and not args.key_id:
        raise keys.KeyAdminError("give the key id to revoke (see `tidemark keys list`)")
    if args.action == "create":
        record, token = keys.create(cfg, args.tenant, args.name or "", args.rate, args.burst)
        print(
            json.dumps({"key": token, "key_id": record.key_id, "tenant": record.tenant_id})
            if args.json
            else f"{token}\n(key id {record.key_id}, tenant {record.tenant_id}; "
            f"shown once: only its hash is stored; a running API accepts it within about "
            f"{cfg.serving.key_refresh_s:g} s)"
        )
    elif args.action == "revoke":
        record = keys.revoke(cfg, args.key_id)
        print(
            f"revoked {record.key_id} (tenant {record.tenant_id}); a running API refuses it within about "
            f"{cfg.serving.key_refresh_s:g} s"
        )
    else:
        found = keys.list_keys(cfg, args.tenant)
        if args.json:
            print(json.dumps([{**k.__dict__, "created_at": k.created_at.isoformat()} for k in found]))
        for k in [] if args.json else found:
            print(
                f"{k.key_id}  {k.tenant_id:<24} {'REVOKED' if k.revoked else 'active ':<8} "
                f"{k.created_at:%Y-%m-%d %H:%M}  {k.name}"
            )
    return 0


def build_parser() -> argparse.ArgumentParser:
    # The jobs' flags are declared once, beside each job's code (light modules: no Spark import).
    from tidemark.batch import options as batch_options
    from tidemark.stream import options as stream_options
    from tidemark.tiering import options as tiering_options

    parser = argparse.ArgumentParser(prog="tidemark", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="start, stop or check the embedded services")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--json", action="store_true", help="machine-readable output")
    stack.set_defaults(func=_stack)

    db = sub.add_parser("db", help="ClickHouse schema: apply the migrations, or print them as one script")
    db.add_argument("action", choices=["migrate", "ddl"])
    db.add_argument(
        "--profile",
        choices=["embedded", "production"],
        default="embedded",
        help="embedded: the files as written (ClickHouse 18.16); production: replicated, distributed, "
        "TTL and row policies for a current ClickHouse cluster (CLICKHOUSE_CLUSTER, ...)",
    )
    db.set_defaults(func=_db)

    stream = sub.add_parser("stream", help="run the speed layer (Kafka -> Delta + ClickHouse) via spark-submit")
    stream.add_argument("--detach", action="store_true", help="run in the background; `stack down` stops it")
    stream_options.add_arguments(stream)
    stream.set_defaults(func=_stream)

    promote = sub.add_parser(
        "stream-promote", help="make a stream (a --candidate run) the one whose rows count for its topic"
    )
    promote.add_argument("stream", help="the stream's checkpoint directory, or its stream_id")
    promote.add_argument("--topic", help="only needed when the stream consumed several topics")
    promote.add_argument(
        "--force",
        action="store_true",
        help="promote even if it has not caught up with the serving stream or started at 'latest'",
    )
    promote.add_argument("--reason", help="recorded with the promotion")
    promote.add_argument("--json", action="store_true")
    promote.set_defaults(func=_stream_promote)

    retire = sub.add_parser("stream-retire", help="delete the rows of streams a promotion passed over")
    retire.set_defaults(func=_stream_retire)

    status = sub.add_parser("status", help="services and stream health (freshness, lag, rates)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)

    recompute = sub.add_parser("recompute", help="batch layer: recompute hours from Delta, check, publish")
    batch_options.add_arguments(recompute)
    recompute.set_defaults(func=_recompute, parser=recompute)

    sc = sub.add_parser("spark-conf", help="print the Spark flags (Kafka/Delta jars, Delta extension) for spark-submit")
    sc.add_argument("--properties", action="store_true", help="as a spark-defaults properties file instead")
    sc.set_defaults(func=_spark_conf)

    submit = sub.add_parser(
        "submit", help="spark-submit a job (jobs/...) with the engine conf and the venv's Spark and Python"
    )
    submit.add_argument("script", help="the job's file, e.g. jobs/stream_events.py")
    submit.add_argument("rest", nargs=argparse.REMAINDER, metavar="...", help="the job's own flags")
    submit.set_defaults(func=_submit)

    pyspark = sub.add_parser(
        "pyspark", help="the pyspark shell with the engine conf (Delta), the venv's Spark and Python (SPARK_MASTER)"
    )
    pyspark.set_defaults(func=_submit)

    quality = sub.add_parser("quality", help="data-quality reports (Great Expectations Data Docs, offline)")
    quality.add_argument("action", choices=["docs"])
    quality.add_argument("--serve", action="store_true", help="serve the site on 127.0.0.1")
    quality.add_argument("--port", type=int, default=8765)
    quality.set_defaults(func=_quality)

    af = sub.add_parser("airflow", help="the airflow CLI with Tidemark's environment", add_help=False)
    af.add_argument("rest", nargs=argparse.REMAINDER)
    af.set_defaults(func=_airflow)

    brun = sub.add_parser("batch-run", help="run hourly_recompute for past hours through Airflow's scheduler and wait")
    brun.add_argument(
        "--hour",
        action="append",
        default=[],
        help="event hour (repeat; the backfill covers every hour from the first to the last)",
    )
    brun.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS", help="give up waiting after")
    brun.add_argument(
        "--unpause",
        action="append",
        default=[],
        metavar="DAG_ID",
        help="then unpause this DAG so it runs on its schedule (repeat)",
    )
    brun.set_defaults(func=_batch_run)

    br = sub.add_parser("batch-report", help="sent vs streaming vs batch-corrected totals for some hours")
    br.add_argument("--manifest", required=True)
    br.add_argument("--hour", action="append", required=True)
    br.set_defaults(func=_batch_report)

    tiering = sub.add_parser(
        "tiering", help="retention and maintenance: hot/warm/cold tiers, Delta and ClickHouse care"
    )
    tiering.add_argument("action", choices=["run"])
    tiering.add_argument("--dry-run", action="store_true", help="measure and plan every step; change nothing")
    tiering_options.add_arguments(tiering)
    tiering.add_argument("--json", action="store_true")
    tiering.set_defaults(func=_tiering, parser=tiering)

    rec = sub.add_parser("reconcile", help="compare the stream's ClickHouse output with a generator manifest")
    rec.add_argument("--manifest", required=True)
    rec.add_argument("--checkpoint", help="the stream's checkpoint (default: the standard one)")
    rec.add_argument("--since", help="only batches committed after this ISO-8601 time")
    rec.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait (up to SECONDS) until the stream has committed everything now in the topic",
    )
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=_reconcile)

    anomalies = sub.add_parser("anomalies", help="anomaly detection on the rollups (seasonal baseline)")
    anomalies.add_argument("action", choices=["detect"])
    anomalies.add_argument(
        "--hours",
        metavar="START..END",
        help="hours to score, end exclusive (e.g. 2026-11-25T00..2026-11-26T00), or one hour",
    )
    anomalies.add_argument("--live-minutes", type=int, metavar="N", help="also score the last N complete minutes")
    anomalies.add_argument("--tenant", action="append", metavar="T", help="only this tenant (repeatable; default all)")
    anomalies.add_argument("--run-id", default="", help="recorded with each row (Airflow passes its run id)")
    anomalies.set_defaults(func=_anomalies, parser=anomalies)

    serve = sub.add_parser("serve", help="the dashboard query API and page (FastAPI on uvicorn)")
    serve.add_argument("--host", help="default TIDEMARK_SERVING_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, help="default TIDEMARK_SERVING_PORT (8088)")
    serve.add_argument("--detach", action="store_true", help="run in the background; `tidemark stack down` stops it")
    serve.set_defaults(func=_serve)

    slo = sub.add_parser("slo", help="the SLOs: report them over a window (and a chart), or run the probe")
    slo.add_argument("action", choices=["report", "probe"])
    slo.add_argument("--window", default="24h", help="report: how far back, e.g. 90m, 24h, 7d (default 24h)")
    slo.add_argument("--chart", help="report: the PNG to write (default $TIDEMARK_HOME/reports/slo.png)")
    slo.add_argument("--url", help="probe: the URL to probe (default the API's /health)")
    slo.set_defaults(func=_slo)

    keys = sub.add_parser("keys", help="API keys of the serving API (one key = one tenant; stored hashed)")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("key_id", nargs="?", help="revoke: the key id (from `keys list`)")
    keys.add_argument("--tenant", help="create: the key's tenant (required); list: only this tenant")
    keys.add_argument("--name", help="create: a label, e.g. who uses the key")
    keys.add_argument("--rate", type=float, default=0.0, help="create: requests/s for the tenant (0 = server default)")
    keys.add_argument("--burst", type=int, default=0, help="create: bucket size (0 = server default)")
    keys.add_argument("--json", action="store_true")
    keys.set_defaults(func=_keys)

    gen = sub.add_parser("generate", help="produce realistic page-view traffic with injected faults")
    try:
        from tidemark.generator.cli import add_arguments

        add_arguments(gen)
    except ImportError:  # pragma: no cover - generator not installed
        pass
    gen.set_defaults(func=_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tidemark import logs
    from tidemark.config import settings

    logs.configure(settings())
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except TidemarkError as exc:  # the one place a user-facing error is reported: one line, exit 1
        print(f"{_command(args)}: {exc.message}", file=sys.stderr)
        return 1


def _command(args: argparse.Namespace) -> str:
    """The command as the user named it, e.g. ``tidemark keys create``, to prefix its errors."""
    action = getattr(args, "action", None)
    return f"tidemark {args.command} {action}" if isinstance(action, str) else f"tidemark {args.command}"


def _job_flags(args: argparse.Namespace, cli_only: tuple[str, ...] = ()) -> list[str]:
    """The flags a user gave a job subcommand, as typed, for the job's own parser (spark-submit runs
    it): the CLI parsed them with the same declarations, so they are valid there too."""
    return [a for a in args.argv[1:] if a not in cli_only]


if __name__ == "__main__":
    sys.exit(main())
