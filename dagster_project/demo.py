"""The demo: two weeks of a deployment, run through the Dagster instance that `make dev` opens.

`python -m dagster_project.demo` (what `make demo` runs) seeds two weeks of deployment errors and task
runs into the embedded stores, backfills both daily jobs over those days, ticks the sensor through
the instance, replays the backtest and prints what came out. Everything lands in the project's
`data/` folder; `make dev` then shows the backfills, their runs, every day's figures and the tick.
"""

import functools
import logging
import multiprocessing
import os
import shutil
import sqlite3
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.remote_representation.external_data import partition_set_snap_name_for_job_name
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_SET_TAG
from dagster._core.utils import make_new_backfill_id
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.sensor import execute_sensor_iteration

from assets.settings import Settings
from dagster_project.definitions import build_definitions
from faultline.alerting import alert_text
from faultline.demo_data.ci_failures import generate_ci_jobs, write_ci_jobs
from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.demo_data.task_runs import DemoTaskRuns, generate_task_runs
from faultline.report import ClusterReport, changes_by_day
from resources.sql import data_dir, safe_url

DEMO_DAYS = 14
DEMO_ERROR_EVENTS = 20_000
# The second store: a CI system's failed jobs, JSON-lines files a day each, in another shape, over the
# demo's last week (each day costs 2 to 3 s, most of it Doc2Vec's 1,000 epochs whatever the day's size;
# make demo is to stay under two minutes).
DEMO_CI_DAYS = 7
DEMO_CI_FAILURES_PER_DAY = 430
CI_FOLDER = "ci_jobs"
CI_MARKER = "faultline_demo_store"  # marks the folder as the demo's, so the next demo may replace it
# Two weeks to fit the limits on, and two more for the backtest to replay.
DEMO_TASK_RUN_DAYS = 28
# A day of the error-cluster graph is one core's work (Doc2Vec trains on one thread): two processes
# backfill two weeks in about half the time of one.
DEMO_WORKERS = 2
ERROR_CLUSTERS_JOB = "error_clusters_daily"
BASELINES_JOB = "task_duration_baselines_daily"
BACKTEST_JOB = "duration_alert_backtest_weekly"
CHART_JOB = "duration_limit_chart_on_alerts"  # its sensor runs it on new alerts under `make dev`
SENSOR = "long_running_tasks"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# The code location `make dev` loads; the demo's tick and backfills are recorded against it.
WORKSPACE_FILE = Path(__file__).resolve().parents[1] / "workspace.yaml"
# The demo's first day, which `make dev` gives its code location as FAULTLINE_START_DATE.
START_DATE_FILE = "demo_start_date"


def demo_days(today: datetime, days: int = DEMO_DAYS) -> list[str]:
    """The `days` whole UTC days before `today`, oldest first: the days of the demo's data, and so the
    partitions of its definitions."""
    midnight = today.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return [(midnight - timedelta(days=back)).strftime("%Y-%m-%d") for back in range(days, 0, -1)]


def demo_definitions(start_date: str) -> dg.Definitions:
    """The demo's own definitions: embedded stores, no alert sink, partitions from `start_date`.

    The demo writes its own data and alerts no one, so it builds its definitions from the embedded
    defaults, never from the deployment's FAULTLINE_* variables.
    """
    for setting in fields(Settings):
        name = setting.metadata["env"]
        if os.environ.get(name, "").strip():
            print(f"{name} is set; the demo ignores it and keeps to {data_dir()}.")
    _replace_demo_store(data_dir() / "faultline.db")
    return build_definitions(Settings(start_date=start_date))


def _isolate_environment(start_date: str) -> None:
    """Leave the demo's settings alone in the environment, since the code server the demo starts (the
    one `make dev` loads) builds its definitions from it: the same as `demo_definitions`'."""
    for setting in fields(Settings):
        os.environ.pop(setting.metadata["env"], None)
    os.environ["FAULTLINE_START_DATE"] = start_date


# The table that marks a store as the demo's own, and so one the next demo may delete.
DEMO_MARKER_TABLE = "faultline_demo_store"


def _replace_demo_store(path: Path) -> None:
    """Delete the last demo's store and start a new one, marked as the demo's; a store there that the
    demo did not create (the embedded default is the same file) is never touched."""
    if path.exists():
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as store:
                marked = store.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (DEMO_MARKER_TABLE,)
                ).fetchone()
        except sqlite3.DatabaseError:
            marked = None
        if not marked:
            raise SystemExit(
                f"{path} holds data the demo did not create, and the demo never deletes it: move it, or "
                "run the demo with FAULTLINE_DATA_DIR set to another folder."
            )
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as store:
        store.execute(f"CREATE TABLE {DEMO_MARKER_TABLE} (created_at TEXT)")
        store.execute(f"INSERT INTO {DEMO_MARKER_TABLE} VALUES (datetime('now'))")
        store.commit()


# What `make dev` runs on: the deployment's run queue, monitoring and launcher, on the embedded storage. The
# first line marks the instance as the demo's, which the next demo replaces.
DEMO_INSTANCE = """\
# The demo's Dagster instance (dagster_project/demo.py): the next `make demo` replaces it.
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
    dequeue_interval_seconds: 1
run_launcher:
  module: dagster_project.run_launcher
  class: MonitoredRunLauncher
run_monitoring:
  enabled: true
  poll_interval_seconds: 60
  max_resume_run_attempts: 0
  max_runtime_seconds: 21600
"""


def instance_home() -> Path:
    """The demo's Dagster instance (DAGSTER_HOME), the one `make dev` opens."""
    return data_dir() / "dagster_home"


def _replace_dagster_home(start_date: str) -> dg.DagsterInstance:
    """A new instance for the demo's two weeks, the one `make dev` opens.

    Each demo starts one afresh: runs of an earlier demo's days would not match this one's data, and
    a sensor ticked minutes ago would not tick again. An instance the demo did not write (another
    dagster.yaml) is never touched; one with no dagster.yaml is what `make dev` left before any demo.
    """
    home = instance_home()
    config = home / "dagster.yaml"
    if (
        config.exists()
        and config.read_text(encoding="utf-8").partition("\n")[0] != DEMO_INSTANCE.partition("\n")[0]
    ):
        raise SystemExit(
            f"{home} holds a Dagster instance the demo did not create, and the demo never deletes it: move "
            "it, or run the demo with FAULTLINE_DATA_DIR set to another folder."
        )
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    config.write_text(DEMO_INSTANCE, encoding="utf-8")
    (data_dir() / START_DATE_FILE).write_text(f"{start_date}\n", encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


@dataclass(frozen=True)
class PartitionRun:
    """One backfill run: a job on a day, whether it succeeded, and for the error-cluster graph the
    day's report and the file it was written to."""

    job_name: str
    day: str
    success: bool
    report: ClusterReport | None = None
    report_file: str | None = None


@functools.cache
def _worker_definitions(start_date: str) -> tuple[dg.Definitions, dg.DagsterInstance]:
    return build_definitions(Settings(start_date=start_date)), dg.DagsterInstance.get()


def _run_partition(start_date: str, job_name: str, day: str, tags: dict[str, str]) -> PartitionRun:
    """Run `job_name` on `day` in this worker process, in the demo's instance, as part of a backfill."""
    defs, instance = _worker_definitions(start_date)
    result = defs.resolve_job_def(job_name).execute_in_process(
        partition_key=day, instance=instance, run_config=QUIET, tags=tags, raise_on_error=False
    )
    if job_name != ERROR_CLUSTERS_JOB:
        return PartitionRun(job_name, day, result.success)
    return _error_clusters_run(day, result)


def _error_clusters_run(day: str, result: dg.ExecuteInProcessResult) -> PartitionRun:
    """A run of the error-cluster graph on `day`: whether it succeeded, and its report and report file."""
    if not result.success:
        return PartitionRun(ERROR_CLUSTERS_JOB, day, False)
    report_key = dg.AssetKey("error_cluster_report")
    materialization = next(
        event.materialization
        for event in result.get_asset_materialization_events()
        if event.materialization.asset_key == report_key
    )
    return PartitionRun(
        ERROR_CLUSTERS_JOB,
        day,
        True,
        result.asset_value(report_key),
        str(materialization.metadata["report_file"].value),
    )


def _backfill_tags(backfill_ids: dict[str, str]) -> dict[str, dict[str, str]]:
    """The tags of a backfill's runs, as the backfill daemon gives them."""
    return {
        job: {BACKFILL_ID_TAG: backfill_id, PARTITION_SET_TAG: partition_set_snap_name_for_job_name(job)}
        for job, backfill_id in backfill_ids.items()
    }


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send this process's standard error (file descriptor 2, which a child process inherits) to `path`."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _record_backfills(
    instance: dg.DagsterInstance,
    workspace: WorkspaceProcessContext,
    backfill_ids: dict[str, str],
    days: list[str],
    runs: list[PartitionRun],
    started_at: float,
) -> None:
    """Record each job's backfill as done, against the code location `make dev` loads, so that the UI
    lists it with its runs. Recorded only once done: the backfill daemon of a later `make dev` would
    launch the runs of a backfill left requested."""
    repository = next(iter(_code_location(workspace).get_repositories().values()))
    for job_name, backfill_id in backfill_ids.items():
        succeeded = all(run.success for run in runs if run.job_name == job_name)
        instance.add_backfill(
            PartitionBackfill(
                backfill_id=backfill_id,
                status=BulkActionStatus.COMPLETED_SUCCESS if succeeded else BulkActionStatus.COMPLETED_FAILED,
                from_failure=False,
                tags={},
                backfill_timestamp=started_at,
                backfill_end_timestamp=time.time(),
                partition_set_origin=repository.get_partition_set(
                    partition_set_snap_name_for_job_name(job_name)
                ).get_remote_origin(),
                partition_names=days,
                title=f"make demo: {job_name}",
                description=f"The demo's {len(days)} days, {days[0]} to {days[-1]}.",
            )
        )


def _code_location(workspace: WorkspaceProcessContext):
    (entry,) = workspace.create_request_context().get_code_location_entries().values()
    if entry.code_location is None:
        raise SystemExit(f"The code location {entry.origin.location_name} did not load: {entry.load_error}")
    return entry.code_location


def _tick_sensor(instance: dg.DagsterInstance, workspace: WorkspaceProcessContext):
    """One tick of the sensor as the daemon of `make dev` ticks it, so the instance records the tick,
    its result and the events it reports; the tick's log is the tick's own (the UI's "View logs")."""
    sensors = [
        sensor
        for repository in _code_location(workspace).get_repositories().values()
        for sensor in repository.get_sensors()
    ]
    # The iteration ticks every running sensor: the others wait (their runs are `make dev`'s daemon's
    # to launch; the demo runs the chart job itself), then run again as their defaults say.
    others = [sensor for sensor in sensors if sensor.name != SENSOR]
    for other in others:
        instance.stop_sensor(other.get_remote_origin_id(), other.selector_id, other)
    try:
        list(execute_sensor_iteration(workspace, logging.getLogger("faultline.demo"), None, None))
    finally:
        for other in others:
            instance.start_sensor(other)
    (sensor,) = [sensor for sensor in sensors if sensor.name == SENSOR]
    ticks = instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id, limit=1)
    if not ticks or ticks[0].status not in (TickStatus.SUCCESS, TickStatus.SKIPPED):
        error = ticks[0].error if ticks else "no tick was recorded"
        raise SystemExit(f"The sensor {SENSOR} did not tick: {error}")
    return ticks[0]


def _print_report(report: ClusterReport, day: str, path: str) -> None:
    print(
        f"\n{day}: {report.n_events} error events, {report.n_clusters} clusters, "
        f"noise {100 * report.noise_share:.1f}%   (full report: {path})\n"
    )
    print(f"{'group':<12} {'share':>7} {'events':>7}  label | hint")
    for row in report.groups.itertuples(index=False):
        text = " | ".join(filter(None, (row.label, row.hint))) or "(messages that fit no group)"
        text = textwrap.shorten(text, 120, placeholder=" …")
        print(f"{row.name:<12} {row.share_pct:>6.2f}% {row.n_events:>7}  {text}")


def _print_alerts(alerts: pd.DataFrame, planted: set[str]) -> None:
    print(f"\n{SENSOR}: {len(alerts)} running tasks past their limit")
    for alert in alerts.to_dict(orient="records"):
        print(f"  - {alert_text(alert)}")
    found = set(alerts["run_id"])
    print(
        f"The demo planted {len(planted)} stuck runs: {len(planted & found)} flagged, "
        f"{len(planted - found)} missed, {len(found - planted)} flagged that were not planted."
    )


def ci_store_settings(start_date: str) -> Settings:
    """The settings a team whose failures are a CI system's JSON-lines files gives (README, "Error
    sources"): the files by the date in their name, the log tail clustered, the failed jobs the errors,
    generic cleaning rules; its own database, parts and reports beside the Qovery store's."""
    folder = data_dir() / CI_FOLDER
    return Settings(
        start_date=start_date,
        task_durations="off",
        error_group_alerts="off",
        error_source="files",
        error_files=str(folder / "{date}.jsonl.gz"),
        error_message_field="log.tail",
        error_state_field="conclusion",
        error_states="failure",
        error_scope_field="job.name",
        db_url=f"sqlite:///{folder / 'faultline.db'}",
        parts_dir=str(folder / "parts"),
        reports_dir=str(folder / "reports"),
    )


def _run_ci_store(start_date: str, days: list[str], end: datetime) -> PartitionRun:
    """The CI store's files written, and the error-cluster graph run on each of its days in this process,
    on an instance of its own (the UI shows the Qovery store's); the newest day's run."""
    folder = data_dir() / CI_FOLDER
    marker = folder / CI_MARKER
    if folder.exists() and not marker.exists():
        raise SystemExit(
            f"{folder} holds files the demo did not write, and the demo never deletes them: move them, or "
            "run the demo with FAULTLINE_DATA_DIR set to another folder."
        )
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    marker.write_text("Written by `make demo`, which replaces this folder.\n", encoding="utf-8")
    write_ci_jobs(
        folder, generate_ci_jobs(end, days=len(days), n_failures=DEMO_CI_FAILURES_PER_DAY * len(days))
    )
    defs = build_definitions(ci_store_settings(start_date))
    job = defs.resolve_job_def(ERROR_CLUSTERS_JOB)
    with dg.DagsterInstance.ephemeral() as instance:
        for day in days:
            run = _error_clusters_run(
                day,
                job.execute_in_process(
                    partition_key=day, instance=instance, run_config=QUIET, raise_on_error=False
                ),
            )
            if not run.success:
                break
    return run


def _seed_task_runs(defs: dg.Definitions, now: pd.Timestamp) -> DemoTaskRuns:
    demo_runs = generate_task_runs(now, days=DEMO_TASK_RUN_DAYS)
    defs.resources["workflow"].write_runs(demo_runs.runs, replace=True)
    return demo_runs


def run_demo(
    today: datetime | None = None,
    days: int = DEMO_DAYS,
    n_error_events: int = DEMO_ERROR_EVENTS,
    workers: int = DEMO_WORKERS,
) -> None:
    """The whole demo over the `days` days before `today` (by default, now)."""
    started, started_at = time.monotonic(), time.time()
    partition_days = demo_days(today or datetime.now(UTC), days)
    start_date, newest_day = partition_days[0], partition_days[-1]
    defs = demo_definitions(start_date)
    _isolate_environment(start_date)
    instance = _replace_dagster_home(start_date)

    event_store = defs.resources["event_store"]
    end = datetime.strptime(newest_day, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)
    # The story: a cause new on day 12, one tripled from day 12, one gone after day 9 (DEMO_STORY).
    rows = generate_deployment_batches(end=end, days=days, n_error_events=n_error_events, story=True)
    event_store.create_table(replace=True)
    event_store.write_batches(rows)
    print(
        f"Seeded {len(rows)} batches ({n_error_events} error events over {days} days) "
        f"into {safe_url(event_store.url)}"
    )
    demo_runs = _seed_task_runs(defs, pd.Timestamp.now(tz="UTC").floor("s"))
    n_types = demo_runs.runs["task_type"].nunique()
    print(f"Seeded {len(demo_runs.runs)} task runs of {n_types} task types over {DEMO_TASK_RUN_DAYS} days.")

    backfill_ids = {job: make_new_backfill_id() for job in (ERROR_CLUSTERS_JOB, BASELINES_JOB)}
    tags = _backfill_tags(backfill_ids)
    print(
        f"Backfilling {days} days ({start_date} to {newest_day}) of {' and '.join(backfill_ids)}, "
        f"the error clusters in {workers} processes ..."
    )
    with ExitStack() as stack:
        # Spawned: a forked copy of a process holding Dagster's threads and connections is unsafe.
        pool = stack.enter_context(
            ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        )

        def run_error_clusters(days_to_run: list[str]) -> list[Future]:
            return [
                pool.submit(_run_partition, start_date, ERROR_CLUSTERS_JOB, day, tags[ERROR_CLUSTERS_JOB])
                for day in days_to_run
            ]

        # The newest day of each job runs once the older ones are done, so that the UI's latest
        # materialization of each asset is the newest day's. The workers start here, before the
        # standard error is sent elsewhere.
        older_days = run_error_clusters(partition_days[:-1])
        # Meanwhile the code server `make dev` loads starts (the daemon ticks the sensor in it), its
        # output in a log file, the sensor's log lines among it: the terminal gets each alert once, from
        # the demo. And this process learns each day's limits, ticks the sensor and runs the backtest.
        with _stderr_to(instance_home() / "code_server.log"):
            workspace = stack.enter_context(
                WorkspaceProcessContext(
                    instance,
                    WorkspaceFileTarget(paths=[str(WORKSPACE_FILE)]),
                    code_server_log_level="WARNING",
                )
            )
        runs = [_run_partition(start_date, BASELINES_JOB, day, tags[BASELINES_JOB]) for day in partition_days]
        # The history again, as of the tick: the generator only shifts it in time, so the runs running
        # when the sensor looks are exactly those it made running (and only the planted ones overdue).
        demo_runs = _seed_task_runs(defs, pd.Timestamp.now(tz="UTC").floor("s"))
        tick = _tick_sensor(instance, workspace)
        backtest = (
            defs.resolve_job_def(BACKTEST_JOB)
            .execute_in_process(instance=instance, run_config=QUIET)
            .asset_value("duration_alert_backtest")
        )
        limits_chart = next(
            event.materialization.metadata["chart_file"].value
            for event in defs.resolve_job_def(CHART_JOB)
            .execute_in_process(instance=instance, run_config=QUIET)
            .get_asset_materialization_events()
        )
        # The second store's days, in this process while the workers finish the first's.
        ci_run = _run_ci_store(start_date, partition_days[-DEMO_CI_DAYS:], end)
        runs += [future.result() for future in older_days]
        runs += [future.result() for future in run_error_clusters(partition_days[-1:])]
        _record_backfills(instance, workspace, backfill_ids, partition_days, runs, started_at)

    failed = [f"{run.job_name} {run.day}" for run in runs if not run.success]
    if failed:
        raise SystemExit(f"These runs failed: {', '.join(failed)}. `make dev` shows their logs.")
    if not ci_run.success:
        raise SystemExit(f"The CI store's {ERROR_CLUSTERS_JOB} failed on {ci_run.day}.")
    newest = next(run for run in runs if run.job_name == ERROR_CLUSTERS_JOB and run.day == newest_day)
    _print_report(newest.report, newest_day, newest.report_file)
    shares_chart = Path(newest.report_file).with_name(f"error_clusters_{newest_day}-shares.png")
    if shares_chart.exists():
        print(f"\nThe largest groups' daily share over the {days} days, drawn: {shares_chart}")
    changes = changes_by_day(defs.resources["error_catalog"].group_days())
    print(f"\nError groups across the {days} days, what changed (data/reports/error_groups_<day>.md):")
    print("\n".join(f"  {line}" for line in changes) if changes else "  nothing after the first day")
    print(f"\nThe second store, a CI system's failed jobs as JSON-lines files ({data_dir() / CI_FOLDER}):")
    _print_report(ci_run.report, newest_day, ci_run.report_file)
    as_of, limits = defs.resources["alert_store"].latest_baselines()
    print(
        f"\nLearned limits for {int(limits['has_limit'].sum())} of {len(limits)} task types "
        f"(as of {as_of:%Y-%m-%d})."
    )
    _print_alerts(defs.resources["alert_store"].alerts(), demo_runs.expected_overdue_run_ids)
    status = tick.status.value.lower()
    print(f"`make dev` shows the tick in the tick history of {SENSOR} ({status}: it requests no run).")
    print(f"Their task types' runs against their limits, drawn: {limits_chart}")
    print("\nBacktest at the sensor's 10-minute cadence (3x slowdowns and hangs injected):")
    print(backtest.round(3).to_string(index=False))
    print(f"\nDone in {time.monotonic() - started:.0f} s. `make dev` opens these runs in the Dagster UI.")


def main() -> None:
    run_demo()


if __name__ == "__main__":
    main()
