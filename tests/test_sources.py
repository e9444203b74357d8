"""Sources by name, set by environment alone: a table shaped exactly like Airflow 3's `task_instance`
(airflow-core/src/airflow/models/taskinstance.py) read by FAULTLINE_WORKFLOW_SOURCE=airflow, on SQLite
and PostgreSQL, with psycopg2 and psycopg 3; a table of one's own by FAULTLINE_WORKFLOW_*; a read-only
role on the source. Real Airflow is not run here (a later session adds it)."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import FIXED_NOW, FIXED_TODAY, fixed_clock

from assets.settings import Settings
from dagster_project.definitions import build_definitions
from dagster_project.sensors import build_long_running_tasks_sensor
from faultline.alerting import alert_payload, alert_text, format_duration, slack_text
from resources.alert_store import AlertStore
from resources.outages import SourceConfigurationError
from resources.sources import AirflowTaskInstances, TaskRunsTable
from resources.sql import dispose_engines

YESTERDAY = (FIXED_TODAY - timedelta(days=1)).strftime("%Y-%m-%d")
# A DAG run id as Airflow writes it: dots, colons, a plus.
RUN = "manual__2026-11-22T05:00:00.123456+00:00"
BASE_URL = "https://airflow.example.com/"
# Airflow's timestamps are aware: the PostgreSQL rows are written at +02:00, and read back as UTC.
PARIS = timezone(timedelta(hours=2))

metadata = sa.MetaData()
# Airflow 3's task_instance, column for column (types as Airflow's models create them).
task_instance = sa.Table(
    "task_instance",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("task_id", sa.String(250), nullable=False),
    sa.Column("dag_id", sa.String(250), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("map_index", sa.Integer(), nullable=False, server_default=sa.text("-1")),
    sa.Column("start_date", sa.DateTime(timezone=True)),
    sa.Column("end_date", sa.DateTime(timezone=True)),
    sa.Column("duration", sa.Float()),
    sa.Column("state", sa.String(20)),
    sa.Column("try_number", sa.Integer()),
    sa.Column("max_tries", sa.Integer(), server_default=sa.text("-1")),
    sa.Column("hostname", sa.String(1000)),
    sa.Column("unixname", sa.String(1000)),
    sa.Column("pool", sa.String(256), nullable=False),
    sa.Column("pool_slots", sa.Integer(), nullable=False),
    sa.Column("queue", sa.String(256)),
    sa.Column("priority_weight", sa.Integer()),
    sa.Column("operator", sa.String(1000)),
    sa.Column("custom_operator_name", sa.String(1000)),
    sa.Column("queued_dttm", sa.DateTime(timezone=True)),
    sa.Column("scheduled_dttm", sa.DateTime(timezone=True)),
    sa.Column("queued_by_job_id", sa.Integer()),
    sa.Column("last_heartbeat_at", sa.DateTime(timezone=True)),
    sa.Column("pid", sa.Integer()),
    sa.Column("executor", sa.String(1000)),
    sa.Column("executor_config", sa.LargeBinary()),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    sa.Column("rendered_map_index", sa.String(250)),
    sa.Column("context_carrier", sa.Text()),
    sa.Column("span_status", sa.String(250), nullable=False, server_default="not_started"),
    sa.Column("external_executor_id", sa.String(250)),
    sa.Column("trigger_id", sa.Integer()),
    sa.Column("trigger_timeout", sa.DateTime(timezone=True)),
    sa.Column("next_method", sa.String(1000)),
    sa.Column("next_kwargs", sa.Text()),
    sa.Column("task_display_name", sa.String(2000)),
    sa.Column("dag_version_id", sa.String(36), nullable=False),
    sa.UniqueConstraint("dag_id", "task_id", "run_id", "map_index", name="task_instance_composite_key"),
)


def _time(url: str, moment: datetime | None) -> datetime | None:
    """As Airflow's UtcDateTime stores it: an aware time on PostgreSQL (here at +02:00), naive UTC on
    SQLite."""
    if moment is None:
        return None
    if url.startswith("sqlite"):
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment.astimezone(PARIS)


def ti(
    dag_id: str, task_id: str, state: str | None, *, run_id: str = RUN, map_index: int = -1,
    try_number: int = 1, started_ago_s: float | None = None, ran_s: float | None = None,
    ended_at: datetime | None = None,
) -> dict:  # fmt: skip
    """One task_instance row; times from the tests' clock (a finished run ended at `ended_at`)."""
    if ended_at is not None:
        started, ended = ended_at - timedelta(seconds=ran_s), ended_at
    elif started_ago_s is not None:
        started, ended = FIXED_NOW - timedelta(seconds=started_ago_s), None
    else:
        started = ended = None
    return {
        "id": str(uuid.uuid4()), "task_id": task_id, "dag_id": dag_id, "run_id": run_id,
        "map_index": map_index, "state": state, "try_number": try_number, "start_date": started,
        "end_date": ended, "pool": "default_pool", "pool_slots": 1, "operator": "PythonOperator",
        "dag_version_id": str(uuid.uuid4()), "span_status": "not_started",
    }  # fmt: skip


def history(dag_id: str, task_id: str, base_s: int, step_s: int) -> list[dict]:
    """Ten successful runs two days before the clock, of base_s, base_s + step_s, ... seconds."""
    ended = FIXED_TODAY - timedelta(days=2)
    return [
        ti(dag_id, task_id, "success", run_id=f"scheduled__2026-11-20T{i:02d}:00:00+00:00",
           ran_s=base_s + step_s * i, ended_at=ended + timedelta(hours=i))
        for i in range(10)
    ]  # fmt: skip


def airflow_rows() -> list[dict]:
    return [
        # A DAG id with a dot, and a task group's task id with one: joined with dots both would be
        # 'etl.daily.load', one task type learning from the other's runs.
        *history("etl.daily", "load", 100, 10),
        *history("etl", "daily.load", 3000, 100),
        *history("shop", "fetch", 100, 10),
        *history("shop", "flaky", 100, 10),
        # Failed and skipped runs never count; failed tries of flaky are in the history too.
        ti(
            "shop",
            "flaky",
            "failed",
            run_id="scheduled__2026-11-20T11:00:00+00:00",
            ran_s=5000,
            ended_at=FIXED_TODAY - timedelta(days=2, hours=-11),
        ),
        ti(
            "shop",
            "flaky",
            "skipped",
            run_id="scheduled__2026-11-20T12:00:00+00:00",
            ran_s=1,
            ended_at=FIXED_TODAY - timedelta(days=2, hours=-12),
        ),
        # Running now: a hang, and a task group's task well within its own (long) limit.
        ti("etl.daily", "load", "running", started_ago_s=3600),
        ti("etl", "daily.load", "running", started_ago_s=3500),
        # A mapped task, one of three instances hung.
        ti("shop", "fetch", "running", map_index=0, started_ago_s=60),
        ti("shop", "fetch", "running", map_index=1, started_ago_s=3600),
        ti("shop", "fetch", "running", map_index=2, started_ago_s=30),
        # Try 1 of a flaky task hangs.
        ti("shop", "flaky", "running", started_ago_s=3600),
        # Still at work on their attempt, so watched (with no history, they have no limit yet): deferred
        # for five hours, and a reschedule-mode sensor between pokes.
        ti("shop", "wait_for_partner", "deferred", started_ago_s=5 * 3600),
        ti("shop", "nightly", "up_for_reschedule", started_ago_s=240),
        # Waiting: queued, scheduled, and not yet scheduled at all (NULL).
        ti("shop", "report", "queued"),
        ti("shop", "publish", "scheduled"),
        *(ti("shop", f"later_{i}", None, try_number=0) for i in range(3)),
    ]


def write_rows(url: str, rows: list[dict]) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        metadata.create_all(connection)
        connection.execute(
            task_instance.insert(),
            [{**row, "start_date": _time(url, row["start_date"]), "end_date": _time(url, row["end_date"])}
             for row in rows],
        )  # fmt: skip
    engine.dispose()


def update_row(url: str, task_id: str, **values) -> None:
    """Airflow moves the task instance of RUN on: the same row, a new state, try or start."""
    for name in ("start_date", "end_date"):
        if name in values:
            values[name] = _time(url, values[name])
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            task_instance.update()
            .where(task_instance.c.task_id == task_id, task_instance.c.run_id == RUN)
            .values(**values)
        )
    engine.dispose()


def environment(monkeypatch, tmp_path: Path, workflow_url: str, **more: str) -> Settings:
    """The deployment's variables, and nothing else: what a user of the airflow source sets."""
    variables = {
        "FAULTLINE_WORKFLOW_SOURCE": "airflow",
        "FAULTLINE_WORKFLOW_DB_URL": workflow_url,
        "FAULTLINE_DB_URL": f"sqlite:///{tmp_path / 'faultline.db'}",
        "FAULTLINE_AIRFLOW_BASE_URL": BASE_URL,
        "FAULTLINE_START_DATE": "2026-11-01",
        "FAULTLINE_ERROR_CLUSTERS": "off",
        **more,
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


# The location's sensor, told the time by the tests' clock (the rows are dated from it).
sensor_at_fixed_now = build_long_running_tasks_sensor(clock=fixed_clock)


def learn_limits(built: dg.Definitions, instance) -> None:
    job = built.resolve_job_def("task_duration_baselines_daily")
    assert job.execute_in_process(partition_key=YESTERDAY, instance=instance).success


def tick(built: dg.Definitions, instance):
    context = dg.build_sensor_context(instance=instance, resources=built.resources)
    return sensor_at_fixed_now(context)


def resolved(built: dg.Definitions, name: str):
    """The location's resource with its variables read, as a run gets it."""
    with dg.build_resources({name: built.resources[name]}) as resources:
        return getattr(resources, name)


def alerted(built: dg.Definitions) -> list[tuple]:
    alerts = resolved(built, "alert_store").alerts()
    return [
        (a["dag_id"], a["task_id"], a["dag_run_id"], a["map_index"], a["try_number"])
        for a in alerts.to_dict(orient="records")
    ]


def test_airflow_task_instances_set_by_environment_alone_alert_each_hang_once_per_try(
    monkeypatch, tmp_path, instance, airflow_url
):
    write_rows(airflow_url, airflow_rows())
    built = build_definitions(environment(monkeypatch, tmp_path, airflow_url))
    learn_limits(built, instance)
    store = resolved(built, "alert_store")
    _, limits = store.latest_baselines()
    limits = limits.set_index("task_type")["upper_limit_s"]
    # Learned per DAG and task, the dotted ids kept apart: joined with dots, the two 'etl.daily.load's
    # would share one limit, learned from both histories. Equal histories, equal limits (whatever the
    # estimator); the failed and skipped tries of flaky do not count.
    fast = limits["shop/fetch"]
    assert 190 < fast < 400
    assert limits["etl.daily/load"] == limits["shop/flaky"] == fast
    assert limits["etl/daily.load"] > 3900
    assert set(limits.index) == {"etl.daily/load", "etl/daily.load", "shop/fetch", "shop/flaky"}

    result = tick(built, instance)
    assert result.skip_reason.skip_message.startswith(
        "Alerted: 3 running tasks past their limit (8 running, 6 checked, 2 without baseline;"
    )
    assert sorted(alerted(built)) == [
        ("etl.daily", "load", RUN, -1, 1),
        ("shop", "fetch", RUN, 1, 1),
        ("shop", "flaky", RUN, -1, 1),
    ]
    # Nothing repeats; the flaky task's try 1 fails, it waits for its retry (not running, nothing new).
    assert len(alerted(built)) == 3 and tick(built, instance).skip_reason.skip_message.startswith("No new")
    update_row(airflow_url, "flaky", state="up_for_retry", end_date=FIXED_NOW - timedelta(seconds=1200))
    assert tick(built, instance).skip_reason.skip_message.startswith("No new task over its limit (7 running")
    # Try 2 starts, and hangs too: a new alert, for try 2.
    update_row(airflow_url, "flaky", state="running", try_number=2, end_date=None,
               start_date=FIXED_NOW - timedelta(seconds=1000))  # fmt: skip
    assert tick(built, instance).skip_reason.skip_message.startswith("Alerted: 1 running tasks")
    assert alerted(built)[-1] == ("shop", "flaky", RUN, -1, 2)
    alerts = store.alerts().sort_values(["task_type", "run_id"], ignore_index=True)
    assert alerts["task_type"].tolist() == ["etl.daily/load", "shop/fetch", "shop/flaky", "shop/flaky"]
    assert alerts["run_id"].tolist() == [f"{RUN}/-1/1", f"{RUN}/1/1", f"{RUN}/-1/1", f"{RUN}/-1/2"]
    assert alerts["elapsed_s"].tolist() == pytest.approx([3600, 3600, 3600, 1000])
    run = "manual__2026-11-22T05%3A00%3A00.123456%2B00%3A00"
    assert alerts["link"].tolist() == [
        f"{BASE_URL}dags/etl.daily/runs/{run}/tasks/load?try_number=1",
        f"{BASE_URL}dags/shop/runs/{run}/tasks/fetch/mapped/1?try_number=1",
        f"{BASE_URL}dags/shop/runs/{run}/tasks/flaky?try_number=1",
        f"{BASE_URL}dags/shop/runs/{run}/tasks/flaky?try_number=2",
    ]
    fetch = alerts.to_dict(orient="records")[1]
    assert alert_text(fetch) == (
        f"Task 'fetch' of DAG 'shop' (run '{RUN}', map index 1, try 1) has been running for 1h 0m, past its "
        f"limit of {format_duration(fast)} (mean 2m 25s over 10 successful runs); started 2026-11-22 "
        f"05:00 UTC. "
        f"{BASE_URL}dags/shop/runs/{run}/tasks/fetch/mapped/1?try_number=1"
    )
    assert slack_text(fetch) == alert_text(fetch)  # nothing in it for Slack to read as markup
    payload = json.loads(json.dumps(alert_payload(fetch)))
    assert {k: payload[k] for k in ("dag_id", "task_id", "dag_run_id", "map_index", "try_number")} == {
        "dag_id": "shop", "task_id": "fetch", "dag_run_id": RUN, "map_index": 1, "try_number": 1
    }  # fmt: skip
    assert payload["link"] == f"{BASE_URL}dags/shop/runs/{run}/tasks/fetch/mapped/1?try_number=1"
    assert payload["started_at"] == "2026-11-22T05:00:00+00:00"


def test_waiting_and_not_yet_scheduled_rows_are_neither_checked_nor_rejected_deferred_ones_are_checked(
    monkeypatch, tmp_path, airflow_url
):
    write_rows(airflow_url, airflow_rows())
    built = build_definitions(environment(monkeypatch, tmp_path, airflow_url))
    workflow = resolved(built, "workflow")
    running, unreadable = workflow.running_tasks(FIXED_NOW)
    assert sorted(zip(running["task_type"], running["run_id"], strict=True)) == [
        ("etl.daily/load", f"{RUN}/-1/1"),
        ("etl/daily.load", f"{RUN}/-1/1"),
        ("shop/fetch", f"{RUN}/0/1"),
        ("shop/fetch", f"{RUN}/1/1"),
        ("shop/fetch", f"{RUN}/2/1"),
        ("shop/flaky", f"{RUN}/-1/1"),
        ("shop/nightly", f"{RUN}/-1/1"),
        ("shop/wait_for_partner", f"{RUN}/-1/1"),
    ]
    assert unreadable.empty
    window = workflow.rejected_runs(FIXED_TODAY - timedelta(days=14), FIXED_TODAY)
    assert window.empty, window
    # Told to read every row, the same table gives the reasons the issue saw in every window.
    everything = AirflowTaskInstances(url=workflow.url, waiting_statuses=[])
    reasons = everything.rejected_runs(FIXED_TODAY - timedelta(days=14), FIXED_TODAY)["reason"]
    assert reasons.value_counts().to_dict() == {"missing status": 3, "unknown status": 3}


def reschedules_table(shape: str) -> sa.Table:
    """task_reschedule as Airflow 3 makes it (a poke names its attempt by ti_id, task_instance.id) or
    as Airflow 2 does (by dag_id, task_id, run_id, map_index and try_number)."""
    if shape == "airflow3":
        keys = [sa.Column("ti_id", sa.String(36), nullable=False)]
    else:
        keys = [sa.Column(name, sa.String(250)) for name in ("task_id", "dag_id", "run_id")]
        keys += [sa.Column("map_index", sa.Integer()), sa.Column("try_number", sa.Integer())]
    return sa.Table(
        "task_reschedule", sa.MetaData(), sa.Column("id", sa.Integer(), primary_key=True), *keys,
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration", sa.Integer(), nullable=False),
        sa.Column("reschedule_date", sa.DateTime(timezone=True), nullable=False),
    )  # fmt: skip


@pytest.mark.parametrize("shape", ["airflow3", "airflow2"])
def test_a_reschedule_mode_sensor_is_timed_from_its_first_poke(airflow_url, shape):
    """Airflow sets start_date anew at each poke; the attempt began at its first poke."""
    ended = FIXED_TODAY - timedelta(days=2)
    done = ti("shop", "nightly", "success", run_id="scheduled__2026-11-20", ran_s=0.5, ended_at=ended)
    waiting = ti("shop", "nightly", "up_for_reschedule", started_ago_s=30)
    waiting["end_date"] = FIXED_NOW - timedelta(seconds=29.5)  # its last poke's end
    plain = ti("shop", "fetch", "success", run_id="scheduled__2026-11-20", ran_s=100, ended_at=ended)
    write_rows(airflow_url, [done, waiting, plain])
    pokes = [(done, ended - timedelta(seconds=s)) for s in (240, 120, 0.5)]
    pokes += [(waiting, FIXED_NOW - timedelta(seconds=s)) for s in (3600, 30)]
    table = reschedules_table(shape)
    keys = ["ti_id"] if shape == "airflow3" else ["task_id", "dag_id", "run_id", "map_index", "try_number"]
    engine = sa.create_engine(airflow_url)
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(
            table.insert(),
            [
                {**{key: row["id" if key == "ti_id" else key] for key in keys},
                 "start_date": _time(airflow_url, at), "end_date": _time(airflow_url, at), "duration": 0,
                 "reschedule_date": _time(airflow_url, at + timedelta(seconds=60))}
                for row, at in pokes
            ],
        )  # fmt: skip
    engine.dispose()
    workflow = AirflowTaskInstances(url=airflow_url)
    runs = workflow.successful_runs(FIXED_TODAY - timedelta(days=14), FIXED_TODAY)
    assert dict(zip(runs["task_type"], runs["duration_s"], strict=True)) == pytest.approx(
        {"shop/nightly": 240, "shop/fetch": 100},
        abs=1e-3,  # SQLite's julianday: milliseconds
    )
    running, rejected = workflow.running_tasks(FIXED_NOW)
    assert running["task_type"].tolist() == ["shop/nightly"] and rejected.empty
    assert running["started_at"].tolist() == [
        pd.Timestamp(FIXED_NOW - timedelta(seconds=3600)).tz_localize(None)
    ]
    # Told not to read the pokes, the sensor is its last poke.
    last_pokes = AirflowTaskInstances(url=airflow_url, reschedule_table=None)
    runs = last_pokes.successful_runs(FIXED_TODAY - timedelta(days=14), FIXED_TODAY)
    assert runs.set_index("task_type")["duration_s"].to_dict() == pytest.approx(
        {"shop/nightly": 0.5, "shop/fetch": 100}, abs=1e-3
    )


def test_a_sql_table_of_ones_own_is_named_by_variables(monkeypatch, tmp_path, instance, store_url):
    """FAULTLINE_WORKFLOW_SOURCE=sql with a table whose every name differs from the defaults."""
    engine = sa.create_engine(store_url)
    jobs = sa.Table(
        "job_attempts", sa.MetaData(),
        sa.Column("pipeline", sa.Text()), sa.Column("step", sa.Text()), sa.Column("attempt_id", sa.Text()),
        sa.Column("began", sa.DateTime(timezone=True)), sa.Column("finished", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.Text()),
    )  # fmt: skip
    ended = FIXED_TODAY - timedelta(days=2)
    rows = [
        {"pipeline": "billing", "step": "export", "attempt_id": f"a-{i}", "outcome": "OK",
         "began": ended - timedelta(seconds=100 + 10 * i), "finished": ended}
        for i in range(10)
    ] + [
        {"pipeline": "billing", "step": "export", "attempt_id": "a-hung", "outcome": "BUSY",
         "began": FIXED_NOW - timedelta(hours=1), "finished": None},
        {"pipeline": "billing", "step": "export", "attempt_id": "a-later", "outcome": "PENDING",
         "began": None, "finished": None},
    ]  # fmt: skip
    with engine.begin() as connection:
        jobs.create(connection)
        connection.execute(jobs.insert(), rows)
    engine.dispose()
    settings = environment(
        monkeypatch, tmp_path, store_url,
        FAULTLINE_WORKFLOW_SOURCE="sql",
        FAULTLINE_WORKFLOW_TABLE="job_attempts",
        FAULTLINE_WORKFLOW_TASK_TYPE_COLUMNS="pipeline, step",
        FAULTLINE_WORKFLOW_RUN_ID_COLUMNS="attempt_id",
        FAULTLINE_WORKFLOW_STARTED_AT_COLUMN="began",
        FAULTLINE_WORKFLOW_ENDED_AT_COLUMN="finished",
        FAULTLINE_WORKFLOW_STATUS_COLUMN="outcome",
        FAULTLINE_WORKFLOW_SUCCESS_STATES="OK",
        FAULTLINE_WORKFLOW_RUNNING_STATES="BUSY",
        FAULTLINE_WORKFLOW_FAILED_STATES="ERROR",
        FAULTLINE_WORKFLOW_ABORTED_STATES="CANCELLED",
        FAULTLINE_WORKFLOW_WAITING_STATES="PENDING",
        FAULTLINE_WORKFLOW_ID_SEPARATOR="::",
    )  # fmt: skip
    built = build_definitions(settings)
    assert type(built.resources["workflow"]) is TaskRunsTable
    learn_limits(built, instance)
    tick(built, instance)
    store = resolved(built, "alert_store")
    alerts = store.alerts()
    assert alerts[["task_type", "run_id"]].values.tolist() == [["billing::export", "a-hung"]]
    _, limits = store.latest_baselines()
    assert limits["task_type"].tolist() == ["billing::export"]
    assert alerts["upper_limit_s"].tolist() == limits["upper_limit_s"].tolist()
    assert 190 < limits.loc[0, "upper_limit_s"] < 400
    assert alerts[["dag_id", "link"]].isna().all().all()
    assert alert_text(alerts.to_dict(orient="records")[0]).startswith(
        "Task 'billing::export' (run a-hung) has been running for 1h 0m"
    )
    workflow = resolved(built, "workflow")
    assert workflow.rejected_runs(FIXED_TODAY - timedelta(days=14), FIXED_TODAY).empty


def test_the_airflow_preset_reads_airflow_2s_ids_and_states_too():
    """Airflow 2.x: the same columns (map_index since 2.3); its legacy states wait, as Airflow 3's do."""
    preset = AirflowTaskInstances(url="sqlite://")
    assert preset.task_type_columns == ["dag_id", "task_id"]
    assert preset.run_id_columns == ["run_id", "map_index", "try_number"]
    assert (preset.started_at_column, preset.ended_at_column, preset.status_column) == (
        "start_date", "end_date", "state"
    )  # fmt: skip
    assert {"shutdown", "sensing", "NULL", "queued", "awaiting_input"} <= set(preset.waiting_statuses)
    assert preset.running_statuses == ["running", "deferred", "up_for_reschedule"]
    assert preset.airflow_fields("a.b/c.d", "scheduled__x/y/3/2") == {
        "dag_id": "a.b", "task_id": "c.d", "dag_run_id": "scheduled__x/y", "map_index": 3, "try_number": 2,
        "link": None,
    }  # fmt: skip


def test_no_link_without_the_base_url_and_no_fields_for_other_sources(monkeypatch, tmp_path):
    built = build_definitions(environment(monkeypatch, tmp_path, "sqlite://"))
    monkeypatch.delenv("FAULTLINE_AIRFLOW_BASE_URL")
    unlinked = build_definitions(Settings.from_env())
    assert built.resources["workflow"].airflow_base_url == BASE_URL
    assert unlinked.resources["workflow"].airflow_base_url is None
    assert unlinked.resources["workflow"].airflow_fields("shop/fetch", "r/1/2")["link"] is None


@pytest.fixture
def reader(postgres_databases):
    """A PostgreSQL Airflow database and a role that may only SELECT its task_instance."""
    url = postgres_databases()
    write_rows(url, airflow_rows())
    role = f"faultline_reader_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        connection.execute(sa.text(f"GRANT SELECT ON task_instance TO {role}"))
    reader_url = sa.engine.make_url(url).set(username=role).render_as_string(hide_password=False)
    yield {"url": reader_url, "admin_url": url, "role": role}
    dispose_engines()
    with admin.connect() as connection:
        connection.execute(sa.text(f"DROP OWNED BY {role}"))
        connection.execute(sa.text(f"DROP ROLE {role}"))
    admin.dispose()


def test_a_read_only_role_on_airflows_database_is_enough(monkeypatch, tmp_path, instance, reader):
    built = build_definitions(environment(monkeypatch, tmp_path, reader["url"]))
    learn_limits(built, instance)
    tick(built, instance)
    assert len(alerted(built)) == 3
    # Not a table of faultline's went into Airflow's database.
    engine = sa.create_engine(reader["admin_url"])
    assert sa.inspect(engine).get_table_names() == ["task_instance"]
    engine.dispose()


def test_a_role_that_may_not_read_the_table_is_told_the_grant_it_needs(monkeypatch, tmp_path, reader):
    admin = sa.create_engine(reader["admin_url"], isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"REVOKE SELECT ON task_instance FROM {reader['role']}"))
    admin.dispose()
    secret_url = reader["url"].replace(f"{reader['role']}@", f"{reader['role']}:hunter2@")
    built = build_definitions(environment(monkeypatch, tmp_path, secret_url))
    workflow = resolved(built, "workflow")
    with pytest.raises(SourceConfigurationError) as raised:
        workflow.running_tasks(FIXED_NOW)
    message = str(raised.value)
    database = sa.engine.make_url(reader["url"]).database
    assert message.startswith(f"workflow database at postgresql+psycopg2://{reader['role']}:***@")
    assert f"/{database}: the role may not read 'task_instance'" in message
    assert "GRANT SELECT ON task_instance TO <role>" in message
    assert "hunter2" not in message and "ProgrammingError" not in message


def test_an_alert_store_the_role_may_not_write_names_the_database_and_what_it_needs(reader):
    store = AlertStore(url=reader["url"])
    with pytest.raises(SourceConfigurationError) as raised:
        store.latest_baselines()
    message = str(raised.value)
    assert message.startswith(f"alert store at postgresql+psycopg2://{reader['role']}:***@127.0.0.1")
    assert "may not create or write faultline's tables" in message
    assert "FAULTLINE_ALERTS_DB_URL" in message and "GRANT CREATE ON SCHEMA public" in message
