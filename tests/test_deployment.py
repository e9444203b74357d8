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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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
TODAY = pd.Timestamp.now(tz="UTC").floor("D")
DAY = (TODAY - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
ERROR_CLUSTER_ASSETS = 7


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


@contextmanager
def services(env: dict[str, str], workspace: Path, logs: Path, webserver_port: int) -> Iterator[list]:
    """The code server, daemon and webserver, each in a process group of its own, stopped by pid."""
    commands = {
        "code_server": [str(BIN / "dagster"), "api", "grpc", "--host", "127.0.0.1", "--port",
                        env["FAULTLINE_CODE_SERVER_PORT"], "--module-name", "dagster_project.definitions"],
        "daemon": [str(BIN / "dagster-daemon"), "run", "--workspace", str(workspace)],
        "webserver": [str(BIN / "dagster-webserver"), "--host", "127.0.0.1", "--port", str(webserver_port),
                      "--workspace", str(workspace)],
    }  # fmt: skip
    started: list[subprocess.Popen] = []
    try:
        for name, command in commands.items():
            log = (logs / f"{name}.log").open("wb")
            started.append(
                subprocess.Popen(
                    command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
            if name == "code_server":
                wait_for(
                    "the code server listening",
                    lambda: socket.create_connection(
                        ("127.0.0.1", int(env["FAULTLINE_CODE_SERVER_PORT"])), 1
                    ),
                    timeout_s=90,
                )
        yield started
    finally:
        for process in started:
            # Each service leads its own process group: the run workers it spawned stop with it.
            with _ignoring(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with _ignoring(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


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
    """Two fresh databases (Dagster's, faultline's), seeded stores and the deployment's environment."""
    dagster_db = sa.engine.make_url(postgres_databases())
    faultline_url = postgres_databases()

    event_store = DeploymentEventStore(url=faultline_url)
    event_store.create_table()
    event_store.write_batches(
        generate_deployment_batches(end=TODAY.to_pydatetime(), days=1, n_error_events=300)
    )

    now = pd.Timestamp.now(tz="UTC").floor("s")
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
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": DAY}]},
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
    report = (tmp / "reports" / f"error_clusters_{DAY}.md").read_text()
    assert "300 error events" in report
    assert POSTGRES_ADMIN_URL.split("@")[0] not in report
