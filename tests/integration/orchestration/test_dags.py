"""The Airflow layer: DAG definitions, both DAGs run with dag.test() against the real stack,
and the embedded `airflow standalone` service (start, log in, list DAGs, stop with SIGINT).

Airflow reads its configuration when first imported, so every test goes through the
``airflow_env_vars`` fixture, which points AIRFLOW_HOME at a tmp dir, migrates that
metadata DB and exports the env from tidemark.stack.airflow.airflow_env() (which also
defines spark_default) BEFORE anything imports airflow.
"""

import itertools
import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from support.airflow_runs import latest_registry_row as _latest_registry_row
from support.airflow_runs import raw_rows as _raw_rows
from support.airflow_runs import stream_caught_up as _stream_caught_up
from support.airflow_runs import write_hour as _write_hour
from support.ports import free_port

from tidemark.config import PROJECT_ROOT

DAGS = PROJECT_ROOT / "dags"
HOUR = timedelta(hours=1)
# Hours owned by this module (the published-hours registry is shared by the test database).
HOURLY_H = datetime(2026, 11, 21, 5, tzinfo=timezone.utc)
LATE_H = datetime(2026, 11, 21, 7, tzinfo=timezone.utc)
BAD_H = datetime(2026, 11, 21, 3, tzinfo=timezone.utc)


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))  # 3.3: no include_examples any more (core.load_examples=False)


# Run in a fresh interpreter: parse the DAG folder (as the DAG processor does) under an audit hook that
# records every connection attempt, then list the heavy modules the parse imported.
_PARSE_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
io = []
sys.addaudithook(lambda event, args: io.append([event, repr(args)[:200]])
                 if event in ("socket.connect", "sqlite3.connect", "subprocess.Popen") else None)
bag = DagBag(dag_folder=sys.argv[1])
heavy = [m for m in ("pyspark", "clickhouse_driver", "redis", "kafka", "deltalake", "great_expectations",
                     "tidemark.io", "tidemark.batch", "tidemark.tiering") if m in sys.modules]
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags),
                  "io": io, "heavy": heavy}))
"""


def _parse_in_fresh_interpreter(folder: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PARSE_PROBE, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_dag_parses_without_errors_connections_or_heavy_imports(airflow_env_vars, tmp_path):
    parsed = _parse_in_fresh_interpreter(DAGS)
    assert parsed["errors"] == {}
    assert parsed["dags"] == ["hourly_recompute", "late_data_recompute", "tiering"]
    assert parsed["io"] == [] and parsed["heavy"] == [], parsed  # tasks import Tidemark's code when they run

    # The probe itself: a DAG file that talks to ClickHouse at parse time is caught.
    (tmp_path / "chatty.py").write_text(
        (DAGS / "tiering.py")
        .read_text()
        .replace(
            "\n\n@dag(",
            "\nfrom tidemark.io.clickhouse import client\n"
            "from tidemark.config import settings as _s\ntry:\n    client(_s().clickhouse).execute('SELECT 1')\n"
            "except Exception:\n    pass\n\n\n@dag(",
            1,
        )
    )
    chatty = _parse_in_fresh_interpreter(tmp_path)
    assert chatty["dags"] == ["tiering"] and "tidemark.io" in chatty["heavy"]
    assert any(event == "socket.connect" for event, _ in chatty["io"]), chatty


def test_dagbag_imports_every_dag_with_its_policies(airflow_env_vars):
    from airflow.sdk import CronDataIntervalTimetable

    bag = _dagbag()
    assert bag.import_errors == {}
    assert set(bag.dags) == {"hourly_recompute", "late_data_recompute", "tiering"}

    hourly = bag.dags["hourly_recompute"]
    assert isinstance(hourly.timetable, CronDataIntervalTimetable)  # an interval, not a trigger point
    assert hourly.timetable.expression == "0 * * * *"
    assert hourly.catchup is True and hourly.max_active_runs == 2
    assert hourly.start_date == datetime(2026, 11, 1, tzinfo=timezone.utc)
    tasks = {t.task_id: t for t in hourly.tasks}
    assert set(tasks) == {"wait_for_stream", "recompute", "quality_gate", "publish", "detect_anomalies"}
    chain = ["wait_for_stream", "recompute", "quality_gate", "publish", "detect_anomalies"]
    for up, down in itertools.pairwise(chain):
        assert tasks[up].downstream_task_ids == {down}
    assert tasks["recompute"].retries >= 2 and tasks["recompute"].retry_exponential_backoff
    assert tasks["quality_gate"].retries == 0
    assert tasks["wait_for_stream"].mode == "reschedule" and tasks["wait_for_stream"].poke_interval == 30
    assert tasks["recompute"]._conn_id == "spark_default"
    assert "--no-publish" in tasks["recompute"].application_args
    assert [a.uri for a in tasks["publish"].outlets] == ["clickhouse://tidemark/hour_rollups"]

    late = bag.dags["late_data_recompute"]
    assert isinstance(late.timetable, CronDataIntervalTimetable) and late.timetable.expression == "*/15 * * * *"
    assert late.catchup is False and late.max_active_runs == 1
    assert late.params["lookback_hours"] is None  # None: the contract's whole acceptance window
    ids = {t.task_id for t in late.tasks}
    assert ids == {
        "find_due_hours",
        "check_failing_hours",
        "retire_superseded_streams",
        "recompute_hour.recompute",
        "recompute_hour.quality_gate",
        "recompute_hour.publish",
        "recompute_hour.detect_anomalies",
    }
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    assert isinstance(late.task_group_dict["recompute_hour"], MappedTaskGroup)  # one instance per dirty hour
    assert all(t.retries >= 1 for t in late.tasks if not t.task_id.endswith(("quality_gate", "check_failing_hours")))
    assert {t.task_id for t in late.tasks if not t.upstream_task_ids} == {
        "find_due_hours",
        "check_failing_hours",
        "retire_superseded_streams",
    }


def test_spark_default_connection_resolves_to_local_master(airflow_env_vars):
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    from tidemark.config import settings

    hook = SparkSubmitHook(conn_id="spark_default")
    assert hook._connection["master"] == settings().spark.master
    assert hook._connection["spark_binary"] == "spark-submit"
    cmd = hook._build_spark_submit_command("app.py")
    assert cmd[:3] == ["spark-submit", "--master", settings().spark.master]


# -- dag.test() on the real stack ------------------------------------------------------------


def _dag(dag_id):
    bag = _dagbag()
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def test_hourly_recompute_publishes_the_hour(airflow_env_vars, stack, spark):
    cfg = stack
    rows = _raw_rows(HOURLY_H, 10)
    rows += [rows[0], rows[3]]  # duplicates (redelivered events): dedup keeps 10
    _write_hour(spark, cfg, rows, replace_hour=HOURLY_H)
    _stream_caught_up(cfg)

    started = time.monotonic()
    # A manual run's data interval is the cron period ENDING at its logical date.
    run = _dag("hourly_recompute").test(logical_date=HOURLY_H + HOUR)
    print(f"hourly_recompute dag.test: {time.monotonic() - started:.1f}s")

    assert run.data_interval_start == HOURLY_H
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    status, version, dedup_rows, run_id = _latest_registry_row(cfg, HOURLY_H)
    assert (status, run_id) == ("published", run.run_id)
    assert dedup_rows == 10

    from tidemark.batch import registry
    from tidemark.batch.recompute import RunSummary, summary_path

    assert registry.current(cfg, [HOURLY_H])[HOURLY_H].version == version
    summary = RunSummary.read(summary_path(cfg, HOURLY_H, run.run_id))
    assert summary.status == "published" and summary.raw_rows == 12 and summary.passed


def test_hourly_recompute_failed_gate_fails_without_retry_and_publishes_nothing(airflow_env_vars, stack, spark):
    cfg = stack
    rows = _raw_rows(BAD_H, 5)
    bad = list(_raw_rows(BAD_H - 2 * HOUR, 1)[0])
    bad[-2:] = [BAD_H.date(), BAD_H.hour]  # a corrupt writer put an event of 01:00 into the 03:00 partition
    _write_hour(spark, cfg, rows + [tuple(bad)], replace_hour=BAD_H)
    _stream_caught_up(cfg)

    run = _dag("hourly_recompute").test(logical_date=BAD_H + HOUR)

    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert tis["recompute"].state == "success"
    assert tis["quality_gate"].state == "failed" and tis["quality_gate"].try_number == 1  # not retried
    assert tis["publish"].state == "upstream_failed"
    status, _, _, run_id = _latest_registry_row(cfg, BAD_H)
    assert (status, run_id) == ("failed_quality", run.run_id)
    from tidemark.batch import registry

    assert (
        registry.current(cfg, [BAD_H]).get(BAD_H) is None
        or registry.current(cfg, [BAD_H])[BAD_H].published_at < run.start_date
    )


def test_late_data_recompute_republishes_a_dirty_hour(airflow_env_vars, stack, spark):
    from tidemark.batch import registry
    from tidemark.batch.planning import dirty_hours
    from tidemark.batch.recompute import recompute

    cfg = stack
    _write_hour(spark, cfg, _raw_rows(LATE_H, 8), replace_hour=LATE_H)
    first = recompute(spark, cfg, LATE_H, run_id="airflow-test-initial")
    assert first.status == "published", first.reason
    assert first.dedup_rows == 8

    # Three events of LATE_H arrive late: the stream appends them to the lake, which makes the hour dirty.
    _write_hour(spark, cfg, _raw_rows(LATE_H, 3, late=True, start_minute=30))
    assert LATE_H in dirty_hours(cfg, LATE_H, LATE_H + HOUR)

    started = time.monotonic()
    # Interval [LATE_H+1h45, LATE_H+2h); a 3-hour lookback sees only hours this module owns.
    run = _dag("late_data_recompute").test(logical_date=LATE_H + timedelta(hours=2), run_conf={"lookback_hours": 3})
    print(f"late_data_recompute dag.test: {time.monotonic() - started:.1f}s")

    tis = run.get_task_instances()
    assert run.state == "success", {(ti.task_id, ti.map_index): ti.state for ti in tis}
    assert sorted((ti.task_id, ti.map_index) for ti in tis if ti.task_id.startswith("recompute_hour.")) == [
        ("recompute_hour.detect_anomalies", 0),
        ("recompute_hour.publish", 0),
        ("recompute_hour.quality_gate", 0),
        ("recompute_hour.recompute", 0),
    ]
    now = registry.current(cfg, [LATE_H])[LATE_H]
    assert now.version != first.version
    assert now.dedup_rows == 11 > first.dedup_rows
    status, _, dedup_rows, run_id = _latest_registry_row(cfg, LATE_H)
    assert (status, dedup_rows, run_id) == ("published", 11, run.run_id)


# -- the embedded service ----------------------------------------------------------------------


def _request(url, *, data=None, token=None, method=None, timeout=10):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers, method=method or ("POST" if body else "GET"))
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read())


def test_embedded_airflow_starts_runs_a_dag_and_stops_cleanly(airflow_env_vars, stack, tmp_path, monkeypatch):
    """Start `airflow standalone`, log in, list the DAGs, backfill late_data_recompute through the REST
    client the demo uses (tidemark.stack.airflow_api) and the real scheduler + LocalExecutor + execution
    API (against an empty database of its own, so nothing is due and no Spark job starts), then stop
    with SIGINT leaving no process of the group behind."""
    from tidemark.config import load
    from tidemark.io.clickhouse import client
    from tidemark.migrations import migrate
    from tidemark.stack.airflow import Airflow
    from tidemark.stack.airflow_api import AirflowAPI, run_backfill, task_log_file
    from tidemark.stack.process import group_members

    monkeypatch.setenv("TIDEMARK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLICKHOUSE_DATABASE", "tidemark_test_airflow_svc")
    monkeypatch.setenv("TIDEMARK_AIRFLOW_PORT", str(free_port()))
    monkeypatch.setenv("TIDEMARK_AIRFLOW_WORKER_LOG_PORT", str(free_port()))
    monkeypatch.setenv("TIDEMARK_AIRFLOW_TRIGGER_LOG_PORT", str(free_port()))
    cfg = load()
    migrate(cfg)
    svc = Airflow(cfg)
    assert not svc.status().healthy

    started = time.monotonic()
    pgid = None
    try:
        svc.up()
        print(f"airflow standalone healthy after {time.monotonic() - started:.1f}s")
        pgid = os.getpgid(svc.proc.pid())
        assert svc.status().healthy

        api = AirflowAPI.embedded(cfg)
        for dag_id in ("hourly_recompute", "late_data_recompute", "tiering"):
            api.wait_for_dag(dag_id, timeout_s=90)  # the dag-processor parses the folder shortly after start
        print(f"every DAG listed after {time.monotonic() - started:.1f}s")
        _, body = _request(f"{svc.address}/api/v2/dags", token=api.token())
        assert all(d["is_paused"] for d in body["dags"])  # nothing catches up until someone unpauses

        # What the demo does for hourly_recompute, on a DAG that starts no Spark job here: a backfill of
        # one interval through the REST API, unpause, wait. (An empty database: nothing is due.)
        interval = datetime(2026, 11, 1, tzinfo=timezone.utc)
        asked = datetime.now(timezone.utc)
        lines = []
        runs = run_backfill(
            "late_data_recompute", interval, interval, 1, cfg=cfg, api=api, timeout_s=150, say=lines.append
        )
        api.set_paused("late_data_recompute", True)
        print("\n".join(lines))
        print(f"late_data_recompute backfill done after {time.monotonic() - started:.1f}s")
        assert [(r.hour, r.state) for r in runs] == [(interval, "success")]
        assert api.dag("late_data_recompute")["is_paused"] is True
        # True durations: the run started when the scheduler took it, not at its (2026-11-01) logical date.
        assert asked - timedelta(seconds=5) <= runs[0].start_date <= runs[0].end_date <= datetime.now(timezone.utc)
        assert 0 < runs[0].seconds < 150
        assert any("unpaused" in line for line in lines) and "success" in lines[-1]
        tis = {t["task_id"]: t for t in api.task_instances(runs[0])}
        assert tis["find_due_hours"]["state"] == "success"
        task_log = task_log_file(cfg, "late_data_recompute", runs[0].run_id, tis["find_due_hours"])
        # The services log at WARNING; task logs (what the UI shows) keep their INFO lines.
        assert "Returned value was" in task_log.read_text()
    finally:
        stop_started = time.monotonic()
        was_running = svc.down()
        stopped_in = time.monotonic() - stop_started
        print(f"airflow standalone stopped (SIGINT) in {stopped_in:.1f}s")
        client(cfg.clickhouse, database="default").execute("DROP DATABASE IF EXISTS tidemark_test_airflow_svc")

    assert was_running and pgid is not None
    assert group_members(pgid) == []
    # SIGINT first and nothing left: asserted on what stop() did, not on a clock (escalation is allowed
    # on a loaded machine; test_stack_lifecycle checks that SIGINT is not ignored, the real regression).
    report = svc.proc.last_stop
    assert report.signals[0] == "SIGINT" and not report.survivors, (report, svc.proc.log_tail(40))
    assert svc.proc.pid() is None and not svc.status().healthy
