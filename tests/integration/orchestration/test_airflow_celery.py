"""Airflow as production runs it (TIDEMARK_AIRFLOW_MODE=celery): a real Postgres server (Debian's), the
api-server, scheduler, dag-processor and triggerer as separate processes, and a real Celery worker with
the session's Redis as its broker and Postgres as its result backend, all started by the stack's own
code (tidemark.stack.services.airflow_services).

hourly_recompute publishes an hour through it (backfill through the REST client the demo uses, the
sensor, spark-submit on the worker, the gate, the publication); late_data_recompute, unpaused, runs its
latest interval once over the whole acceptance window and finds nothing due (the hour is published and
clean; its republishing of dirty hours is test_dags' business: one Spark job less here).
The hour is the last complete one and the batch starts there: unpausing the hourly DAG (catchup=True)
then has nothing else to catch up (an older hour would make the scheduler recompute every hour since).

Every task instance that ran must have run through
Celery (its Celery task id in Airflow's row, SUCCESS in Celery's result table in Postgres), on this
host, from the default queue (Airflow 3 leaves the scheduler job's executor_class empty, so the
Celery result rows are the proof). Everything stops with SIGINT
and leaves no process behind.

Its own TIDEMARK_HOME (under the session's home, not pytest's 0700 tmp dir: Postgres' cluster then stays
inside it, though test_postgres_home shows it starts either way), ClickHouse database and Redis database:
the session's data is untouched.
"""

import os
import shutil
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
from support.airflow_runs import latest_registry_row, raw_rows, stream_caught_up, write_hour
from support.ports import free_port
from support.wait import wait_until

pytestmark = pytest.mark.cluster

HOUR = timedelta(hours=1)
DATABASE = "tidemark_test_airflow_celery"
DAGS = ("hourly_recompute", "late_data_recompute")


def _celery_record(cfg, dag_id):
    """Airflow's task instance rows of ``dag_id`` joined with Celery's result rows, from Postgres."""
    import psycopg2

    from tidemark.stack.postgres import _libpq_url

    with psycopg2.connect(_libpq_url(cfg.airflow.metadata_url)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT ti.task_id, ti.map_index, ti.state, ti.queue, ti.hostname, m.status "
            "FROM task_instance ti LEFT JOIN celery_taskmeta m ON m.task_id = ti.external_executor_id "
            "WHERE ti.dag_id = %s AND ti.state <> 'skipped' ORDER BY ti.task_id",
            (dag_id,),
        )
        return cur.fetchall()


def test_hourly_and_late_data_dags_run_on_celery_workers_against_postgres(stack, spark, monkeypatch):
    from tidemark.config import load
    from tidemark.io.clickhouse import client
    from tidemark.migrations import migrate
    from tidemark.stack.airflow_api import AirflowAPI, run_hours, unpause
    from tidemark.stack.airflow_celery import AirflowCeleryWorker, broker_url
    from tidemark.stack.postgres import cluster_root
    from tidemark.stack.process import group_members
    from tidemark.stack.services import airflow_services

    now = datetime.now(timezone.utc)
    hour = now.replace(minute=0, second=0, microsecond=0) - HOUR  # the last complete hour
    home = stack.home / "airflow_celery_test"
    shutil.rmtree(home, ignore_errors=True)  # a fresh cluster and metadata database every run
    shutil.rmtree(cluster_root(home), ignore_errors=True)  # outside home when `postgres` cannot enter it
    monkeypatch.setenv("TIDEMARK_HOME", str(home))
    monkeypatch.setenv("CLICKHOUSE_DATABASE", DATABASE)
    monkeypatch.setenv("TIDEMARK_AIRFLOW", "1")
    monkeypatch.setenv("TIDEMARK_AIRFLOW_MODE", "celery")
    monkeypatch.setenv("TIDEMARK_BATCH_START", hour.isoformat())  # nothing before it to catch up
    monkeypatch.setenv("TIDEMARK_ALLOWED_LATENESS_S", "0")  # the hour is complete at its end (the sensor)
    for var in (
        "TIDEMARK_AIRFLOW_PORT",
        "TIDEMARK_AIRFLOW_WORKER_LOG_PORT",
        "TIDEMARK_AIRFLOW_TRIGGER_LOG_PORT",
        "TIDEMARK_POSTGRES_PORT",
    ):
        monkeypatch.setenv(var, str(free_port()))
    cfg = load()
    assert cfg.airflow.celery and cfg.redis.url == stack.redis.url
    import redis

    redis.Redis.from_url(broker_url(cfg)).flushdb()  # no message left by an interrupted earlier run

    migrate(cfg)
    rows = raw_rows(hour, 10)
    write_hour(spark, cfg, rows + [rows[0], rows[3]], replace_hour=hour)  # 2 redelivered: dedup keeps 10
    stream_caught_up(cfg)

    parts = airflow_services(cfg, celery=True)
    assert [p.name for p in parts] == [
        "postgres",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-celery-worker",
    ]
    groups = {}
    started = time.monotonic()
    try:
        for part in parts:
            part.up()
            groups[part.name] = os.getpgid(part.proc.pid())
        print(f"postgres + airflow (celery) healthy after {time.monotonic() - started:.1f}s")
        assert all(p.status().healthy for p in parts)

        api = AirflowAPI.embedded(cfg)
        lines: list[str] = []
        hourly = run_hours([hour], cfg=cfg, api=api, timeout_s=300, say=lines.append)
        api.set_paused("hourly_recompute", True)
        print("\n".join(lines))
        assert [(r.hour, r.state) for r in hourly] == [(hour, "success")]
        status, first_version, dedup_rows, run_id = latest_registry_row(cfg, hour)
        assert (status, dedup_rows, run_id) == ("published", 10, hourly[0].run_id)

        asked = datetime.now(timezone.utc)
        unpause(["late_data_recompute"], cfg=cfg, api=api, say=lines.append)  # catchup=False: one run
        window = (asked - HOUR, asked + HOUR)
        late = wait_until(
            lambda: [r for r in api.runs("late_data_recompute", *window) if r.state in ("success", "failed")],
            300,
            lambda: f"a late_data_recompute run to finish: {api.runs('late_data_recompute', *window)}",
            interval_s=2,
        )
        api.set_paused("late_data_recompute", True)
        assert [r.state for r in late] == ["success"]
        status, version, dedup_rows, run_id = latest_registry_row(cfg, hour)
        assert (status, version, dedup_rows, run_id) == ("published", first_version, 10, hourly[0].run_id)
        print(f"both DAGs done after {time.monotonic() - started:.1f}s")

        hosts = {socket.gethostname(), socket.getfqdn()}  # Airflow's hostname_callable: getfqdn, its way
        # Airflow hears of a task's end from the task itself (execution API); Celery's row turns SUCCESS
        # when the worker's task returns, a moment later.
        wait_until(
            lambda: all(r[5] == "SUCCESS" for d in DAGS for r in _celery_record(cfg, d)),
            60,
            lambda: f"Celery results of every task: {[_celery_record(cfg, d) for d in DAGS]}",
            interval_s=0.5,
        )
        ran = _celery_record(cfg, "hourly_recompute")
        hourly_tasks = {"wait_for_stream", "recompute", "quality_gate", "publish", "detect_anomalies"}
        assert {r[0] for r in ran} == hourly_tasks, ran
        late_ran = _celery_record(cfg, "late_data_recompute")
        assert {r[0] for r in late_ran} == {"find_due_hours", "check_failing_hours", "retire_superseded_streams"}
        for task_id, map_index, state, queue, hostname, celery_status in ran + late_ran:
            # Run through Celery: its task id is on the Airflow row and its result in Celery's table.
            assert (state, queue, celery_status) == ("success", "default", "SUCCESS"), (task_id, map_index)
            assert hostname in hosts, (task_id, hostname, hosts)
        worker = next(p for p in parts if isinstance(p, AirflowCeleryWorker))
        assert worker.healthy()  # still answering its broker after the work
    finally:
        for part in reversed(parts):
            part.down()
        client(cfg.clickhouse, database="default").execute(f"DROP DATABASE IF EXISTS {DATABASE}")

    for part in parts:
        report = part.proc.last_stop
        assert report is not None and report.signals[0] == "SIGINT" and not report.survivors, (part.name, report)
        assert part.proc.pid() is None and not part.status().healthy
    assert all(group_members(pgid) == [] for pgid in groups.values()), groups
