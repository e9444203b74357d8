"""Jobs: the daily error-cluster graph and the daily time limits, one partition (UTC day) per run."""

import os

import dagster as dg

from assets.error_clusters import GROUP as ERROR_CLUSTERS_GROUP
from assets.task_durations import task_duration_baselines
from dagster_project.partitions import daily_partitions
from faultline.durations import Estimator

error_clusters_job = dg.define_asset_job(
    "error_clusters_daily",
    selection=dg.AssetSelection.groups(ERROR_CLUSTERS_GROUP),
    partitions_def=daily_partitions,
    description="Dump, flatten, clean, vectorize and cluster one day of deployment errors.",
)

# The estimator the scheduled runs fit, and so the one the sensor checks against: the seed's
# mean_std unless FAULTLINE_ESTIMATOR says log_mad.
task_duration_baselines_job = dg.define_asset_job(
    "task_duration_baselines_daily",
    selection=dg.AssetSelection.assets(task_duration_baselines),
    partitions_def=daily_partitions,
    config={
        "ops": {
            "task_duration_baselines": {
                "config": {"estimator": os.environ.get("FAULTLINE_ESTIMATOR", Estimator.MEAN_STD.value)}
            }
        }
    },
    description="Learn each task type's upper limit from the trailing two weeks of successful runs.",
)
