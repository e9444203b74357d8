"""The Dagster deployment as the workflow service: job names are task types, runs are task runs."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry

from dagster_project.sensors import long_running_tasks_sensor
from faultline.durations import baselines_from_moments
from resources.alert_sinks import AlertSinks
from resources.alert_store import AlertStore
from resources.workflow import DagsterRunsWorkflowService


@dg.op
def export_rows() -> None:
    time.sleep(0.02)


@dg.job
def nightly_export() -> None:
    export_rows()


def start_run_at(instance: dg.DagsterInstance, started: float) -> str:
    """A run of nightly_export that the instance sees as started at `started` and still going."""
    run = instance.create_run_for_job(job_def=nightly_export)
    event = DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name="nightly_export")
    instance.handle_new_event(
        EventLogEntry(
            error_info=None,
            level="DEBUG",
            user_message="",
            run_id=run.run_id,
            timestamp=started,
            dagster_event=event,
        )
    )
    return run.run_id


@pytest.fixture
def workflow(instance):
    for _ in range(6):
        assert nightly_export.execute_in_process(instance=instance).success
    with dg.build_resources({"workflow": DagsterRunsWorkflowService()}, instance=instance) as built:
        yield built.workflow


def window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(days=1), now + timedelta(minutes=1)


def test_successful_runs_are_read_with_their_job_name_and_duration(instance, workflow):
    runs = workflow.successful_runs(*window())
    records = {r.dagster_run.run_id: r for r in instance.get_run_records()}
    assert len(runs) == 6 and set(runs["task_type"]) == {"nightly_export"}
    for row in runs.itertuples():
        record = records[row.run_id]
        assert row.duration_s == pytest.approx(record.end_time - record.start_time)
    moments = workflow.duration_moments(*window())
    assert moments["n_runs"].tolist() == [6]
    assert moments["mean_s"].iloc[0] == pytest.approx(runs["duration_s"].mean())


def test_only_runs_that_ended_in_the_window_are_read(instance, workflow):
    """The window is [start, end) of run ends: it starts between the 1st and 2nd of the six runs'
    ends and ends between the 4th and 5th, so it holds the 2nd, 3rd and 4th runs only."""
    records = sorted(instance.get_run_records(), key=lambda record: record.end_time)
    ends = [record.end_time for record in records]
    start = datetime.fromtimestamp((ends[0] + ends[1]) / 2, UTC)
    end = datetime.fromtimestamp((ends[3] + ends[4]) / 2, UTC)
    inside = [record.dagster_run.run_id for record in records[1:4]]
    assert sorted(workflow.successful_runs(start, end)["run_id"]) == sorted(inside)
    assert workflow.duration_moments(start, end)["n_runs"].tolist() == [3]
    after = [record.dagster_run.run_id for record in records[4:]]
    assert sorted(workflow.successful_runs(end, end + timedelta(days=1))["run_id"]) == sorted(after)


def test_runs_in_progress_are_the_running_tasks(instance, workflow):
    run_id = start_run_at(instance, time.time() - 7200)
    running, rejected = workflow.running_tasks(datetime.now(UTC))
    assert running["run_id"].tolist() == [run_id]
    assert running["task_type"].tolist() == ["nightly_export"]
    assert rejected.empty


def test_the_sensor_flags_a_dagster_job_running_past_its_learned_limit(instance, workflow, tmp_path: Path):
    stuck = start_run_at(instance, time.time() - 7200)
    alert_store = AlertStore(url=f"sqlite:///{tmp_path / 'alerts.db'}")
    limits = baselines_from_moments(workflow.duration_moments(*window()))
    alert_store.save_baselines(datetime.now(UTC), limits)
    context = dg.build_sensor_context(
        instance=instance,
        resources={
            "workflow": DagsterRunsWorkflowService(),
            "alert_store": alert_store,
            "alert_sinks": AlertSinks(),
        },
    )
    result = long_running_tasks_sensor(context)
    assert result.asset_events[0].metadata["new_alerts"].value == 1
    assert alert_store.alerts()["run_id"].tolist() == [stuck]
