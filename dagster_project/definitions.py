"""The code location: every asset, check, job, schedule and sensor of faultline, with its resources."""

import dagster as dg

from assets import error_clusters
from dagster_project.jobs import error_clusters_job
from dagster_project.resources import build_resources
from dagster_project.schedules import error_clusters_schedule

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([error_clusters]),
    jobs=[error_clusters_job],
    schedules=[error_clusters_schedule],
    resources=build_resources(),
)
