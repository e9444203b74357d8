"""Queued for too long (issue 15): how long each task type waits queued before it starts is learned
from the source's queue times, and a task queued past that limit is alerted once, apart from its
running alert. On Airflow's task_instance (queued_dttm) on SQLite and PostgreSQL through psycopg2 and
psycopg 3, on a table of one's own named by variables, and on a real Dagster instance's runs."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import FIXED_NOW, FIXED_TODAY
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    LoadableTargetOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from test_long_running_tasks_sensor import YESTERDAY, history, running, sensor_at_fixed_now
from test_sources import (
    BASE_URL,
    RUN,
    _time,
    environment,
    learn_limits,
    metadata,
    resolved,
    task_instance,
    ti,
    tick,
)

from assets.settings import Settings
from assets.task_durations import QUEUE_CHECK, task_duration_baselines
from dagster_project.definitions import build_definitions
from dagster_project.sensors import build_long_running_tasks_sensor
from faultline.alerting import alert_payload, alert_text
from resources.alert_sinks import AlertSinks
from resources.alert_store import QUEUED, RUNNING, AlertStore
from resources.queue_waits import SqlQueueWaits, queue_waits_of
from resources.sources import TaskRunsTable
from resources.workflow import SqlWorkflowService

# Ten starts of each task type two days before the clock, waiting 5, 6, ... 14 s in the queue.
WAITS_S = [5.0 + i for i in range(10)]


def queued_row(row: dict, waited_s: float | None = None, queued_ago_s: float | None = None) -> dict:
    """`row` with its queued_dttm: `waited_s` before its start, or `queued_ago_s` before the clock."""
    if queued_ago_s is not None:
        return {**row, "queued_dttm": FIXED_NOW - timedelta(seconds=queued_ago_s)}
    return {**row, "queued_dttm": row["start_date"] - timedelta(seconds=waited_s)}


def queue_history(dag_id: str, task_id: str, ran_s: float = 100) -> list[dict]:
    ended = FIXED_TODAY - timedelta(days=2)
    return [
        queued_row(
            ti(dag_id, task_id, "success", run_id=f"scheduled__2026-11-20T{i:02d}:00:00+00:00", ran_s=ran_s,
               ended_at=ended + timedelta(hours=i)),
            waited_s=waited,
        )
        for i, waited in enumerate(WAITS_S)
    ]  # fmt: skip


def rows() -> list[dict]:
    resumed = queued_row(
        ti("shop", "wait", "running", started_ago_s=2000), queued_ago_s=60
    )  # a deferred task queued again when its trigger fired: started before it was queued
    return [
        *queue_history("shop", "fetch"),
        *queue_history("shop", "wait", ran_s=3000),
        # A failed start waited in the queue too: its wait counts, as the attempt did leave the queue.
        queued_row(
            ti(
                "shop",
                "fetch",
                "failed",
                run_id="scheduled__2026-11-20T11:00:00+00:00",
                ran_s=50,
                ended_at=FIXED_TODAY - timedelta(days=2, hours=-11),
            ),
            waited_s=9.0,
        ),  # fmt: skip
        # Queued now: one stuck for half an hour, one for 3 s (within its limit), one of a task type
        # that never left the queue before (no limit yet).
        queued_row(ti("shop", "fetch", "queued"), queued_ago_s=1800),
        queued_row(ti("shop", "fetch", "queued", map_index=1, run_id="manual__later"), queued_ago_s=3),
        queued_row(ti("shop", "publish", "queued"), queued_ago_s=1800),
        resumed,
        # Never queued yet: no queue time, not a wait.
        ti("shop", "report", "scheduled"),
        # Given up on while queued for two hours (task_queued_timeout, or by hand): Airflow sets its start
        # and end at that moment. It never ran: its two hours are not a normal wait.
        queued_row(
            ti("shop", "fetch", "failed", run_id="scheduled__2026-11-20T12:00:00+00:00", ran_s=0,
               ended_at=FIXED_TODAY - timedelta(days=2, hours=-12)),
            waited_s=7200,
        ),
        queued_row(
            ti("shop", "fetch", "skipped", run_id="scheduled__2026-11-20T13:00:00+00:00", ran_s=1,
               ended_at=FIXED_TODAY - timedelta(days=2, hours=-13)),
            waited_s=7200,
        ),
    ]  # fmt: skip


def write(url: str, table_rows: list[dict]) -> None:
    engine = sa.create_engine(url)
    times = ("start_date", "end_date", "queued_dttm")
    with engine.begin() as connection:
        metadata.create_all(connection)
        connection.execute(
            task_instance.insert(),
            [{**row, **{name: _time(url, row.get(name)) for name in times}} for row in table_rows],
        )
    engine.dispose()


def start(url: str, task_id: str, map_index: int, started: datetime) -> None:
    """Airflow starts the queued attempt: state running from `started`."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            task_instance.update()
            .where(
                task_instance.c.task_id == task_id,
                task_instance.c.run_id == RUN,
                task_instance.c.map_index == map_index,
            )
            .values(state="running", start_date=_time(url, started))
        )
    engine.dispose()


def queue_checks(result) -> list[dg.AssetCheckEvaluation]:
    return [e for e in result.asset_events if getattr(e, "check_name", None) == QUEUE_CHECK]


def test_a_task_queued_past_its_queue_limit_is_alerted_once_then_again_when_it_hangs_running(
    monkeypatch, tmp_path, instance, airflow_url
):
    write(airflow_url, rows())
    built = build_definitions(environment(monkeypatch, tmp_path, airflow_url))
    learn_limits(built, instance)
    store = resolved(built, "alert_store")
    _, limits = store.latest_baselines(QUEUED)
    limits = limits.set_index("task_type")
    # Learned from start - queued_dttm of every attempt that left the queue: 10 successes and, for
    # fetch, the failed one (9 s); the deferred task's resumption is not a wait, nor are the attempt
    # failed while queued and the skipped one (their two hours would raise the limit past the hang's).
    assert limits.loc["shop/fetch", "n_runs"] == 11
    assert limits.loc["shop/fetch", "mean_s"] == pytest.approx((sum(WAITS_S) + 9.0) / 11)
    assert limits.loc["shop/wait", "n_runs"] == 10
    assert limits.loc["shop/wait", "mean_s"] == pytest.approx(sum(WAITS_S) / 10)
    assert set(limits.index) == {"shop/fetch", "shop/wait"}
    fetch_limit = limits.loc["shop/fetch", "upper_limit_s"]
    assert 10 < fetch_limit < 600  # above the mean wait, far below the stuck one's half hour
    # The durations' limits are apart, as they were.
    _, durations = store.latest_baselines()
    assert durations.set_index("task_type").loc["shop/wait", "mean_s"] == pytest.approx(3000)

    result = tick(built, instance)
    message = result.skip_reason.skip_message
    assert "Queued past their queue limit: 1, 1 newly alerted ('shop/fetch' run " in message
    alerts = store.alerts()
    assert alerts[["task_type", "run_id", "phase"]].values.tolist() == [["shop/fetch", f"{RUN}/-1/1", QUEUED]]
    alert = alerts.to_dict(orient="records")[0]
    assert alert["elapsed_s"] == pytest.approx(1800)
    assert alert["upper_limit_s"] == pytest.approx(fetch_limit)
    assert alert["dag_id"] == "shop" and alert["task_id"] == "fetch" and alert["try_number"] == 1
    run = "manual__2026-11-22T05%3A00%3A00.123456%2B00%3A00"
    assert alert["link"] == f"{BASE_URL}dags/shop/runs/{run}/tasks/fetch?try_number=1"
    text = alert_text(alert)
    assert text.startswith(
        f"Task 'fetch' of DAG 'shop' (run '{RUN}', try 1) has been queued for 30m 0s without starting, "
        "past its queue limit of "
    )
    assert "over 11 starts); queued 2026-11-22 05:30 UTC." in text, text
    payload = json.loads(json.dumps(alert_payload(alert)))
    assert payload["phase"] == "queued" and payload["started_at"] == "2026-11-22T05:30:00+00:00"
    [check] = queue_checks(result)
    assert not check.passed
    assert check.metadata["over_limit"].value == 1 and check.metadata["new_alerts"].value == 1
    assert check.metadata["queued"].value == 3  # fetch twice, publish (no limit)
    assert check.metadata["without_baseline"].value == 1
    assert check.description.startswith(
        "1 queued tasks over their queue limit (3 queued, 2 checked, 1 without"
    )

    # The next tick finds it still queued: nothing new.
    again = tick(built, instance)
    assert "Queued past their queue limit: 1, 0 newly alerted" in again.skip_reason.skip_message
    assert len(store.alerts()) == 1
    # It starts at last, and hangs running: a running alert of its own for the same attempt.
    start(airflow_url, "fetch", -1, FIXED_NOW - timedelta(seconds=3600))
    tick(built, instance)
    alerts = store.alerts()
    assert alerts[["task_type", "run_id", "phase"]].values.tolist() == [
        ["shop/fetch", f"{RUN}/-1/1", QUEUED],
        ["shop/fetch", f"{RUN}/-1/1", RUNNING],
    ]
    assert alert_text(alerts.to_dict(orient="records")[1]).startswith(
        f"Task 'fetch' of DAG 'shop' (run '{RUN}', try 1) has been running for 1h 0m"
    )
    [check] = queue_checks(tick(built, instance))
    assert check.passed and check.description.startswith("No queued task is over its queue limit (2 queued")


def test_queue_checks_switched_off_leave_queued_tasks_alone(monkeypatch, tmp_path, instance):
    url = f"sqlite:///{tmp_path / 'airflow.db'}"
    write(url, rows())
    built = build_definitions(environment(monkeypatch, tmp_path, url, FAULTLINE_QUEUE_CHECKS="off"))
    assert queue_waits_of(resolved(built, "workflow")) is None
    learn_limits(built, instance)
    store = resolved(built, "alert_store")
    assert store.latest_baselines(QUEUED)[0] is None
    result = tick(built, instance)
    assert QUEUED not in set(store.alerts()["phase"]) and not queue_checks(result)


def test_an_airflow_shaped_table_without_queued_dttm_has_no_queue_check(tmp_path):
    url = f"sqlite:///{tmp_path / 'airflow.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("CREATE TABLE task_instance (dag_id TEXT, task_id TEXT, run_id TEXT, map_index INT, "
                    "try_number INT, start_date TIMESTAMP, end_date TIMESTAMP, state TEXT)")
        )  # fmt: skip
    engine.dispose()
    from resources.sources import AirflowTaskInstances

    assert queue_waits_of(AirflowTaskInstances(url=url)) is None
    # Named by the user, a missing column is an error that names the setting.
    named = AirflowTaskInstances(url=url, queued_at_column="queued_dttm", queued_at_column_required=True)
    waits = queue_waits_of(named)
    assert isinstance(waits, SqlQueueWaits)
    with pytest.raises(ValueError, match="has no column 'queued_dttm'; set `queued_at_column`"):
        waits.running_tasks(FIXED_NOW)


def test_a_table_of_ones_own_names_its_queue_column_and_states_by_variables(monkeypatch, tmp_path, instance):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    ended = FIXED_TODAY - timedelta(days=2)
    history = [
        {"job": f"j{i}", "kind": "export", "submitted": ended - timedelta(seconds=600 + 20 + i),
         "began": ended - timedelta(seconds=600), "finished": ended, "phase": "done"}
        for i in range(8)
    ]  # fmt: skip
    waiting = [
        {"job": "stuck", "kind": "export", "submitted": FIXED_NOW - timedelta(hours=2), "began": None,
         "finished": None, "phase": "pending"},
        {"job": "fresh", "kind": "export", "submitted": FIXED_NOW - timedelta(seconds=10), "began": None,
         "finished": None, "phase": "pending"},
    ]  # fmt: skip
    broken = [
        # Started before it was submitted: rejected by the screening, with its reason, and counted.
        {"job": "odd", "kind": "export", "submitted": ended - timedelta(seconds=100),
         "began": ended - timedelta(seconds=600), "finished": ended, "phase": "done"},
        # Pending with no submission time: checked as unreadable, counted in the tick.
        {"job": "lost", "kind": "export", "submitted": None, "began": None, "finished": None,
         "phase": "pending"},
    ]  # fmt: skip
    pd.DataFrame(history + waiting + broken).to_sql("jobs", sa.create_engine(url), index=False)
    variables = {
        "FAULTLINE_WORKFLOW_SOURCE": "sql",
        "FAULTLINE_WORKFLOW_TABLE": "jobs",
        "FAULTLINE_WORKFLOW_RUN_ID_COLUMNS": "job",
        "FAULTLINE_WORKFLOW_TASK_TYPE_COLUMNS": "kind",
        "FAULTLINE_WORKFLOW_STARTED_AT_COLUMN": "began",
        "FAULTLINE_WORKFLOW_ENDED_AT_COLUMN": "finished",
        "FAULTLINE_WORKFLOW_STATUS_COLUMN": "phase",
        "FAULTLINE_WORKFLOW_SUCCESS_STATES": "done",
        "FAULTLINE_WORKFLOW_RUNNING_STATES": "active",
        "FAULTLINE_WORKFLOW_WAITING_STATES": "pending",
        "FAULTLINE_WORKFLOW_QUEUED_AT_COLUMN": "submitted",
        "FAULTLINE_WORKFLOW_QUEUED_STATES": "pending",
    }
    built = build_definitions(environment(monkeypatch, tmp_path, url, **variables))
    learn_limits(built, instance)
    store = resolved(built, "alert_store")
    _, limits = store.latest_baselines(QUEUED)
    export = limits.set_index("task_type").loc["export"]
    assert export["n_runs"] == 8 and export["mean_s"] == pytest.approx(23.5)
    materialized = instance.get_latest_materialization_event(dg.AssetKey("task_duration_baselines"))
    metadata = materialized.asset_materialization.metadata
    # Counted with their reasons: the wait that ended before it began, and the queued row without a
    # queue time (the reasons name the view's columns: a wait's start is its queueing).
    assert metadata["queue_rejected_reasons"].value == {
        "ended_at before started_at": 1,
        "missing started_at": 1,
    }
    assert metadata["queue_waits_rejected"].value == 2
    result = tick(built, instance)
    [check] = queue_checks(result)
    assert check.metadata["unreadable"].value == 1 and check.metadata["queued"].value == 2
    alerts = store.alerts()
    assert alerts[["task_type", "run_id", "phase"]].values.tolist() == [["export", "stuck", QUEUED]]
    assert alerts["elapsed_s"].iloc[0] == pytest.approx(7200)


def test_a_dagster_run_waiting_in_the_queue_past_its_jobs_queue_limit_is_alerted(
    monkeypatch, tmp_path, instance
):
    @dg.op
    def work() -> None:
        pass

    @dg.job
    def nightly() -> None:
        work()

    for _ in range(5):
        assert nightly.execute_in_process(instance=instance).success
    for name, value in {
        "FAULTLINE_WORKFLOW_SOURCE": "dagster",
        "FAULTLINE_DB_URL": f"sqlite:///{tmp_path / 'faultline.db'}",
        "FAULTLINE_START_DATE": (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%d"),
        "FAULTLINE_ERROR_CLUSTERS": "off",
    }.items():
        monkeypatch.setenv(name, value)
    built = build_definitions(Settings.from_env())
    resources = {name: built.resources[name] for name in ("workflow", "alert_store")}
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    with dg.build_asset_context(partition_key=today, resources=resources, instance=instance) as context:
        from assets.task_durations import BaselineConfig

        built.get_assets_def("task_duration_baselines")(context, BaselineConfig())
    with dg.build_resources({"alert_store": built.resources["alert_store"]}) as store:
        store = store.alert_store
    _, limits = store.latest_baselines(QUEUED)
    nightly_limit = limits.set_index("task_type").loc["nightly"]
    # Each run's wait from its creation to its start, as the instance recorded them.
    waits = [
        (r.start_time - r.create_timestamp.timestamp()) for r in instance.get_run_records() if r.start_time
    ]
    assert nightly_limit["n_runs"] == 5
    assert nightly_limit["mean_s"] == pytest.approx(sum(waits) / 5, abs=1e-3)
    # A run submitted to the queue that no daemon takes: queued from its creation.
    # As the UI submits it: with the origin of its code location, which a queued run must have.
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=__file__))
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), "nightly")
    queued = instance.create_run_for_job(
        job_def=nightly, status=dg.DagsterRunStatus.QUEUED, remote_job_origin=origin
    )
    assert instance.get_run_by_id(queued.run_id).status == dg.DagsterRunStatus.QUEUED
    created = instance.get_run_record_by_id(queued.run_id).create_timestamp
    later = created + timedelta(hours=1)
    context = dg.build_sensor_context(instance=instance, resources=built.resources)
    build_long_running_tasks_sensor(clock=lambda: later)(context)
    alerts = store.alerts()
    assert alerts[["task_type", "run_id", "phase"]].values.tolist() == [["nightly", queued.run_id, QUEUED]]
    assert alerts["elapsed_s"].iloc[0] == pytest.approx(3600, abs=1)
    assert alert_text(alerts.to_dict(orient="records")[0]).startswith(
        f"Job 'nightly' (run '{queued.run_id}') has been queued for 1h 0m without starting"
    )


def test_a_failing_queue_check_fails_the_tick_after_the_running_alerts_are_delivered(
    instance, tmp_path, recording_server
):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    runs = [*history(), running("hung", "etl.orders", 3600)]
    SqlWorkflowService(url=url).write_runs(pd.DataFrame(runs))
    # Its queue column misnamed: the table has no such column.
    workflow = TaskRunsTable(url=url, queued_at_column="submitted", queued_at_column_required=True)
    store = AlertStore(url=f"sqlite:///{tmp_path / 'faultline.db'}")
    with pytest.raises(ValueError, match="has no column 'submitted'; set `queued_at_column`"):
        dg.materialize(
            [task_duration_baselines], instance=instance, partition_key=YESTERDAY,
            resources={"workflow": workflow, "alert_store": store},
        )  # fmt: skip
    # The durations' limits were saved before the queue's failed: the running check works on.
    assert store.latest_baselines()[0] is not None
    webhook = recording_server()
    context = dg.build_sensor_context(
        instance=instance,
        resources={
            "workflow": workflow,
            "alert_store": store,
            "alert_sinks": AlertSinks(webhook_url=webhook.url),
        },
    )
    with pytest.raises(ValueError, match="has no column 'submitted'"):
        sensor_at_fixed_now(context)
    assert [request["body"]["run_id"] for request in webhook.received] == ["hung"]
    assert store.undelivered("webhook").empty
