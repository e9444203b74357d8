"""The deployment's topology without Docker: code server, daemon and webserver on PostgreSQL.

Each service runs as its own process with a DAGSTER_HOME whose dagster.yaml is deploy/dagster.yaml,
the file the containers use, configured from the environment as docker-compose configures it.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import requests
import sqlalchemy as sa
import yaml
from conftest import POSTGRES_ADMIN_URL

from dagster_project.definitions import defs
from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.demo_data.task_runs import generate_task_runs
from faultline.durations import baselines_from_durations, screen_task_runs, trailing_durations
from resources.alert_store import AlertStore
from resources.event_store import DeploymentEventStore
from resources.workflow import SqlWorkflowService

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ERROR_CLUSTER_ASSETS = 9  # the seven steps of the graph, the share chart and the error groups
WORKSPACE = REPO / "deploy" / "workspace.yaml"
# The fault tests tick the sensor this often (FAULTLINE_SENSOR_INTERVAL_S); the daemon's sensor loop
# runs every 5 s at best, so a shorter interval would not tick any sooner.
FAST_TICKS = {"FAULTLINE_SENSOR_INTERVAL_S": "5"}
PASSWORD = "Pw-2b8d41c7-do-not-print"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, check: Callable[[], object], timeout_s: float, every_s: float = 1.0):
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - not up yet; the last error is reported on timeout
            last_error = error
        time.sleep(every_s)
    pytest.fail(f"{what} did not happen within {timeout_s:.0f} s (last error: {last_error!r})")


def start_service(name: str, env: dict[str, str], workspace: Path, logs: Path, **options) -> subprocess.Popen:
    """One service as its own process group, logging to `<logs>/<log_name or name>.log`."""
    commands = {
        "code_server": [str(BIN / "dagster"), "api", "grpc", "--host", "127.0.0.1", "--port",
                        env["FAULTLINE_CODE_SERVER_PORT"], "--module-name", "dagster_project.definitions"],
        "daemon": [str(BIN / "dagster-daemon"), "run", "--workspace", str(workspace)],
        "webserver": [str(BIN / "dagster-webserver"), "--host", "127.0.0.1",
                      "--port", str(options.get("webserver_port")), "--workspace", str(workspace)],
    }  # fmt: skip
    log = (logs / f"{options.get('log_name', name)}.log").open("wb")
    # Not in the repository: the dagster CLI loads a `.env` from its working folder over `env`, and a
    # user's .env (cp .env.example .env, as the README's deploy step says) must not change the test.
    process = subprocess.Popen(
        commands[name], cwd=logs, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    if name == "code_server":
        wait_for(
            "the code server listening",
            lambda: socket.create_connection(("127.0.0.1", int(env["FAULTLINE_CODE_SERVER_PORT"])), 1),
            timeout_s=90,
        )
    return process


def stop_services(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each service's process group (its run workers stop with it), SIGKILL if it lingers."""
    for process in processes:
        with _ignoring(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with _ignoring(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextmanager
def services(
    env: dict[str, str],
    workspace: Path,
    logs: Path,
    webserver_port: int | None = None,
    names: tuple[str, ...] = ("code_server", "daemon", "webserver"),
) -> Iterator[dict[str, subprocess.Popen]]:
    """The services by name, each in a process group of its own; whatever the dict holds at the end is
    stopped, so a test may replace a service it killed by a new one."""
    started: dict[str, subprocess.Popen] = {}
    try:
        for name in names:
            started[name] = start_service(name, env, workspace, logs, webserver_port=webserver_port)
        yield started
    finally:
        stop_services(list(started.values()))


@contextmanager
def _ignoring(*errors: type[BaseException]) -> Iterator[None]:
    try:
        yield
    except errors:
        pass


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    response = requests.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN_STATUS = "query Status($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"
SENSOR_TICKS = """
query {
  sensorOrError(sensorSelector: {repositoryLocationName: "faultline", repositoryName: "__repository__",
                                 sensorName: "long_running_tasks"}) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 10) { status } } }
  }
}
"""
ASSET_NODES = "query { assetNodes { assetKey { path } } }"


@pytest.fixture
def deployment(tmp_path: Path, postgres_databases) -> dict:
    """Two fresh databases (Dagster's, faultline's), seeded stores and the deployment's environment.

    The daemon runs on the real clock, so the data is dated from it, read once here (not at import):
    `day`, the day before it, is the partition the events are seeded for, whenever the test runs.
    """
    dagster_db = sa.engine.make_url(postgres_databases())
    faultline_url = postgres_databases()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    today = now.floor("D")

    event_store = DeploymentEventStore(url=faultline_url)
    event_store.create_table()
    event_store.write_batches(
        generate_deployment_batches(end=today.to_pydatetime(), days=1, n_error_events=300)
    )

    demo_runs = generate_task_runs(now, days=15, n_task_types=8, seed=5)
    SqlWorkflowService(url=faultline_url).write_runs(demo_runs.runs)
    valid, _ = screen_task_runs(demo_runs.runs, now)
    AlertStore(url=faultline_url).save_baselines(
        now.to_pydatetime(), baselines_from_durations(trailing_durations(valid, now))
    )

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DAGSTER_", "FAULTLINE_"))}
    env |= {
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_HOST": dagster_db.host or "127.0.0.1",
        "DAGSTER_POSTGRES_PORT": str(dagster_db.port or 5432),
        "DAGSTER_POSTGRES_USER": dagster_db.username or "postgres",
        # Trust authentication ignores it; dagster.yaml reads it from the environment all the same.
        "DAGSTER_POSTGRES_PASSWORD": dagster_db.password or "unused",
        "DAGSTER_POSTGRES_DB": dagster_db.database,
        "DAGSTER_STORAGE_DIR": str(tmp_path / "storage"),
        "FAULTLINE_CODE_SERVER_HOST": "127.0.0.1",
        "FAULTLINE_CODE_SERVER_PORT": str(free_port()),
        "FAULTLINE_DB_URL": faultline_url,
        "FAULTLINE_REPORTS_DIR": str(tmp_path / "reports"),
    }
    return {
        "env": env,
        "dagster_db_url": dagster_db.render_as_string(hide_password=False),
        "faultline_url": faultline_url,
        "expected_alerts": demo_runs.expected_overdue_run_ids,
        "day": (today - pd.Timedelta(days=1)).strftime("%Y-%m-%d"),
        "tmp": tmp_path,
    }


def test_deployment_files_use_postgres_from_the_environment():
    instance_config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    postgres = instance_config["storage"]["postgres"]["postgres_db"]
    assert all(set(value) == {"env"} for value in postgres.values())
    assert instance_config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    workspace = yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["host"] == {"env": "FAULTLINE_CODE_SERVER_HOST"}


def test_the_daemon_and_webserver_run_faultline_on_postgres(deployment):
    tmp, env = deployment["tmp"], deployment["env"]
    webserver_port = free_port()
    with services(env, REPO / "deploy" / "workspace.yaml", tmp, webserver_port):
        wait_for(
            "the webserver answering",
            lambda: requests.get(f"http://127.0.0.1:{webserver_port}/server_info", timeout=5).ok,
            timeout_s=120,
        )

        # The webserver lists every asset of the code location.
        listed = {
            "/".join(node["assetKey"]["path"]) for node in graphql(webserver_port, ASSET_NODES)["assetNodes"]
        }
        assert listed == {key.to_user_string() for key in defs.resolve_all_asset_keys()}

        # The sensor ticks under the daemon and alerts the planted over-limit runs, once each.
        alert_store = AlertStore(url=deployment["faultline_url"])
        expected = deployment["expected_alerts"]
        wait_for(
            "the sensor alerting the over-limit tasks",
            lambda: set(alert_store.alerts()["run_id"]) == expected,
            timeout_s=180,
            every_s=2,
        )
        assert len(alert_store.alerts()) == len(expected) == 6
        ticks = graphql(webserver_port, SENSOR_TICKS)["sensorOrError"]["sensorState"]
        assert ticks["status"] == "RUNNING" and ticks["ticks"]

        # A run of the daily job, requested through the GraphQL API, succeeds.
        params = {
            "selector": {
                "repositoryLocationName": "faultline",
                "repositoryName": "__repository__",
                "jobName": "error_clusters_daily",
            },
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": deployment["day"]}]},
        }
        launched = graphql(webserver_port, LAUNCH_RUN, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        status = wait_for(
            "the daily run finishing",
            lambda: (
                (s := graphql(webserver_port, RUN_STATUS, {"id": run_id})["runOrError"]["status"])
                in ("SUCCESS", "FAILURE", "CANCELED")
                and s
            ),
            timeout_s=300,
            every_s=2,
        )
        assert status == "SUCCESS", (tmp / "code_server.log").read_text()[-3000:]

    # Its run record and materializations are in PostgreSQL, and no alert was repeated meanwhile.
    engine = sa.create_engine(deployment["dagster_db_url"])
    with engine.connect() as connection:
        run_status = connection.execute(
            sa.text("SELECT status FROM runs WHERE run_id = :id"), {"id": run_id}
        ).scalar()
        materialized = connection.execute(
            sa.text(
                "SELECT COUNT(DISTINCT asset_key) FROM event_logs "
                "WHERE run_id = :id AND dagster_event_type = 'ASSET_MATERIALIZATION'"
            ),
            {"id": run_id},
        ).scalar()
    engine.dispose()
    assert run_status == "SUCCESS"
    assert materialized == ERROR_CLUSTER_ASSETS
    assert len(AlertStore(url=deployment["faultline_url"]).alerts()) == 6
    report = (tmp / "reports" / f"error_clusters_{deployment['day']}.md").read_text()
    assert "300 error events" in report
    assert POSTGRES_ADMIN_URL.split("@")[0] not in report


@contextmanager
def dagster_instance(deployment: dict) -> Iterator[dg.DagsterInstance]:
    """The deployment's Dagster instance as its services see it: deploy/dagster.yaml on PostgreSQL."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in deployment["env"].items():
            if name.startswith("DAGSTER_"):
                patch.setenv(name, value)
        instance = dg.DagsterInstance.from_config(deployment["env"]["DAGSTER_HOME"])
    try:
        yield instance
    finally:
        instance.dispose()


def sensor_ticks(instance: dg.DagsterInstance) -> list:
    """The long_running_tasks sensor's ticks as the daemon stored them, oldest first."""
    states = [state for state in instance.all_instigator_state() if state.name == "long_running_tasks"]
    if not states:
        return []
    return list(reversed(instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id)))


def finished_ticks(instance: dg.DagsterInstance) -> list:
    return [tick for tick in sensor_ticks(instance) if tick.status.value != "STARTED"]


def plant_overdue_runs(faultline_url: str, n: int) -> set[str]:
    """`n` running tasks, each of a task type with a limit, started three times its limit ago."""
    _, limits = AlertStore(url=faultline_url).latest_baselines()
    now = pd.Timestamp.now(tz="UTC").floor("s")
    runs = pd.DataFrame(
        [
            {"run_id": f"planted-{i}", "task_type": limit.task_type, "status": "running",
             "started_at": now - pd.Timedelta(seconds=round(3 * limit.upper_limit_s)), "ended_at": pd.NaT}
            for i, limit in enumerate(limits[limits["has_limit"]].head(n).itertuples())
        ]
    )  # fmt: skip
    SqlWorkflowService(url=faultline_url).write_runs(runs)
    return set(runs["run_id"])


def test_a_daemon_killed_between_ticks_and_restarted_neither_loses_nor_repeats_an_alert(
    deployment, recording_server
):
    tmp, url = deployment["tmp"], deployment["faultline_url"]
    webhook = recording_server()
    env = deployment["env"] | FAST_TICKS | {"FAULTLINE_ALERT_WEBHOOK_URL": webhook.url}
    alert_store = AlertStore(url=url)
    first = deployment["expected_alerts"]

    def alerted_and_delivered(run_ids: set[str]) -> bool:
        return set(alert_store.alerts()["run_id"]) == run_ids and alert_store.undelivered("webhook").empty

    with (
        services(env, WORKSPACE, tmp, names=("code_server", "daemon")) as running,
        dagster_instance(deployment) as instance,
    ):
        # Between two ticks: the one that raised and delivered the first alerts is over.
        wait_for(
            "the first tick alerting the stuck runs and ending",
            lambda: (
                alerted_and_delivered(first) and len(finished_ticks(instance)) == len(sensor_ticks(instance))
            ),
            timeout_s=180,
            every_s=0.5,
        )
        os.killpg(running["daemon"].pid, signal.SIGKILL)
        running["daemon"].wait(timeout=10)
        planted = plant_overdue_runs(url, 2)
        running["daemon"] = start_service("daemon", env, WORKSPACE, tmp, log_name="daemon_restarted")
        wait_for(
            "the restarted daemon alerting the runs planted while it was down",
            lambda: alerted_and_delivered(first | planted),
            timeout_s=180,
            every_s=0.5,
        )
        # One more whole tick, started after that one, which must find every alert raised and sent. (The
        # alerting tick may still be recording its check when its alerts are delivered: it is counted
        # among the ticks begun, not among those to wait for.)
        begun = len(sensor_ticks(instance))
        wait_for("one more tick", lambda: len(finished_ticks(instance)) > begun, timeout_s=60, every_s=0.5)
        ticks = finished_ticks(instance)

    alerts = alert_store.alerts()
    assert len(first | planted) == 8
    assert sorted(alerts["run_id"]) == sorted(first | planted)
    assert Counter(request["body"]["run_id"] for request in webhook.received) == Counter(first | planted)
    assert webhook.attempts == 8
    # What each tick did, as the UI's tick history shows it: 6 alerted, nothing new until the restarted
    # daemon's tick alerted the 2 planted runs, then nothing new again.
    alerting = [tick.skip_reason.split(" (")[0] for tick in ticks if tick.skip_reason.startswith("Alerted")]
    assert alerting == [
        "Alerted: 6 running tasks past their limit",
        "Alerted: 2 running tasks past their limit",
    ]
    assert "8 still over their limit, already alerted" in ticks[-1].skip_reason


def test_a_tick_with_the_workflow_database_down_fails_without_its_password_and_the_next_one_flags(
    deployment, postgres_proxy
):
    tmp, url = deployment["tmp"], deployment["faultline_url"]
    proxied = postgres_proxy.url(url, PASSWORD)
    env = (
        deployment["env"]
        | FAST_TICKS
        | {"FAULTLINE_WORKFLOW_DB_URL": proxied, "FAULTLINE_ALERTS_DB_URL": url}
    )
    alert_store = AlertStore(url=url)
    postgres_proxy.stop()
    with (
        services(env, WORKSPACE, tmp, names=("code_server", "daemon")),
        dagster_instance(deployment) as instance,
    ):
        failed = wait_for(
            "a tick failing on the unreachable workflow database",
            lambda: [tick for tick in finished_ticks(instance) if tick.status.value == "FAILURE"],
            timeout_s=180,
            every_s=0.5,
        )
        assert alert_store.alerts().empty
        postgres_proxy.start()
        wait_for(
            "the next tick alerting the stuck runs",
            lambda: (
                set(alert_store.alerts()["run_id"]) == deployment["expected_alerts"]
                and any((tick.skip_reason or "").startswith("Alerted") for tick in finished_ticks(instance))
            ),
            timeout_s=120,
            every_s=0.5,
        )
        ticks = [
            (tick.status.value, (tick.skip_reason or "").split(" (")[0]) for tick in finished_ticks(instance)
        ]

    # The sensor stays on: the daemon records the failed tick, and the next one runs as usual.
    assert ticks[0] == ("FAILURE", "")
    assert ticks[-1] == ("SKIPPED", "Alerted: 6 running tasks past their limit")
    assert {status for status, _ in ticks[:-1]} == {"FAILURE"}
    error = failed[0].error.to_string()
    shown = proxied.replace(PASSWORD, "***")
    assert f"SourceUnavailableError: workflow database at {shown} could not be read: connection to" in error
    assert PASSWORD not in error
    # Not in any row Dagster stored (ticks, sensor state, event logs), nor in any log or file written.
    engine = sa.create_engine(deployment["dagster_db_url"])
    with engine.connect() as connection:
        tables = (
            connection.execute(
                sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
            )
            .scalars()
            .all()
        )
        holding = [
            table
            for table in tables
            if connection.execute(
                sa.text(f'SELECT count(*) FROM "{table}" AS r WHERE r::text LIKE :pattern'),
                {"pattern": f"%{PASSWORD}%"},
            ).scalar()
        ]
    engine.dispose()
    assert holding == []
    assert [
        path for path in tmp.rglob("*") if path.is_file() and PASSWORD.encode() in path.read_bytes()
    ] == []


def run_status(port: int, run_id: str) -> str:
    return graphql(port, RUN_STATUS, {"id": run_id})["runOrError"]["status"]


def test_runs_whose_process_died_with_the_code_server_are_failed_and_free_the_queue(
    deployment, postgres_proxy
):
    """Two runs hold the queue's two slots; their code server is killed (-9) and started again. Run
    monitoring fails both within its interval, and the run queued behind them is launched."""
    tmp = deployment["tmp"]
    home = Path(deployment["env"]["DAGSTER_HOME"])
    instance_config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert instance_config["run_monitoring"]["enabled"] is True
    assert instance_config["run_launcher"]["class"] == "MonitoredRunLauncher"
    instance_config["run_monitoring"]["poll_interval_seconds"] = 3  # the deployment's is 60 s
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config))
    # Every run hangs in its first step: the events store accepts the connection and never answers.
    postgres_proxy.hang = True
    hanging_store = postgres_proxy.url(deployment["faultline_url"]) + "?connect_timeout=600"
    env = deployment["env"] | {"FAULTLINE_EVENTS_DB_URL": hanging_store}
    webserver_port = free_port()
    params = {
        "selector": {
            "repositoryLocationName": "faultline",
            "repositoryName": "__repository__",
            "jobName": "error_clusters_daily",
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": deployment["day"]}]},
    }

    def launch() -> str:
        launched = graphql(webserver_port, LAUNCH_RUN, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    with services(env, WORKSPACE, tmp, webserver_port) as running:
        wait_for(
            "the webserver answering",
            lambda: requests.get(f"http://127.0.0.1:{webserver_port}/server_info", timeout=5).ok,
            timeout_s=120,
        )
        stuck = [launch(), launch()]
        wait_for(
            "both runs started",
            lambda: all(run_status(webserver_port, run) == "STARTED" for run in stuck),
            timeout_s=120,
        )
        queued = launch()
        assert run_status(webserver_port, queued) == "QUEUED"  # max_concurrent_runs is 2
        os.killpg(running["code_server"].pid, signal.SIGKILL)
        running["code_server"].wait(timeout=10)
        running["code_server"] = start_service(
            "code_server", env, WORKSPACE, tmp, log_name="code_server_restarted"
        )
        wait_for(
            "run monitoring failing both dead runs",
            lambda: all(run_status(webserver_port, run) == "FAILURE" for run in stuck),
            timeout_s=120,
        )
        wait_for(
            "the queued run launched",
            lambda: run_status(webserver_port, queued) in ("STARTING", "STARTED"),
            timeout_s=120,
        )
        with dagster_instance(deployment) as instance:
            failures = [
                instance.all_logs(run, of_type=dg.DagsterEventType.RUN_FAILURE)[0].message for run in stuck
            ]
    assert all("no longer executes it: its process died" in message for message in failures), failures
