"""Jobs: the daily error-cluster graph and the daily time limits, one partition (UTC day) per run, and
the weekly backtest of the duration alerts. Every job a user or a schedule runs has a name."""

import dagster as dg

from assets.charts import duration_limit_chart
from assets.error_clusters import GROUP as ERROR_CLUSTERS_GROUP
from assets.task_durations import duration_alert_backtest, task_duration_baselines


def _max_runtime(seconds: int) -> dict[str, str]:
    """Dagster's run monitoring stops a run of the job that runs longer (a hung run holds a queue slot)."""
    return {"dagster/max_runtime": str(seconds)}


def build_error_clusters_job(
    partitions: dg.PartitionsDefinition,
    max_runtime_s: int,
    keep_dump_days: float,
    keep_flattened_days: float,
    error_group_alerts: bool = True,
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
                "error_groups": {"config": {"alerts": error_group_alerts}},
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
        # The limits alone: their check (tasks over their limit now) is the sensor's to evaluate.
        selection=dg.AssetSelection.assets(task_duration_baselines).without_checks(),
        partitions_def=partitions,
        tags=_max_runtime(max_runtime_s),
        config={"ops": {"task_duration_baselines": {"config": {"estimator": estimator}}}},
        description="Learn each task type's upper limit from the trailing two weeks of successful runs.",
    )


def build_duration_alert_backtest_job(max_runtime_s: int):
    """Both estimators replayed over the last weeks of runs, up to today (the backtest's Config)."""
    return dg.define_asset_job(
        "duration_alert_backtest_weekly",
        selection=dg.AssetSelection.assets(duration_alert_backtest),
        tags=_max_runtime(max_runtime_s),
        description="Replay the last 28 days at the sensor's cadence: false alerts and recall per estimator.",
    )


def build_duration_limit_chart_job(max_runtime_s: int):
    """The chart of the task types the newest alerts flagged, which a sensor runs on new alerts."""
    return dg.define_asset_job(
        "duration_limit_chart_on_alerts",
        selection=dg.AssetSelection.assets(duration_limit_chart),
        tags=_max_runtime(max_runtime_s),
        description="Draw the flagged task types' runs against their mean and limit, after new alerts.",
    )
