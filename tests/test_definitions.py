"""The code location loads whole: every asset, check, job and schedule, resources from the environment."""

import os
import re
import subprocess
import sys

import dagster as dg
import pytest

from assets.error_clusters import DumpConfig, FlattenConfig
from assets.settings import Settings
from dagster_project.definitions import build_definitions, defs
from dagster_project.resources import build_resources

ERROR_CLUSTER_ASSETS = {
    "deployment_events_dump",
    "flattened_events",
    "event_quarantine",
    "cleaned_corpus",
    "error_vectors",
    "error_clusters",
    "error_share_chart",
    "error_cluster_report",
    "error_groups",
}


def test_every_error_cluster_asset_is_in_the_code_location():
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert ERROR_CLUSTER_ASSETS <= keys


def test_the_daily_schedule_runs_the_partitioned_job_after_midnight_utc():
    schedule = defs.resolve_schedule_def("error_clusters_daily_schedule")
    assert schedule.cron_schedule == "0 1 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = defs.resolve_job_def("error_clusters_daily")
    assert isinstance(job.partitions_def, dg.DailyPartitionsDefinition)
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == ERROR_CLUSTER_ASSETS


def test_asset_checks_warn_about_empty_days_unreadable_records_noise_and_stuck_tasks():
    check_names = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert check_names == {
        "dump_has_rows",
        "quarantine_share_is_low",
        "noise_share_is_normal",
        "tasks_within_their_limit",
    }


@pytest.mark.parametrize(
    ("variables", "has_queue_check"),
    [
        ({}, False),  # the `sql` contract records no queue times
        ({"FAULTLINE_WORKFLOW_QUEUED_AT_COLUMN": "submitted"}, True),
        ({"FAULTLINE_WORKFLOW_SOURCE": "airflow"}, True),
        ({"FAULTLINE_WORKFLOW_SOURCE": "dagster"}, True),
        ({"FAULTLINE_WORKFLOW_SOURCE": "airflow", "FAULTLINE_QUEUE_CHECKS": "off"}, False),
    ],
)
def test_the_queue_check_is_there_where_the_source_records_queue_times(variables, has_queue_check):
    graph = build_definitions(Settings.from_env(variables)).resolve_asset_graph()
    names = {key.name for key in graph.asset_check_keys}
    assert ("tasks_within_their_queue_limit" in names) is has_queue_check
    assert "tasks_within_their_limit" in names


def test_every_check_has_a_description_the_ui_shows():
    graph = defs.resolve_asset_graph()
    descriptions = {key.name: graph.get_check_spec(key).description for key in graph.asset_check_keys}
    assert all(descriptions.values()), descriptions


def test_the_backtest_runs_weekly_as_a_named_job():
    job = defs.resolve_job_def("duration_alert_backtest_weekly")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {
        "duration_alert_backtest"
    }
    assert job.tags["dagster/max_runtime"] == "7200"
    schedule = defs.resolve_schedule_def("duration_alert_backtest_weekly_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * 1", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "duration_alert_backtest_weekly"


def test_every_asset_is_in_a_named_job_a_schedule_or_a_sensor_runs():
    scheduled = ["error_clusters_daily", "task_duration_baselines_daily", "duration_alert_backtest_weekly"]
    names = [*scheduled, "duration_limit_chart_on_alerts"]
    jobs = [defs.resolve_job_def(name) for name in names]
    in_jobs = {key for job in jobs for key in job.asset_layer.executable_asset_keys}
    assert in_jobs == set(defs.resolve_all_asset_keys())
    assert {schedule.job_name for schedule in defs.schedules} == set(scheduled)
    # The limits' chart is drawn when alerts are new, by a sensor of its own.
    assert defs.resolve_sensor_def("duration_limit_chart_on_new_alerts").job_name == names[-1]


def test_the_daily_limits_job_learns_the_limits_and_leaves_their_check_to_the_sensor():
    job = defs.resolve_job_def("task_duration_baselines_daily")
    assert job.asset_layer.asset_graph.asset_check_keys == set()


def test_every_run_executes_its_steps_in_one_process():
    """A process per step re-imports dagster, gensim, scikit-learn and pandas (17-25 s a step): the
    jobs, and the asset job the UI's Materialize button runs, execute their steps in process."""
    names = [job.name for job in defs.jobs]
    executors = {name: defs.resolve_job_def(name).executor_def for name in names}
    executors["Materialize"] = defs.resolve_implicit_global_asset_job_def().executor_def
    assert all(executor is dg.in_process_executor for executor in executors.values()), executors


def test_resources_read_their_urls_from_the_environment():
    settings = Settings.from_env(
        {
            "FAULTLINE_EVENTS_DB_URL": "postgresql://faultline:secret@db:5432/faultline",
            "FAULTLINE_REPORTS_DIR": "/srv/reports",
        }
    )
    resources = build_resources(settings)
    assert resources["event_store"].url == dg.EnvVar("FAULTLINE_EVENTS_DB_URL")
    assert resources["report_store"].directory == dg.EnvVar("FAULTLINE_REPORTS_DIR")


def test_resources_default_to_the_embedded_demo_store():
    assert build_resources(Settings.from_env({}))["event_store"].url.startswith("sqlite:///")


def test_the_environment_sets_the_calendar_the_estimator_the_cadence_and_the_retries():
    settings = Settings.from_env(
        {
            "FAULTLINE_START_DATE": "2026-11-08",
            "FAULTLINE_ESTIMATOR": "log_mad",
            "FAULTLINE_SENSOR_INTERVAL_S": "5",
            "FAULTLINE_SOURCE_RETRIES": "5",
            "FAULTLINE_SOURCE_RETRY_DELAY_S": "12.5",
        }
    )
    built = build_definitions(settings)
    for job in ("error_clusters_daily", "task_duration_baselines_daily"):
        assert built.resolve_job_def(job).partitions_def.get_first_partition_key() == "2026-11-08"
    assert built.resolve_assets_def("cleaned_corpus").partitions_def.get_first_partition_key() == "2026-11-08"
    job = built.resolve_job_def("task_duration_baselines_daily")
    run_config = job.partitioned_config.get_run_config_for_partition_key("2026-11-09")
    assert run_config["ops"]["task_duration_baselines"]["config"] == {"estimator": "log_mad"}
    assert built.resolve_sensor_def("long_running_tasks").minimum_interval_seconds == 5
    for source in ("event_store", "workflow"):
        resource = built.resources[source]
        assert (resource.outage_retries, resource.outage_retry_delay_s) == (5, 12.5)


def test_unset_or_empty_variables_keep_the_defaults():
    # Empty, as docker-compose passes a variable its .env leaves unset.
    settings = Settings.from_env({"FAULTLINE_SOURCE_RETRIES": "", "FAULTLINE_SENSOR_INTERVAL_S": " "})
    assert settings == Settings()
    built = build_definitions(settings)
    assert built.resolve_sensor_def("long_running_tasks").minimum_interval_seconds == 600
    partitions = built.resolve_job_def("error_clusters_daily").partitions_def
    assert partitions.get_first_partition_key() == "2025-01-01"
    assert built.resources["event_store"].outage_retries == 3


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("FAULTLINE_SOURCE_RETRIES", "many", "FAULTLINE_SOURCE_RETRIES='many' is not an integer"),
        ("FAULTLINE_SOURCE_RETRY_DELAY_S", "nan", "_DELAY_S='nan' must be a finite number"),
        ("FAULTLINE_SOURCE_RETRY_DELAY_S", "inf", "_DELAY_S='inf' must be a finite number"),
        ("FAULTLINE_SOURCE_RETRY_DELAY_S", "-1", "at least 0"),
        ("FAULTLINE_SENSOR_INTERVAL_S", "0", "INTERVAL_S='0' must be a finite number, at least 1"),
        ("FAULTLINE_ESTIMATOR", "median", "median"),
        ("FAULTLINE_WORKFLOW_SOURCE", "kestra", "FAULTLINE_WORKFLOW_SOURCE='kestra': use airflow, sql or"),
        ("FAULTLINE_ERROR_CLUSTERS", "no", "FAULTLINE_ERROR_CLUSTERS='no': use on or off"),
        ("FAULTLINE_TASK_DURATIONS", "false", "FAULTLINE_TASK_DURATIONS='false': use on or off"),
        ("FAULTLINE_START_DATE", "yesterday", "yesterday"),
    ],
)
def test_a_wrong_setting_fails_the_code_location_naming_the_variable(name: str, value: str, error: str):
    with pytest.raises(ValueError, match=re.escape(error)):
        Settings.from_env({name: value})


def test_importing_the_assets_and_jobs_reads_no_environment():
    """Settings are resolved when definitions are built: a module that reads the environment at import
    would make every later `build_definitions` inherit what was set then."""
    code = (
        "import os, dagster_project.definitions as d\n"
        "from assets.settings import Settings\n"
        "os.environ['FAULTLINE_START_DATE'] = '2026-01-05'\n"
        "built = d.build_definitions(Settings.from_env())\n"
        "print(built.resolve_job_def('error_clusters_daily').partitions_def.get_first_partition_key())\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FAULTLINE_")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True
    )
    assert result.stdout.strip() == "2026-01-05"


def test_each_job_stops_after_its_maximum_runtime():
    built = build_definitions(Settings.from_env({"FAULTLINE_MAX_RUNTIME_S": "900"}))
    for job in ("error_clusters_daily", "task_duration_baselines_daily"):
        assert built.resolve_job_def(job).tags["dagster/max_runtime"] == "900"
    default = build_definitions(Settings())
    assert default.resolve_job_def("error_clusters_daily").tags["dagster/max_runtime"] == "7200"


def test_the_parts_retention_comes_from_the_environment_and_defaults_to_the_steps_config():
    built = build_definitions(Settings.from_env({"FAULTLINE_KEEP_DUMP_DAYS": "1.5"}))
    run_config = built.resolve_job_def("error_clusters_daily").partitioned_config
    ops = run_config.get_run_config_for_partition_key("2026-11-09")["ops"]
    assert ops["deployment_events_dump"]["config"] == {"keep_days": 1.5}
    assert ops["flatten_events"]["config"] == {"keep_days": FlattenConfig().keep_days} == {"keep_days": 30.0}
    assert DumpConfig().keep_days == Settings().keep_dump_days == 3.0


TASK_DURATION_ASSETS = {"task_duration_baselines", "duration_alert_backtest", "duration_limit_chart"}


def _parts(built: dg.Definitions) -> tuple[set[str], set[str], set[str], set[str], set[str]]:
    assets = {key.to_user_string() for key in built.resolve_all_asset_keys()}
    checks = {key.name for key in built.resolve_asset_graph().asset_check_keys}
    jobs = {job.name for job in built.jobs}
    schedules = {schedule.name for schedule in built.schedules}
    sensors = {sensor.name for sensor in built.sensors}
    return assets, checks, jobs, schedules, sensors


def test_with_the_error_clusters_off_the_location_holds_only_the_duration_half():
    built = build_definitions(Settings.from_env({"FAULTLINE_ERROR_CLUSTERS": "off"}))
    assets, checks, jobs, schedules, sensors = _parts(built)
    assert assets == TASK_DURATION_ASSETS
    assert checks == {"tasks_within_their_limit"}
    assert jobs == {
        "task_duration_baselines_daily", "duration_alert_backtest_weekly", "duration_limit_chart_on_alerts"
    }  # fmt: skip
    assert schedules == {"task_duration_baselines_daily_schedule", "duration_alert_backtest_weekly_schedule"}
    assert sensors == {"long_running_tasks", "duration_limit_chart_on_new_alerts"}


def test_with_the_task_durations_off_the_location_holds_only_the_error_cluster_half():
    built = build_definitions(Settings.from_env({"FAULTLINE_TASK_DURATIONS": "off"}))
    assets, checks, jobs, schedules, sensors = _parts(built)
    assert assets == ERROR_CLUSTER_ASSETS
    assert checks and not checks & {"tasks_within_their_limit", "tasks_within_their_queue_limit"}
    assert jobs == {"error_clusters_daily"}
    assert schedules == {"error_clusters_daily_schedule"}
    assert sensors == set()


def test_both_halves_are_on_by_default():
    assets, _, jobs, schedules, sensors = _parts(build_definitions(Settings()))
    assert assets == ERROR_CLUSTER_ASSETS | TASK_DURATION_ASSETS
    assert len(jobs) == 4 and len(schedules) == 3 and len(sensors) == 2


def test_alerts_and_limits_go_to_faultlines_database_never_to_the_workflow_database():
    settings = Settings.from_env(
        {
            "FAULTLINE_WORKFLOW_DB_URL": "postgresql+psycopg://reader@airflow-db/airflow",
            "FAULTLINE_DB_URL": "postgresql+psycopg2://faultline@db/faultline",
        }
    )
    resources = build_resources(settings)
    assert resources["workflow"].url == dg.EnvVar("FAULTLINE_WORKFLOW_DB_URL")
    assert resources["alert_store"].url == dg.EnvVar("FAULTLINE_DB_URL")
    embedded = build_resources(Settings.from_env({"FAULTLINE_WORKFLOW_DB_URL": "postgresql://r@a/airflow"}))
    assert embedded["alert_store"].url.startswith("sqlite:///") and embedded["alert_store"].url.endswith(
        "faultline.db"
    )
    told = build_resources(Settings.from_env({"FAULTLINE_ALERTS_DB_URL": "sqlite:///alerts.db"}))
    assert told["alert_store"].url == dg.EnvVar("FAULTLINE_ALERTS_DB_URL")


def test_error_group_alerts_are_on_by_default_and_off_by_the_environment():
    def alerts(environ: dict[str, str]) -> bool:
        built = build_definitions(Settings.from_env(environ))
        run_config = built.resolve_job_def("error_clusters_daily").partitioned_config
        return run_config.get_run_config_for_partition_key("2026-11-09")["ops"]["error_groups"]["config"][
            "alerts"
        ]

    assert alerts({}) is True
    assert alerts({"FAULTLINE_ERROR_GROUP_ALERTS": "off"}) is False
    with pytest.raises(ValueError, match="FAULTLINE_ERROR_GROUP_ALERTS='no': use on or off"):
        Settings.from_env({"FAULTLINE_ERROR_GROUP_ALERTS": "no"})


def test_loading_the_code_location_leaves_the_heavy_libraries_unimported():
    # Every run launched from the UI starts a process that loads the code location first: gensim,
    # scikit-learn, matplotlib and scipy.stats cost seconds to import, so they are imported where used.
    heavy = ("gensim", "sklearn", "matplotlib", "scipy.stats")
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, dagster_project.definitions as d; d.defs.get_repository_def(); "
         f"print(','.join(m for m in {heavy!r} if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert loaded.stdout.strip() == ""
