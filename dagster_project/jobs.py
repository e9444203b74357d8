"""Jobs: the daily error-cluster graph, one partition (UTC day) per run."""

import dagster as dg

from assets.error_clusters import GROUP as ERROR_CLUSTERS_GROUP
from dagster_project.partitions import daily_partitions

error_clusters_job = dg.define_asset_job(
    "error_clusters_daily",
    selection=dg.AssetSelection.groups(ERROR_CLUSTERS_GROUP),
    partitions_def=daily_partitions,
    description="Dump, flatten, clean, vectorize and cluster one day of deployment errors.",
)
