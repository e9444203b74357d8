"""The code location loads whole: every asset, check, job and schedule, resources from the environment."""

import dagster as dg

from dagster_project.definitions import defs
from dagster_project.resources import build_resources

ERROR_CLUSTER_ASSETS = {
    "deployment_events_dump",
    "flattened_events",
    "event_quarantine",
    "cleaned_corpus",
    "error_vectors",
    "error_clusters",
    "error_cluster_report",
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


def test_asset_checks_warn_about_empty_days_unreadable_records_and_noise():
    check_names = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert {"dump_has_rows", "quarantine_share_is_low", "noise_share_is_normal"} <= check_names


def test_resources_read_their_urls_from_the_environment(monkeypatch):
    monkeypatch.setenv("FAULTLINE_EVENTS_DB_URL", "postgresql://faultline:secret@db:5432/faultline")
    monkeypatch.setenv("FAULTLINE_REPORTS_DIR", "/srv/reports")
    resources = build_resources()
    assert resources["event_store"].url == dg.EnvVar("FAULTLINE_EVENTS_DB_URL")
    assert resources["report_store"].directory == dg.EnvVar("FAULTLINE_REPORTS_DIR")


def test_resources_default_to_the_embedded_demo_store(monkeypatch):
    monkeypatch.delenv("FAULTLINE_EVENTS_DB_URL", raising=False)
    assert build_resources()["event_store"].url.startswith("sqlite:///")


def test_the_scheduled_baselines_fit_the_estimator_the_environment_names(monkeypatch):
    import importlib

    import dagster_project.jobs as jobs

    def scheduled_estimator(value: str | None) -> str:
        if value:
            monkeypatch.setenv("FAULTLINE_ESTIMATOR", value)
        else:
            monkeypatch.delenv("FAULTLINE_ESTIMATOR", raising=False)
        job = importlib.reload(jobs).task_duration_baselines_job
        return job.config["ops"]["task_duration_baselines"]["config"]["estimator"]

    try:
        assert scheduled_estimator("log_mad") == "log_mad"
        assert scheduled_estimator(None) == "mean_std"
    finally:
        monkeypatch.delenv("FAULTLINE_ESTIMATOR", raising=False)
        importlib.reload(jobs)
