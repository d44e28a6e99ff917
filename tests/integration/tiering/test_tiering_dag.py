"""The tiering DAG: it parses with its policies, and dag.test() runs it end to end (spark-submit
included) on the real stack, over synthetic data of its own database and lake."""

import itertools
import time
from datetime import timedelta

from support.tiering import (
    INTERVAL_END,
    all_hours,
    drop_database,
    events,
    fresh_database,
    lake_counts,
    minute_partitions,
    write_lake,
    write_rollups,
)

from tidemark.config import PROJECT_ROOT

DAGS = PROJECT_ROOT / "dags"


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags["tiering"]


def test_tiering_dag_parses_daily_with_one_chain(airflow_env_vars):
    from airflow.sdk import CronDataIntervalTimetable

    dag = _dag()
    assert isinstance(dag.timetable, CronDataIntervalTimetable) and dag.timetable.expression == "0 0 * * *"
    assert dag.catchup is False and dag.max_active_runs == 1
    tasks = {t.task_id: t for t in dag.tasks}
    chain = ["measure_before", "clickhouse_care", "hot_tier", "lake_maintenance", "report"]
    assert set(tasks) == set(chain)
    for up, down in itertools.pairwise(chain):
        assert down in tasks[up].downstream_task_ids
    assert tasks["lake_maintenance"].application.endswith("jobs/tiering.py")
    assert tasks["report"].retries == 0 and tasks["hot_tier"].retries >= 1


def test_tiering_dag_runs_end_to_end(airflow_env_vars, stack, spark, tmp_path, monkeypatch):
    from tidemark.config import settings
    from tidemark.io.clickhouse import client

    lake = tmp_path / "lake"
    env = {
        "TIDEMARK_LAKE_ROOT": str(lake),
        "TIDEMARK_COLD_ROOT": str(lake),
        "CLICKHOUSE_DATABASE": f"{stack.clickhouse.database}_tiering_dag",
        "TIDEMARK_HOT_DAYS": "7",
        "TIDEMARK_LAKE_HOT_DAYS": "12",
        "TIDEMARK_RETENTION_DAYS": "11",
        "TIDEMARK_HOT_HORIZON_GRACE_S": "0",  # no API reads this database: drop without waiting
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings.cache_clear()  # the tasks run in this process and read settings() from the environment
    try:
        cfg = settings()
        fresh_database(cfg)
        raw = events(all_hours(), 6, seed="dag")
        write_rollups(cfg, raw, write_lake(spark, cfg, raw, appends=2))
        original = lake_counts(spark, cfg.lake.events_raw)

        started = time.monotonic()
        run = _dag().test(logical_date=INTERVAL_END)  # a manual run's interval ends at its logical date
        print(f"tiering dag.test: {time.monotonic() - started:.1f}s")
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert run.state == "success", states
        assert run.data_interval_end == INTERVAL_END

        assert minute_partitions(cfg) == [
            (INTERVAL_END - timedelta(days=d)).strftime("%Y%m%d") for d in range(7, 0, -1)
        ]
        hot, cold = lake_counts(spark, cfg.lake.events_raw), lake_counts(spark, cfg.tiering.cold_path)
        assert len(cold) == 2 and {**hot, **cold} == original
        phases = client(cfg.clickhouse).execute(
            f"SELECT DISTINCT phase FROM {cfg.clickhouse.database}.tiering_reports WHERE run_id = %(r)s",
            {"r": run.run_id},
        )
        assert sorted(p for (p,) in phases) == ["after", "before"]
    finally:
        drop_database(settings())
        settings.cache_clear()
