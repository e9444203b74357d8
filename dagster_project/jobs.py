"""Jobs: the daily error-cluster graph and the daily time limits, one partition (UTC day) per run."""

import dagster as dg

from assets.error_clusters import GROUP as ERROR_CLUSTERS_GROUP
from assets.task_durations import task_duration_baselines


def _max_runtime(seconds: int) -> dict[str, str]:
    """Dagster's run monitoring stops a run of the job that runs longer (a hung run holds a queue slot)."""
    return {"dagster/max_runtime": str(seconds)}


def build_error_clusters_job(
    partitions: dg.PartitionsDefinition, max_runtime_s: int, keep_dump_days: float, keep_flattened_days: float
):
    """The daily graph, its parts kept as the deployment says (the steps' Config has the same defaults)."""
    return dg.define_asset_job(
        "error_clusters_daily",
        selection=dg.AssetSelection.groups(ERROR_CLUSTERS_GROUP),
        partitions_def=partitions,
        tags=_max_runtime(max_runtime_s),
        config={
            "ops": {
                "deployment_events_dump": {"config": {"keep_days": keep_dump_days}},
                "flatten_events": {"config": {"keep_days": keep_flattened_days}},
            }
        },
        description="Dump, flatten, clean, vectorize and cluster one day of deployment errors.",
    )


def build_task_duration_baselines_job(
    partitions: dg.PartitionsDefinition, estimator: str, max_runtime_s: int
):
    """The limits the scheduled runs fit with `estimator`, and so the ones the sensor checks against."""
    return dg.define_asset_job(
        "task_duration_baselines_daily",
        selection=dg.AssetSelection.assets(task_duration_baselines),
        partitions_def=partitions,
        tags=_max_runtime(max_runtime_s),
        config={"ops": {"task_duration_baselines": {"config": {"estimator": estimator}}}},
        description="Learn each task type's upper limit from the trailing two weeks of successful runs.",
    )
