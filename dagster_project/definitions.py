"""The code location: every asset, check, job, schedule and sensor of faultline, with its resources.

The deployment's settings are read here, once, when the definitions are built; `build_definitions`
takes them as an argument, so the demo and the tests build definitions of their own without touching
the environment.
"""

import logging

import dagster as dg

from assets import charts, error_clusters, error_groups, task_durations
from assets.settings import Settings, daily_partitions
from assets.task_durations import QUEUE_CHECK, watched_asset_checks, watched_asset_keys
from dagster_project.jobs import (
    build_duration_alert_backtest_job,
    build_duration_limit_chart_job,
    build_error_clusters_job,
    build_task_duration_baselines_job,
)
from dagster_project.resources import build_resources
from dagster_project.schedules import error_clusters_schedules, task_durations_schedules
from dagster_project.sensors import build_duration_limit_chart_sensor, build_long_running_tasks_sensor


def _on_calendar(assets: list, partitions: dg.PartitionsDefinition) -> list:
    """The daily assets on the deployment's calendar (they are defined on the default one)."""
    return [
        asset.map_asset_specs(lambda spec: spec.replace_attributes(partitions_def=partitions))
        if isinstance(asset, dg.AssetsDefinition) and asset.partitions_def is not None
        else asset
        for asset in assets
    ]


def build_definitions(settings: Settings) -> dg.Definitions:
    """The code location; a half switched off (FAULTLINE_ERROR_CLUSTERS=off, FAULTLINE_TASK_DURATIONS=off)
    brings none of its assets, checks, jobs, schedules or sensors, so nothing runs against a store the
    deployment does not have."""
    partitions = daily_partitions(settings.start_date)
    resources = build_resources(settings)
    assets, checks, jobs, schedules, sensors = [], [], [], [], []
    if settings.error_clusters == "on":
        error_clusters_job = build_error_clusters_job(
            partitions,
            settings.max_runtime_s,
            settings.keep_dump_days,
            settings.keep_flattened_days,
            settings.error_group_alerts == "on",
        )
        assets += dg.load_assets_from_modules([error_clusters, error_groups]) + [charts.error_share_chart]
        checks += dg.load_asset_checks_from_modules([error_clusters])
        jobs.append(error_clusters_job)
        schedules += error_clusters_schedules(error_clusters_job)
    if settings.task_durations == "on":
        task_duration_baselines_job = build_task_duration_baselines_job(
            partitions, settings.estimator, settings.max_runtime_s
        )
        backtest_job = build_duration_alert_backtest_job(settings.max_runtime_s)
        chart_job = build_duration_limit_chart_job(settings.max_runtime_s)
        assets += dg.load_assets_from_modules([task_durations]) + [charts.duration_limit_chart]
        duration_checks = dg.load_asset_checks_from_modules([task_durations])
        if not _has_queue_times(settings):
            # No check that could never run: the source records no queue times (or they are off).
            duration_checks = [
                check for check in duration_checks if QUEUE_CHECK not in {k.name for k in check.check_keys}
            ]
        own = {key.to_user_string() for asset in assets for key in getattr(asset, "keys", ())}
        watched = _watched_assets(settings, resources, own)
        checks += duration_checks + watched_asset_checks(watched)
        jobs += [task_duration_baselines_job, backtest_job, chart_job]
        schedules += task_durations_schedules(task_duration_baselines_job, backtest_job)
        sensors += [
            build_long_running_tasks_sensor(settings.sensor_interval_s, watched_assets=watched),
            build_duration_limit_chart_sensor(chart_job, settings.sensor_interval_s),
        ]
    return dg.Definitions(
        assets=_on_calendar(assets, partitions),
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=resources,
        # Every run executes its steps in its own process, one after another (the graph is a chain),
        # as the demo's execute_in_process does. The default starts a process per step, which imports
        # dagster, gensim, scikit-learn and pandas again: a demo day launched from the UI took 89 s
        # from submit to success, 17 s in process (bench/ui_run.py). The steps still spread their
        # parts over worker processes of their own.
        executor=dg.in_process_executor,
    )


def _watched_assets(settings: Settings, resources: dict[str, object], own: set[str]) -> list[str]:
    """With the `dagster` source, the assets that have a limit of their own in the latest limits (keys
    as user strings), but faultline's `own`: each gets the check `within_its_runtime_limit`. Read
    when the code location loads, so an asset newly learned gets its check at the next reload; a
    store that cannot be read leaves the location loading without them."""
    if settings.workflow_source != "dagster":
        return []
    try:
        with dg.build_resources({"alert_store": resources["alert_store"]}) as built:
            _, baselines = built.alert_store.latest_baselines()
    except Exception as error:  # noqa: BLE001 - the location must load; the sensor still alerts
        logging.getLogger(__name__).warning(
            f"The watched assets' checks are left out: the limits could not be read ({type(error).__name__})."
        )
        return []
    return watched_asset_keys(baselines, own)


def _has_queue_times(settings: Settings) -> bool:
    """Whether the task source can tell how long tasks wait queued (resources/queue_waits.py): Airflow's
    queued_dttm and Dagster's runs by default, a `sql` table when its queue column is named."""
    if settings.queue_checks == "off":
        return False
    named = settings.workflow_queued_at_column is not None
    return settings.workflow_source in ("airflow", "dagster") or named


defs = build_definitions(Settings.from_env())
