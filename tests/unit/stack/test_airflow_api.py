"""The batch-run client's decisions, against a stand-in for the REST API (the real API server and
scheduler are exercised by tests/integration/orchestration/test_dags.py::test_embedded_airflow_...): it refuses
to unpause a DAG whose catchup would start before the asked hours, and a failed run is reported by
name with its failed tasks' log files."""

from datetime import datetime, timezone

import pytest

from tidemark.config import load
from tidemark.stack.airflow_api import AirflowAPIError, Run, run_hours

H1 = datetime(2026, 12, 1, 18, tzinfo=timezone.utc)
H2 = datetime(2026, 12, 1, 19, tzinfo=timezone.utc)


class StandInAPI:
    base_url = "http://127.0.0.1:1"

    def __init__(self, start: datetime, states: dict[datetime, str]):
        self.start, self.states, self.calls = start, states, []

    def wait_for_dag(self, dag_id):
        return {"start_date": self.start.isoformat(), "is_paused": True, "catchup": True}

    def create_backfill(self, dag_id, first, last):
        self.calls.append(("backfill", first, last))
        return {"id": 7}

    def set_paused(self, dag_id, paused):
        self.calls.append(("paused", paused))

    def runs(self, dag_id, first, last):
        return [Run(dag_id, f"backfill__{h:%H}", h, state, h, h) for h, state in self.states.items()]

    def task_instances(self, run):
        return [
            {"task_id": "recompute", "state": "success", "map_index": -1, "try_number": 1},
            {
                "task_id": "quality_gate",
                "state": "failed" if run.state == "failed" else "success",
                "map_index": -1,
                "try_number": 1,
            },
        ]


def test_backfills_unpauses_and_returns_the_runs():
    api = StandInAPI(H1, {H1: "success", H2: "success"})
    lines = []
    runs = run_hours([H2, H1], cfg=load(), api=api, say=lines.append)
    assert [r.hour for r in runs] == [H1, H2]
    assert api.calls == [("backfill", H1, H2), ("paused", False)]
    assert "success" in lines[-1] and any("unpaused" in line for line in lines)


def test_refuses_to_unpause_when_catchup_would_start_before_the_hours():
    api = StandInAPI(datetime(2026, 11, 1, tzinfo=timezone.utc), {})
    with pytest.raises(AirflowAPIError, match="TIDEMARK_BATCH_START"):
        run_hours([H1, H2], cfg=load(), api=api, say=lambda _: None)
    assert api.calls == []  # no backfill, nothing unpaused


def test_a_failed_run_is_named_with_its_failed_tasks_log():
    api = StandInAPI(H1, {H1: "success", H2: "failed"})
    with pytest.raises(AirflowAPIError) as err:
        run_hours([H1, H2], cfg=load(), api=api, say=lambda _: None)
    text = str(err.value)
    assert "run backfill__19 (hour 2026-12-01T19) failed" in text
    assert "quality_gate: " in text and "run_id=backfill__19/task_id=quality_gate/attempt=1.log" in text
    assert "backfill__18" not in text
