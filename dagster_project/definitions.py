"""The code location: every asset, check, job, schedule and sensor of faultline, with its resources."""

import dagster as dg

from assets import error_clusters, task_durations
from dagster_project.jobs import error_clusters_job, task_duration_baselines_job
from dagster_project.resources import build_resources
from dagster_project.schedules import error_clusters_schedule, task_duration_baselines_schedule
from dagster_project.sensors import long_running_tasks_sensor

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([error_clusters, task_durations]),
    jobs=[error_clusters_job, task_duration_baselines_job],
    schedules=[error_clusters_schedule, task_duration_baselines_schedule],
    sensors=[long_running_tasks_sensor],
    resources=build_resources(),
)
