"""A source that is down or drops the connection mid-read: retried, then a failure that names it.

The databases are taken away for real: a TCP proxy in front of the test PostgreSQL closes its port
or cuts each connection mid-result (PostgresProxy in conftest). Every URL carries a password, which
must show up in no error, event, log or file.
"""

import random
import traceback
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from conftest import DEMO_DAY, DEMO_END

from assets import error_clusters
from assets.error_clusters import deployment_events_dump
from assets.task_durations import task_duration_baselines
from dagster_project.sensors import build_long_running_tasks_sensor
from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.demo_data.task_runs import generate_task_runs
from faultline.durations import baselines_from_durations, screen_task_runs, trailing_durations
from resources import sql
from resources.alert_sinks import AlertSinks
from resources.alert_store import AlertStore
from resources.error_sources import ErrorEventFormat
from resources.event_store import DeploymentEventStore
from resources.part_store import PartStore
from resources.report_store import ReportStore
from resources.sql import SourceUnavailableError
from resources.workflow import SqlWorkflowService

PASSWORD = "Pw-7f3c9e1b-do-not-print"
NOW = pd.Timestamp("2026-11-22 13:45:10", tz="UTC")
TODAY = NOW.floor("D")
YESTERDAY = (TODAY - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
# Retries a hundredth of a second apart, not the production 30 s, 90 s and 210 s.
FAST = {"outage_retry_delay_s": 0.01}
long_running_tasks_sensor = build_long_running_tasks_sensor(clock=NOW.to_pydatetime)
# Well past the connection's start-up and well short of a day's dump (about 200 kB below).
CUT_AFTER_BYTES = 16_384
ERROR_CLUSTER_ASSETS = dg.load_assets_from_modules([error_clusters])


def events_in_postgres(url: str) -> list[dict]:
    rows = generate_deployment_batches(end=DEMO_END, days=1, n_error_events=200, seed=11)
    store = DeploymentEventStore(url=url)
    store.create_table()
    store.write_batches(rows)
    return rows


def retries_of(result) -> int:
    return sum(1 for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY)


def failure_text(result) -> str:
    """The failed step's error as Dagster keeps it, causes included."""
    (failure,) = [
        event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    return failure.event_specific_data.error.to_string()


def assert_password_nowhere(instance: dg.DagsterInstance, *texts: str) -> None:
    """Not in the given texts, in any event the instance logged, nor in any file it wrote."""
    for text in texts:
        assert PASSWORD not in text
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            assert PASSWORD not in dg.serialize_value(entry)
        assert PASSWORD not in dg.serialize_value(run)
    home = Path(instance.root_directory)
    holding = [path for path in home.rglob("*") if path.is_file() and PASSWORD.encode() in path.read_bytes()]
    assert holding == []


def materialize_dump(instance: dg.DagsterInstance, url: str):
    """The demo day's dump from the events store at `url`, failures returned, not raised."""
    return dg.materialize(
        [deployment_events_dump],
        instance=instance,
        partition_key=DEMO_DAY,
        resources={
            "event_store": DeploymentEventStore(url=url, **FAST),
            "error_format": ErrorEventFormat(),
            "part_store": PartStore(),
        },
        raise_on_error=False,
    )


def assert_cut_four_times_then_failed(result, proxy, source: str, url: str, instance, capfd) -> None:
    """A first attempt and three retries, each cut mid-read; then a failure naming the source and the
    cause, nothing materialized, and the URL's password nowhere."""
    assert not result.success
    assert retries_of(result) == 3
    assert len(proxy.cuts) == 4
    message = failure_text(result)
    assert (
        f"SourceUnavailableError: {source} at {url.replace(PASSWORD, '***')} could not be read: "
        "server closed the connection unexpectedly" in message
    )
    assert result.get_asset_materialization_events() == []
    captured = capfd.readouterr()
    assert_password_nowhere(instance, message, captured.out, captured.err)


def test_outage_retries_back_off_exponentially_with_jitter():
    store = DeploymentEventStore(url="sqlite://", outage_retries=3, outage_retry_delay_s=30.0)
    draws = random.Random(7)
    waits = [[store.outage_retry_wait_s(n, draws) for _ in range(200)] for n in range(3)]
    # Retry n waits 30 x (2^n - 1) s, +- 30 s.
    for n, centre in enumerate((30.0, 90.0, 210.0)):
        assert centre - 30 <= min(waits[n]) < centre - 20 and centre + 20 < max(waits[n]) <= centre + 30
    with pytest.raises(ValueError, match="outage_retry_delay_s"):
        DeploymentEventStore(url="sqlite://", outage_retry_delay_s=float("nan"))


def test_a_missing_table_fails_at_once_naming_the_setting_and_is_not_retried(instance, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    DeploymentEventStore(url=url).create_table()
    result = dg.materialize(
        [deployment_events_dump],
        instance=instance,
        partition_key=DEMO_DAY,
        resources={
            "event_store": DeploymentEventStore(url=url, table="deploy_events", **FAST),
            "error_format": ErrorEventFormat(),
            "part_store": PartStore(),
        },
        raise_on_error=False,
    )
    assert not result.success and retries_of(result) == 0
    assert (
        f"SourceConfigurationError: deployment-events store at {url} is not as configured: no such table: "
        "deploy_events; check FAULTLINE_EVENTS_DB_URL and the store's `table`" in failure_text(result)
    )


def test_a_workflow_table_without_a_configured_column_fails_at_once(instance, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    SqlWorkflowService(url=url).write_runs(generate_task_runs(NOW, days=2, n_task_types=6, seed=5).runs)
    result = dg.materialize(
        [task_duration_baselines],
        instance=instance,
        partition_key=YESTERDAY,
        resources={
            "workflow": SqlWorkflowService(url=url, ended_at_column="end_date", **FAST),
            "alert_store": AlertStore(url=url),
        },
        raise_on_error=False,
    )
    assert not result.success and retries_of(result) == 0
    assert "table 'task_runs' has no column 'end_date'; set `ended_at_column`" in failure_text(result)


def test_a_dump_cut_mid_read_is_retried_then_fails_naming_the_store_and_the_cause(
    instance, report_store, postgres_url, postgres_proxy, capfd
):
    events_in_postgres(postgres_url)
    postgres_proxy.cut_after_bytes = CUT_AFTER_BYTES
    url = postgres_proxy.url(postgres_url, PASSWORD)
    result = materialize_dump(instance, url)
    assert_cut_four_times_then_failed(result, postgres_proxy, "deployment-events store", url, instance, capfd)
    # Each cut while the day's rows were coming back.
    assert all(b"FROM deployment_events" in sent for sent in postgres_proxy.cuts)


def test_an_unreachable_events_store_is_retried_then_fails_naming_it_without_its_password(
    instance, postgres_url, postgres_proxy, capfd
):
    events_in_postgres(postgres_url)
    postgres_proxy.stop()  # nothing listens on its port any more
    url = postgres_proxy.url(postgres_url, PASSWORD)
    result = materialize_dump(instance, url)
    assert not result.success
    assert retries_of(result) == 3
    message = failure_text(result)
    assert f"SourceUnavailableError: deployment-events store at {url.replace(PASSWORD, '***')} could not" in (
        message
    )
    assert "Connection refused" in message
    assert result.get_asset_materialization_events() == []
    captured = capfd.readouterr()
    assert_password_nowhere(instance, message, captured.out, captured.err)


def test_a_database_that_never_answers_fails_after_the_connect_timeout_not_the_systems_minutes(
    postgres_url, postgres_proxy, monkeypatch
):
    monkeypatch.setattr(sql, "CONNECT_TIMEOUT_S", 2)  # libpq's smallest; the default is 10 s
    postgres_proxy.hang = True  # accepts the connection, never answers
    store = DeploymentEventStore(url=postgres_proxy.url(postgres_url, PASSWORD))
    with pytest.raises(SourceUnavailableError) as raised:
        store.read_batches(DEMO_END - pd.Timedelta(days=1), DEMO_END)
    shown_url = postgres_proxy.url(postgres_url).replace("postgres@", "postgres:***@")
    assert str(raised.value) == (
        f"deployment-events store at {shown_url} could not be read: "
        f'connection to server at "127.0.0.1", port {postgres_proxy.port} failed: timeout expired'
    )


def test_rerunning_the_day_after_the_store_recovers_gives_the_undisturbed_result(
    instance, tmp_path: Path, postgres_url, postgres_proxy
):
    rows = events_in_postgres(postgres_url)
    undisturbed_reports = ReportStore(directory=str(tmp_path / "undisturbed"))
    rerun_reports = ReportStore(directory=str(tmp_path / "rerun"))

    def run_day(url: str, reports: ReportStore) -> dict:
        result = dg.materialize(
            ERROR_CLUSTER_ASSETS,
            instance=instance,
            partition_key=DEMO_DAY,
            resources={
                "event_store": DeploymentEventStore(url=url, **FAST),
                "error_format": ErrorEventFormat(),
                "report_store": reports,
                "part_store": PartStore(),
            },
            raise_on_error=False,
        )
        if not result.success:
            return {"success": False, "materialized": len(result.get_asset_materialization_events())}
        # Read now: the next run of the same partition overwrites the stored values.
        return {
            "success": True,
            "deployment_events_dump": result.asset_value("deployment_events_dump").to_frame(),
            "error_clusters": result.asset_value("error_clusters").events,
            "report": result.asset_value("error_cluster_report"),
        }

    undisturbed = run_day(postgres_url, undisturbed_reports)
    proxied = postgres_proxy.url(postgres_url, PASSWORD)
    postgres_proxy.cut_after_bytes = CUT_AFTER_BYTES
    assert run_day(proxied, rerun_reports) == {"success": False, "materialized": 0}
    postgres_proxy.cut_after_bytes = None
    rerun = run_day(proxied, rerun_reports)
    assert rerun["success"]

    batches_of_the_day = sum(1 for row in rows if row["created_at"].strftime("%Y-%m-%d") == DEMO_DAY)
    assert len(undisturbed["deployment_events_dump"]) == batches_of_the_day > 50
    pd.testing.assert_frame_equal(rerun["deployment_events_dump"], undisturbed["deployment_events_dump"])
    pd.testing.assert_frame_equal(rerun["error_clusters"], undisturbed["error_clusters"])
    assert undisturbed["report"].n_events == 200 and undisturbed["report"].n_clusters > 5
    assert (rerun["report"].n_events, rerun["report"].n_clusters) == (
        undisturbed["report"].n_events,
        undisturbed["report"].n_clusters,
    )
    pd.testing.assert_frame_equal(rerun["report"].groups, undisturbed["report"].groups)
    name = f"error_clusters_{DEMO_DAY}.md"
    assert (tmp_path / "rerun" / name).read_text() == (tmp_path / "undisturbed" / name).read_text()


def task_runs_in_postgres(url: str, now: pd.Timestamp):
    """Fifteen days of 8 task types, 6 of their runs stuck past their limit at `now`."""
    demo_runs = generate_task_runs(now, days=15, n_task_types=8, seed=5)
    SqlWorkflowService(url=url).write_runs(demo_runs.runs)
    return demo_runs


def test_an_unreachable_workflow_database_is_retried_then_fails_without_printing_its_password(
    instance, postgres_databases, postgres_proxy, capfd, caplog
):
    workflow_url, alerts_url = postgres_databases(), postgres_databases()
    task_runs_in_postgres(workflow_url, NOW)
    resources = {"alert_store": AlertStore(url=alerts_url)}
    undisturbed = dg.materialize(
        [task_duration_baselines],
        instance=instance,
        partition_key=YESTERDAY,
        resources={**resources, "workflow": SqlWorkflowService(url=workflow_url)},
    ).asset_value("task_duration_baselines")

    postgres_proxy.stop()  # nothing listens on its port any more
    proxied = {
        **resources,
        "workflow": SqlWorkflowService(url=postgres_proxy.url(workflow_url, PASSWORD), **FAST),
    }
    # Retries spent, the last attempt's error is raised.
    with pytest.raises(SourceUnavailableError) as raised:
        dg.materialize(
            [task_duration_baselines], instance=instance, partition_key=YESTERDAY, resources=proxied
        )
    error = "".join(traceback.format_exception(raised.value))
    assert (
        f"workflow database at postgresql+psycopg2://postgres:***@127.0.0.1:{postgres_proxy.port}/" in error
    )
    assert "Connection refused" in error
    (failed_run,) = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    step_failure = instance.all_logs(failed_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert (
        "could not be read: connection to server at"
        in step_failure[0].dagster_event.event_specific_data.error.to_string()
    )
    retried = instance.all_logs(failed_run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retried) == 3
    run_failure = instance.all_logs(failed_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    captured = capfd.readouterr()
    assert_password_nowhere(instance, error, run_failure[0].message, captured.out, captured.err, caplog.text)

    # The database is back on the same address: the rerun learns exactly the undisturbed limits.
    postgres_proxy.start()
    rerun = dg.materialize(
        [task_duration_baselines], instance=instance, partition_key=YESTERDAY, resources=proxied
    ).asset_value("task_duration_baselines")
    assert int(undisturbed["has_limit"].sum()) == len(undisturbed) == 8
    pd.testing.assert_frame_equal(rerun, undisturbed)
    as_of, saved = AlertStore(url=alerts_url).latest_baselines()
    assert as_of == TODAY.to_pydatetime() and len(saved) == 8


def test_a_task_runs_read_cut_mid_result_is_retried_then_fails_and_the_rerun_learns_the_same_limits(
    instance, postgres_databases, postgres_proxy, capfd
):
    workflow_url, alerts_url = postgres_databases(), postgres_databases()
    now = NOW
    # Enough task types that their aggregates come back in more than one read of the socket.
    SqlWorkflowService(url=workflow_url).write_runs(
        generate_task_runs(now, days=15, n_task_types=100, seed=5).runs
    )

    def learn(url: str):
        return dg.materialize(
            [task_duration_baselines],
            instance=instance,
            partition_key=YESTERDAY,
            resources={
                "alert_store": AlertStore(url=alerts_url),
                "workflow": SqlWorkflowService(url=url, **FAST),
            },
            raise_on_error=False,
        )

    undisturbed = learn(workflow_url).asset_value("task_duration_baselines")
    proxied = postgres_proxy.url(workflow_url, PASSWORD)
    postgres_proxy.cut_after_bytes = 4_000
    assert_cut_four_times_then_failed(
        learn(proxied), postgres_proxy, "workflow database", proxied, instance, capfd
    )
    # Each cut while the per-task-type aggregates were coming back: the query grouped by task type
    # (the moments, or the histogram the default estimator fits, by task type, recent and bucket).
    grouped_by = [sent.rstrip(b"\x00").rsplit(b" GROUP BY ", 1)[-1] for sent in postgres_proxy.cuts]
    assert all(b"task_type" in columns for columns in grouped_by)

    postgres_proxy.cut_after_bytes = None
    rerun = learn(proxied).asset_value("task_duration_baselines")
    assert len(undisturbed) == 100 and int(undisturbed["has_limit"].sum()) > 90
    pd.testing.assert_frame_equal(rerun, undisturbed)


@pytest.mark.parametrize("down", ["workflow database", "alert store"])
def test_a_tick_with_a_database_down_fails_naming_it_and_the_next_tick_flags(
    instance, postgres_databases, postgres_proxy, down
):
    urls = {"workflow database": postgres_databases(), "alert store": postgres_databases()}
    now = NOW
    demo_runs = task_runs_in_postgres(urls["workflow database"], now)
    valid, _ = screen_task_runs(demo_runs.runs, now)
    alert_store = AlertStore(url=urls["alert store"])
    alert_store.save_baselines(now.to_pydatetime(), baselines_from_durations(trailing_durations(valid, now)))
    # The database that goes down is reached through the proxy, the other one directly.
    reached = {**urls, down: postgres_proxy.url(urls[down], PASSWORD)}

    def tick():
        context = dg.build_sensor_context(
            instance=instance,
            resources={
                "workflow": SqlWorkflowService(url=reached["workflow database"]),
                "alert_store": AlertStore(url=reached["alert store"]),
                "alert_sinks": AlertSinks(),
            },
        )
        return long_running_tasks_sensor(context)

    postgres_proxy.stop()
    with pytest.raises(SourceUnavailableError) as raised:
        tick()
    shown_url = postgres_proxy.url(urls[down]).replace("postgres@", "postgres:***@")
    assert str(raised.value).startswith(f"{down} at {shown_url} could not be read: connection to")
    assert PASSWORD not in "".join(traceback.format_exception(raised.value))
    assert alert_store.alerts().empty

    postgres_proxy.start()
    result = tick()
    assert set(alert_store.alerts()["run_id"]) == demo_runs.expected_overdue_run_ids
    assert result.asset_events[0].metadata["new_alerts"].value == len(demo_runs.expected_overdue_run_ids) == 6
