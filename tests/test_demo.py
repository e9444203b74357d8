"""The demo: two weeks of a deployment, backfilled and ticked through the instance `make dev` opens, and
it writes only its own embedded store and instance, whatever the environment names."""

import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster import DagsterInstance
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.instance.ref import InstanceRef
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_NAME_TAG

from assets.settings import Settings
from assets.task_durations import OVER_LIMIT_CHECK
from dagster_project.demo import (
    BACKTEST_JOB,
    BASELINES_JOB,
    CHART_JOB,
    CI_FOLDER,
    DEMO_CI_DAYS,
    DEMO_CI_FAILURES_PER_DAY,
    DEMO_DAYS,
    DEMO_INSTANCE,
    DEMO_MARKER_TABLE,
    ERROR_CLUSTERS_JOB,
    SENSOR,
    START_DATE_FILE,
    _replace_dagster_home,
    demo_days,
    demo_definitions,
    run_demo,
)
from faultline.demo_data.ci_failures import generate_ci_jobs
from resources.alert_store import AlertStore
from tests.conftest import FIXED_NOW

FIRST_DAY = demo_days(FIXED_NOW)[0]
# A small demo: three days (two to spread over the two processes, then the newest), fewer events.
SMALL_DEMO_DAYS = 3


def test_the_demo_days_are_the_partitions_of_its_definitions(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("FAULTLINE_DATA_DIR", str(tmp_path))
    days = demo_days(FIXED_NOW)
    assert len(days) == DEMO_DAYS == 14
    assert (days[0], days[-1]) == ("2026-11-08", "2026-11-21")  # FIXED_NOW is 2026-11-22 06:00 UTC
    partitions = demo_definitions(days[0]).resolve_job_def(ERROR_CLUSTERS_JOB).partitions_def
    assert partitions.get_partition_keys(current_time=FIXED_NOW) == days


def test_the_demo_never_writes_to_a_real_store_nor_alerts_a_real_sink(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setenv("FAULTLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FAULTLINE_EVENTS_DB_URL", "postgresql://prod@db/events")
    monkeypatch.setenv("FAULTLINE_WORKFLOW_DB_URL", "postgresql://prod@db/airflow")
    monkeypatch.setenv("FAULTLINE_WORKFLOW_SOURCE", "dagster")
    monkeypatch.setenv("FAULTLINE_ALERT_WEBHOOK_URL", "https://hooks.example.com/real")
    monkeypatch.setenv("FAULTLINE_SLACK_TOKEN", "xoxb-real")
    demo_definitions(FIRST_DAY)  # a first demo: its store is marked as the demo's
    resources = demo_definitions(FIRST_DAY).resources
    demo_store = f"sqlite:///{tmp_path / 'faultline.db'}"
    assert resources["event_store"].url == demo_store
    assert resources["workflow"].url == demo_store and resources["alert_store"].url == demo_store
    assert resources["alert_sinks"].sink_names() == []
    out = capsys.readouterr().out
    assert "FAULTLINE_EVENTS_DB_URL is set; the demo ignores it" in out
    assert "FAULTLINE_SLACK_TOKEN is set; the demo ignores it" in out


@pytest.mark.parametrize("content", [b"", b"not a database", None])
def test_the_demo_never_deletes_a_store_it_did_not_create(monkeypatch, tmp_path: Path, content):
    monkeypatch.setenv("FAULTLINE_DATA_DIR", str(tmp_path))
    store = tmp_path / "faultline.db"
    if content is None:  # a real store: faultline's own tables, written by the product
        AlertStore(url=f"sqlite:///{store}").alerts()
    else:
        store.write_bytes(content)
    before = store.read_bytes()
    with pytest.raises(SystemExit, match="holds data the demo did not create"):
        demo_definitions(FIRST_DAY)
    assert store.read_bytes() == before


def test_the_demo_replaces_its_own_store(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("FAULTLINE_DATA_DIR", str(tmp_path))
    demo_definitions(FIRST_DAY)
    store = tmp_path / "faultline.db"
    AlertStore(url=f"sqlite:///{store}").alerts()  # the demo writes its tables into it
    demo_definitions(FIRST_DAY)
    with sqlite3.connect(store) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {DEMO_MARKER_TABLE}


def test_the_demo_replaces_its_own_instance_and_never_another(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("FAULTLINE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "left by make dev before any demo").touch()  # an instance with no dagster.yaml
    _replace_dagster_home(FIRST_DAY)
    assert not (home / "left by make dev before any demo").exists()
    (home / "left by the last demo").touch()
    _replace_dagster_home(FIRST_DAY)
    assert not (home / "left by the last demo").exists()
    assert (home / "dagster.yaml").read_text() == DEMO_INSTANCE
    assert os.environ["DAGSTER_HOME"] == str(home)
    assert (tmp_path / START_DATE_FILE).read_text().strip() == FIRST_DAY

    (home / "dagster.yaml").write_text("run_launcher:\n  module: somewhere.else\n")
    with pytest.raises(SystemExit, match="holds a Dagster instance the demo did not create"):
        _replace_dagster_home(FIRST_DAY)
    assert (home / "dagster.yaml").read_text() == "run_launcher:\n  module: somewhere.else\n"


@contextmanager
def _terminal_to(path: Path) -> Iterator[None]:
    """What the terminal would show, this process's and its children's, written to `path` instead."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a", buffering=1, encoding="utf-8") as terminal:
        os.dup2(terminal.fileno(), 1)
        os.dup2(terminal.fileno(), 2)
        try:
            with redirect_stdout(terminal), redirect_stderr(terminal):
                yield
        finally:
            for fd, original in zip((1, 2), saved, strict=True):
                os.dup2(original, fd)
                os.close(original)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Iterator[tuple[Path, list[str], str, dg.DagsterInstance]]:
    """A whole demo of three days in a folder of its own: the folder, the days, what the terminal
    showed and the demo's instance. The environment is as it was after."""
    folder = tmp_path_factory.mktemp("demo")
    terminal = folder / "terminal.txt"
    today = datetime.now(UTC)  # the sensor ticks on the real clock, so the demo's days are today's
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAULTLINE_DATA_DIR", str(folder))
        # The demo sets DAGSTER_HOME and the code location's settings: each is put back as it was.
        for name in ["DAGSTER_HOME", *(setting.metadata["env"] for setting in fields(Settings))]:
            patch.delenv(name, raising=False)
        with _terminal_to(terminal):
            run_demo(today=today, days=SMALL_DEMO_DAYS, n_error_events=3_000)
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(folder / "dagster_home"))) as instance:
        yield folder, demo_days(today, SMALL_DEMO_DAYS), terminal.read_text(encoding="utf-8"), instance


def test_the_demo_backfills_every_day_of_both_jobs_through_its_instance(small_demo):
    folder, days, _, instance = small_demo
    backfills = {backfill.job_name: backfill for backfill in instance.get_backfills()}
    assert set(backfills) == {ERROR_CLUSTERS_JOB, BASELINES_JOB}
    for job_name, backfill in backfills.items():
        assert backfill.status is BulkActionStatus.COMPLETED_SUCCESS
        assert list(backfill.partition_names) == days
        # Recorded against the code location `make dev` loads, so the UI finds its partition set.
        assert (
            backfill.partition_set_origin.repository_origin.code_location_origin.location_name == "faultline"
        )
        runs = instance.get_runs(RunsFilter(tags={BACKFILL_ID_TAG: backfill.backfill_id}))
        assert sorted(run.tags[PARTITION_NAME_TAG] for run in runs) == days
        assert {run.job_name for run in runs} == {job_name}
        assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
    for asset in ("error_cluster_report", "task_duration_baselines"):
        key = dg.AssetKey(asset)
        assert instance.get_materialized_partitions(key) == set(days)
        # The newest day ran last: the UI's latest materialization is the newest day's.
        assert instance.get_latest_materialization_event(key).dagster_event.partition == days[-1]
    assert (folder / START_DATE_FILE).read_text().strip() == days[0]


def test_every_run_of_the_demo_is_of_a_named_job(small_demo):
    _, days, _, instance = small_demo
    runs = instance.get_runs()
    assert sorted(run.job_name for run in runs) == sorted(
        [ERROR_CLUSTERS_JOB] * len(days) + [BASELINES_JOB] * len(days) + [BACKTEST_JOB, CHART_JOB]
    )
    assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}


def test_the_demo_ticks_the_sensor_through_its_instance(small_demo):
    folder, _, _, instance = small_demo
    alerts = AlertStore(url=f"sqlite:///{folder / 'faultline.db'}").alerts()
    assert len(alerts) == 6
    (state,) = [
        state
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        if state.instigator_name == SENSOR
    ]
    (tick,) = instance.get_ticks(state.instigator_origin_id, state.selector_id)
    # A tick that requests no run is "skipped" to Dagster; its result says what it found, naming
    # the first three tasks over their limit.
    assert tick.status is TickStatus.SKIPPED
    assert tick.skip_reason.startswith("Alerted: 6 running tasks past their limit")
    assert sum(f"run {run_id} " in tick.skip_reason for run_id in alerts["run_id"]) == 3
    assert tick.skip_reason.endswith("; and 3 more.")

    # What the tick reported is in the event log: its alerts, observed on the limits' asset, and
    # the evaluation of the limits' check, with every task over its limit.
    (observation,) = instance.fetch_observations(dg.AssetKey("task_duration_baselines"), limit=10).records
    observed = " ".join(str(value.value) for value in observation.asset_observation.metadata.values())
    assert all(run_id in observed for run_id in alerts["run_id"])
    check_key = dg.AssetCheckKey(dg.AssetKey("task_duration_baselines"), OVER_LIMIT_CHECK)
    (evaluation,) = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=10)
    checked = evaluation.event.dagster_event.event_specific_data
    assert not checked.passed
    (table,) = [value for value in checked.metadata.values() if isinstance(value, dg.TableMetadataValue)]
    assert sorted(record.data["run_id"] for record in table.records) == sorted(alerts["run_id"])


def test_the_demo_groups_its_second_store_the_ci_jobs_json_lines_files_every_failed_job_counted(small_demo):
    folder, days, terminal, _ = small_demo
    assert "The second store, a CI system's failed jobs as JSON-lines files" in terminal
    end = datetime.strptime(days[-1], "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)
    ci_days = days[-DEMO_CI_DAYS:]
    lines = generate_ci_jobs(end, days=len(ci_days), n_failures=DEMO_CI_FAILURES_PER_DAY * len(ci_days))
    for day in ci_days:
        records = []
        for line in lines[day]:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a runner killed mid-write: quarantined, not an error event
        report = json.loads((folder / CI_FOLDER / "reports" / f"error_clusters_{day}.json").read_text())
        failed = sum(record["conclusion"] == "failure" for record in records)
        assert report["n_events"] == failed > 100


def test_the_demo_prints_each_alert_once_with_the_report_and_the_backtest(small_demo):
    folder, days, terminal, _ = small_demo
    alerts = AlertStore(url=f"sqlite:///{folder / 'faultline.db'}").alerts()
    assert len(alerts) == 6
    for run_id in alerts["run_id"]:
        assert terminal.count(run_id) == 1, terminal
    assert "The demo planted 6 stuck runs: 6 flagged, 0 missed, 0 flagged that were not planted." in terminal
    assert f"\n{days[-1]}: " in terminal  # the newest day's report
    assert f"Error groups across the {len(days)} days, what changed" in terminal
    assert "Backtest at the sensor's 10-minute cadence" in terminal and "log_mad" in terminal
