"""The demo: seed the embedded stores, run both pipelines for the latest day, print the results.

`python -m dagster_project.demo` (what `make demo` runs). Everything lands in the project's
`data/` folder, whose Dagster instance `make dev` opens in the UI afterwards.
"""

import os
import sqlite3
import textwrap
import time
from contextlib import closing
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from assets.settings import Settings
from assets.task_durations import duration_alert_backtest
from dagster_project.definitions import build_definitions
from dagster_project.sensors import build_long_running_tasks_sensor
from faultline.alerting import alert_text
from faultline.demo_data.deployment_events import generate_deployment_batches
from faultline.demo_data.task_runs import generate_task_runs
from faultline.report import ClusterReport
from resources.sql import data_dir, safe_url

DEMO_DAYS = 14
DEMO_ERROR_EVENTS = 20_000
# Two weeks to fit the limits on, and two more for the backtest to replay.
DEMO_TASK_RUN_DAYS = 28
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def demo_definitions() -> dg.Definitions:
    """The demo's own definitions: embedded stores, no alert sink, whatever the environment says.

    The demo writes its own data and alerts no one, so it builds its definitions from the embedded
    defaults (`Settings()`), never from the deployment's FAULTLINE_* variables.
    """
    for setting in fields(Settings):
        name = setting.metadata["env"]
        if os.environ.get(name, "").strip():
            print(f"{name} is set; the demo ignores it and keeps to {data_dir()}.")
    _replace_demo_store(data_dir() / "faultline.db")
    return build_definitions(Settings())


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


# What `make dev` runs on: the deployment's run monitoring and launcher, on the embedded storage.
DEMO_INSTANCE = """\
telemetry:
  enabled: false
run_launcher:
  module: dagster_project.run_launcher
  class: MonitoredRunLauncher
run_monitoring:
  enabled: true
  poll_interval_seconds: 60
  max_resume_run_attempts: 0
  max_runtime_seconds: 21600
"""


def _prepare_dagster_home() -> None:
    # Always the demo's own instance, the one `make dev` opens.
    home = os.environ["DAGSTER_HOME"] = str(data_dir() / "dagster_home")
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "dagster.yaml"), "w", encoding="utf-8") as file:
        file.write(DEMO_INSTANCE)


def _print_report(report: ClusterReport, path: str) -> None:
    print(
        f"\n{report.n_events} error events, {report.n_clusters} clusters, "
        f"noise {100 * report.noise_share:.1f}%   (full report: {path})\n"
    )
    print(f"{'group':<12} {'share':>7} {'events':>7}  label | hint")
    for row in report.groups.itertuples(index=False):
        text = " | ".join(filter(None, (row.label, row.hint))) or "(messages that fit no group)"
        text = textwrap.shorten(text, 120, placeholder=" …")
        print(f"{row.name:<12} {row.share_pct:>6.2f}% {row.n_events:>7}  {text}")


def _print_alerts(alerts: pd.DataFrame, planted: set[str]) -> None:
    print(f"\nlong_running_tasks: {len(alerts)} running tasks past their limit")
    for alert in alerts.to_dict(orient="records"):
        print(f"  - {alert_text(alert)}")
    found = set(alerts["run_id"])
    print(
        f"The demo planted {len(planted)} stuck runs: {len(planted & found)} flagged, "
        f"{len(planted - found)} missed, {len(found - planted)} flagged that were not planted."
    )


def _run_duration_side(defs: dg.Definitions, instance: dg.DagsterInstance, day: str) -> None:
    now = pd.Timestamp.now(tz="UTC").floor("s")
    demo_runs = generate_task_runs(now, days=DEMO_TASK_RUN_DAYS)
    defs.resources["workflow"].write_runs(demo_runs.runs, replace=True)
    n_types = demo_runs.runs["task_type"].nunique()
    print(f"\nSeeded {len(demo_runs.runs)} task runs of {n_types} task types over {DEMO_TASK_RUN_DAYS} days.")

    defs.resolve_job_def("task_duration_baselines_daily").execute_in_process(
        partition_key=day, instance=instance, run_config=QUIET
    )
    as_of, limits = defs.resources["alert_store"].latest_baselines()
    with_limit = int(limits["has_limit"].sum())
    print(f"Learned limits for {with_limit} of {len(limits)} task types (as of {as_of:%Y-%m-%d}).")

    context = dg.build_sensor_context(
        instance=instance,
        resources={key: defs.resources[key] for key in ("workflow", "alert_store", "alert_sinks")},
    )
    build_long_running_tasks_sensor()(context)
    _print_alerts(defs.resources["alert_store"].alerts(), demo_runs.expected_overdue_run_ids)

    backtest = dg.materialize(
        [duration_alert_backtest],
        instance=instance,
        resources={"workflow": defs.resources["workflow"]},
        run_config=QUIET,
    ).asset_value("duration_alert_backtest")
    print("\nBacktest at the sensor's 10-minute cadence (3x slowdowns and hangs injected):")
    print(backtest.round(3).to_string(index=False))


def main() -> None:
    defs = demo_definitions()
    _prepare_dagster_home()
    started = time.monotonic()
    event_store = defs.resources["event_store"]
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = generate_deployment_batches(end=end, days=DEMO_DAYS, n_error_events=DEMO_ERROR_EVENTS)
    event_store.create_table(replace=True)
    event_store.write_batches(rows)
    print(
        f"Seeded {len(rows)} batches ({DEMO_ERROR_EVENTS} error events over {DEMO_DAYS} days) "
        f"into {safe_url(event_store.url)}"
    )

    day = (end - timedelta(days=1)).strftime("%Y-%m-%d")
    print(f"Materializing the error-cluster graph for {day} ...")
    instance = dg.DagsterInstance.get()
    # The step-by-step log is in the UI; the terminal gets the result.
    result = defs.resolve_job_def("error_clusters_daily").execute_in_process(
        partition_key=day, instance=instance, run_config=QUIET
    )
    report: ClusterReport = result.asset_value("error_cluster_report")
    materialization = next(
        event.materialization
        for event in result.get_asset_materialization_events()
        if event.materialization.asset_key == dg.AssetKey("error_cluster_report")
    )
    _print_report(report, materialization.metadata["report_file"].value)
    _run_duration_side(defs, instance, day)
    print(f"\nDone in {time.monotonic() - started:.0f} s. `make dev` opens these runs in the Dagster UI.")


if __name__ == "__main__":
    main()
