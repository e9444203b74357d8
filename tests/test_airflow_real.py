"""A real Apache Airflow writes its task_instance rows; faultline's airflow source, set by environment
alone and through a read-only role, learns from them and alerts on them (issue 15).

Airflow runs in a virtualenv of its own (AIRFLOW_VERSION from PyPI, built once and kept in
~/.cache/faultline-airflow-<version>-py<x.y>), on a PostgreSQL database the test creates and drops: not
for a conflict (pip resolves apache-airflow[postgres]==3.3.2 beside faultline's dependencies without
changing one), but so that faultline's environment stays the one its users install, and Airflow, which
configures itself on import, runs in a process of its own, as it does beside a deployment.

tests/airflow/drive.py migrates the database and runs the DAG of tests/airflow/dags/shop.py with
Airflow's own `dag.test()`, whose tasks report their states through Airflow's execution API like a
worker's: HISTORY_RUNS complete runs (Python, Bash in a task group, a
mapped task, a failing task, a retried task, a deferred task, a reschedule-mode sensor), then a run
whose `fetch` hangs on its first try, fails when the test lets it, and hangs again on its retry.
Without Airflow installable this skips, and fails under CI=true.
"""

import fcntl
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import until

from assets.settings import Settings
from assets.task_durations import BaselineConfig
from dagster_project.definitions import build_definitions
from dagster_project.sensors import build_long_running_tasks_sensor
from faultline.durations import MIN_RUNS
from resources.alert_store import QUEUED
from resources.outages import SourceConfigurationError
from resources.sql import dispose_engines

# The one place the tests' Airflow is pinned; the virtualenv is keyed by it.
AIRFLOW_VERSION = "3.3.2"
AIRFLOW_REQUIREMENT = f"apache-airflow[postgres]=={AIRFLOW_VERSION}"
AIRFLOW_DIR = Path(__file__).parent / "airflow"
# As many complete runs as a limit needs by default; each is about 12 s of Airflow on a loaded 2-core
# machine, the first about 45 s (Airflow's in-process execution API starting).
HISTORY_RUNS = MIN_RUNS
DAG_ID = "shop.daily"
BASE_URL = "http://airflow.test/"
# Each successful run of the DAG, by task type, as faultline names them: dag_id/task_id.
TASKS = ("fetch", "go", "part", "flaky", "load.rows", "nap", "wait_for_partner")
LEARNED = {f"{DAG_ID}/{task}" for task in TASKS}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    """The Python of a virtualenv with Airflow installed from PyPI, built at first use (3.5 to 5 min
    here: pip keeps no cache on this machine) and kept outside the repository for every later run."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / f"faultline-airflow-{AIRFLOW_VERSION}-py{sys.version_info.major}.{sys.version_info.minor}"
    python, built = venv / "bin" / "python", venv / "faultline-built"
    cache.mkdir(parents=True, exist_ok=True)
    # One builder at a time: a second test session waits for the first's venv instead of racing it.
    with open(cache / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if built.exists():
            return python
        subprocess.run(["rm", "-rf", str(venv)], check=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", AIRFLOW_REQUIREMENT],
                check=True, capture_output=True, text=True, timeout=1200,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            output = error.stderr if isinstance(error.stderr, str) else ""
            lines = [line for line in output.splitlines() if not line.startswith("WARNING")]
            subprocess.run(["rm", "-rf", str(venv)], check=False)
            cause = lines[-1] if lines else str(error)
            _unavailable(f"cannot install {AIRFLOW_REQUIREMENT} into {venv}: {cause[-300:]}")
        built.write_text(f"{AIRFLOW_REQUIREMENT}\n")
    return python


@dataclass
class AirflowRun:
    """Airflow at work on its database: `url` its owner's, the process driving its DAG, its output."""

    url: str
    process: subprocess.Popen
    output: Path
    release: Path

    def said(self, line: str) -> bool:
        if self.process.poll() is not None:
            tail = "\n".join(self.output.read_text().splitlines()[-40:])
            raise AssertionError(f"Airflow stopped (exit {self.process.returncode}):\n{tail}")
        return line in self.output.read_text().splitlines()

    def rows(self, query: str) -> pd.DataFrame:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as connection:
                return pd.read_sql(sa.text(query), connection)
        finally:
            engine.dispose()


@pytest.fixture
def airflow(airflow_python, postgres_databases, tmp_path) -> Iterator[AirflowRun]:
    url = postgres_databases()
    home = tmp_path / "airflow_home"
    home.mkdir()
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "AIRFLOW__CORE__DAGS_FOLDER": str(AIRFLOW_DIR / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    }
    output, release = tmp_path / "airflow.log", tmp_path / "release"
    with open(output, "w") as out:
        process = subprocess.Popen(
            [str(airflow_python), str(AIRFLOW_DIR / "drive.py"), str(HISTORY_RUNS), str(release)],
            env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield AirflowRun(url, process, output, release)
    finally:
        # The hang never ends by itself, and Airflow's task runner outlives a SIGTERM for a while.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        dispose_engines()


@pytest.fixture
def reader_url(airflow) -> Iterator[str]:
    """A role of Airflow's database that may read task_instance and nothing else, by psycopg 3."""
    role = f"faultline_reader_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(airflow.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
    url = sa.engine.make_url(airflow.url).set(drivername="postgresql+psycopg", username=role)
    yield url.render_as_string(hide_password=False), role, admin
    dispose_engines()
    with admin.connect() as connection:
        connection.execute(sa.text(f"DROP OWNED BY {role}"))
        connection.execute(sa.text(f"DROP ROLE {role}"))
    admin.dispose()


def deployment(monkeypatch, tmp_path: Path, workflow_url: str) -> dg.Definitions:
    """faultline's code location as a user of the airflow source sets it up: variables, no code."""
    today = datetime.now(UTC)
    variables = {
        "FAULTLINE_WORKFLOW_SOURCE": "airflow",
        "FAULTLINE_WORKFLOW_DB_URL": workflow_url,
        "FAULTLINE_DB_URL": f"sqlite:///{tmp_path / 'faultline.db'}",
        "FAULTLINE_AIRFLOW_BASE_URL": BASE_URL,
        "FAULTLINE_START_DATE": (today - timedelta(days=30)).strftime("%Y-%m-%d"),
        "FAULTLINE_ERROR_CLUSTERS": "off",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return build_definitions(Settings.from_env())


def resolved(built: dg.Definitions, name: str):
    with dg.build_resources({name: built.resources[name]}) as resources:
        return getattr(resources, name)


def learn_todays_limits(built: dg.Definitions) -> pd.DataFrame:
    """The limits asset on today's partition, as the daily job runs it on a finished day (Dagster
    launches a day's partition only once the day is over; Airflow's runs are from now)."""
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    asset = built.get_assets_def("task_duration_baselines")
    resources = {name: built.resources[name] for name in ("workflow", "alert_store")}
    with dg.build_asset_context(partition_key=today, resources=resources) as context:
        result = asset(context, BaselineConfig(estimator=Settings.from_env().estimator))
    return result.value


def running_fetch(airflow: AirflowRun, try_number: int) -> pd.Series | None:
    rows = airflow.rows(
        "SELECT run_id, try_number, start_date FROM task_instance "
        f"WHERE task_id = 'fetch' AND state = 'running' AND try_number = {try_number}"
    )
    return None if rows.empty else rows.iloc[0]


def test_real_airflow_runs_are_learned_and_a_hang_alerted_once_per_try(
    monkeypatch, tmp_path, instance, airflow, reader_url
):
    url, role, admin = reader_url
    assert until(lambda: airflow.said("HISTORY"), patience_s=480)
    built = deployment(monkeypatch, tmp_path, url)
    # Before its grant, the role is told the one it needs: the two tables Airflow keeps attempts in.
    with pytest.raises(SourceConfigurationError) as refused:
        resolved(built, "workflow").running_tasks(datetime.now(UTC))
    assert "GRANT SELECT ON task_instance, task_reschedule TO <role>" in str(refused.value)
    with admin.connect() as connection:
        connection.execute(sa.text(f"GRANT SELECT ON task_instance, task_reschedule TO {role}"))
    learned = learn_todays_limits(built).set_index("task_type")

    # Airflow's own record of its successful runs: the numbers faultline must have learned. A sensor's
    # attempt is timed from its first poke, the earliest of its task_reschedule rows.
    success = airflow.rows(
        "SELECT dag_id || '/' || task_id AS task_type, EXTRACT(EPOCH FROM end_date - start_date) AS "
        "last_poke_s, EXTRACT(EPOCH FROM end_date - COALESCE((SELECT MIN(r.start_date) FROM "
        "task_reschedule r WHERE r.ti_id = ti.id), start_date)) AS seconds "
        "FROM task_instance ti WHERE state = 'success'"
    )
    expected = success.groupby("task_type")["seconds"].agg(["count", "mean", "std"])
    assert set(learned.index) == LEARNED == set(expected.index)
    assert learned["n_runs"].to_dict() == expected["count"].to_dict()
    assert learned["mean_s"].to_dict() == pytest.approx(expected["mean"].to_dict(), rel=1e-6)
    assert learned["std_s"].to_dict() == pytest.approx(expected["std"].to_dict(), rel=1e-4)
    assert learned["has_limit"].all()
    # Real work, really measured: fetch slept 1.0, 1.25, ... 2.0 s, the Bash task 1 s, each mapped part
    # 0.3 s (three a run), flaky's successful second try 0.5 s (its failed first tries are not
    # learned from), nap 2 s deferred (Airflow keeps a deferred task's start when it resumes).
    assert learned.loc[f"{DAG_ID}/fetch", "n_runs"] == HISTORY_RUNS
    assert 1.5 <= learned.loc[f"{DAG_ID}/fetch", "mean_s"] < 3.5
    assert learned.loc[f"{DAG_ID}/part", "n_runs"] == 3 * HISTORY_RUNS
    assert learned.loc[f"{DAG_ID}/load.rows", "mean_s"] >= 1.0
    assert learned.loc[f"{DAG_ID}/flaky", "n_runs"] == HISTORY_RUNS
    assert learned.loc[f"{DAG_ID}/nap", "mean_s"] >= 2.0
    # The sensor poked three times a second apart: 2 s and more from its first poke, where start_date
    # (set anew at each poke) gives its last poke alone.
    sensor_runs = success[success["task_type"] == f"{DAG_ID}/wait_for_partner"]
    assert learned.loc[f"{DAG_ID}/wait_for_partner", "mean_s"] >= 2.0 > sensor_runs["last_poke_s"].max()
    # Queue waits: dag.test() runs each task without the scheduler's executor queue, so Airflow writes
    # no queued_dttm and faultline learns no queue limit from these rows (queue waits are tested on
    # tables of Airflow's shape, in tests/test_queue_waits.py). Were they written, the limits would
    # have to be these: each attempt's start - queued_dttm.
    waits = airflow.rows(
        "SELECT dag_id || '/' || task_id AS task_type, "
        "EXTRACT(EPOCH FROM start_date - queued_dttm) AS seconds FROM task_instance "
        "WHERE queued_dttm IS NOT NULL AND start_date > queued_dttm AND state <> 'queued'"
    )
    _, queue_limits = resolved(built, "alert_store").latest_baselines(QUEUED)
    assert waits.empty and queue_limits.empty
    # broken failed in every run: no limit, and no run of it is in any other's history.
    assert f"{DAG_ID}/broken" not in learned.index
    states = airflow.rows("SELECT task_id, state, try_number FROM task_instance")
    assert (states.query("task_id == 'broken'")["state"] == "failed").sum() == HISTORY_RUNS
    assert states.query("task_id == 'flaky' and state == 'success'")["try_number"].eq(2).all()

    # The hang: fetch's first try, running past its limit, alerted once, at the sensor's real clock.
    limit = learned.loc[f"{DAG_ID}/fetch", "upper_limit_s"]
    sensor = build_long_running_tasks_sensor()

    def tick() -> str:
        context = dg.build_sensor_context(instance=instance, resources=built.resources)
        return sensor(context).skip_reason.skip_message

    def past_limit(try_number: int) -> bool:
        row = running_fetch(airflow, try_number)
        return row is not None and (datetime.now(UTC) - row["start_date"]).total_seconds() > limit + 1

    assert until(lambda: past_limit(1), patience_s=120)
    first = tick()
    assert first.startswith("Alerted: 1 running tasks past their limit (1 running, 1 checked"), first
    assert tick().startswith("No new task over its limit (1 running")
    # Every row Airflow wrote, the hang's run skipped and waiting ones too, is one the source knows.
    workflow = resolved(built, "workflow")
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rejected = workflow.rejected_runs(midnight - timedelta(days=14), midnight + timedelta(days=1))
    assert rejected.empty, rejected
    # Released, the first try fails; the retry hangs again, and is alerted again.
    airflow.release.touch()
    assert until(lambda: past_limit(2), patience_s=120)
    assert tick().startswith("Alerted: 1 running tasks past their limit (1 running, 1 checked")

    alerts = resolved(built, "alert_store").alerts()
    hang_run = running_fetch(airflow, 2)["run_id"]
    fields = ["dag_id", "task_id", "dag_run_id", "map_index", "try_number"]
    assert alerts[fields].values.tolist() == [
        [DAG_ID, "fetch", hang_run, -1, 1], [DAG_ID, "fetch", hang_run, -1, 2]
    ]  # fmt: skip
    assert alerts["upper_limit_s"].tolist() == pytest.approx([limit, limit])
    assert (alerts["elapsed_s"] > limit).all()
    assert alerts["link"].tolist() == [
        f"{BASE_URL}dags/{DAG_ID}/runs/{quote(hang_run, safe='')}/tasks/fetch?try_number={n}" for n in (1, 2)
    ]
    # Airflow's database holds its own tables only: faultline wrote nothing there.
    assert not {"alerts", "alert_deliveries", "task_duration_baselines"} & set(
        sa.inspect(admin).get_table_names()
    )
