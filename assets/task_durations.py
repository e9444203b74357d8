"""Which running task is stuck: each task type's normal duration, learned daily from its history.

Amperity's heuristic as assets: per task type, the successful runs of the trailing two weeks give
a mean and an upper limit (mean + 2 standard deviations); the `long_running_tasks` sensor checks
running tasks against the latest limits. A backtest replays history at the sensor's cadence.
"""

from datetime import timedelta

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.settings import DEFAULT_DAILY_PARTITIONS, retried_on_outage
from faultline.backtest import backtest
from faultline.durations import (
    CHECK_INTERVAL_S,
    DEFAULT_K,
    MIN_RUNS,
    WINDOW_DAYS,
    Estimator,
    baselines_from_durations,
    baselines_from_moments,
    estimator_named,
)
from faultline.redaction import redact_secrets
from faultline.report import markdown_table
from resources.alert_store import AlertStore
from resources.workflow import WorkflowService

GROUP = "task_durations"


class BaselineConfig(dg.Config):
    # Amperity's heuristic: two weeks of successful runs, upper limit = mean + 2 std.
    window_days: int = WINDOW_DAYS
    estimator: str = Field(
        default=Estimator.MEAN_STD.value,
        description="mean_std (the seed's mean + k std) or log_mad (median + k MAD of log durations).",
    )
    k: float | None = Field(
        default=None, description="Width of the limit; empty: 2 for mean_std, 2.5 for log_mad."
    )
    min_runs: int = Field(default=MIN_RUNS, description="Fewer successful runs than this: no limit is set.")


class BacktestConfig(dg.Config):
    history_days: int = Field(
        default=28, description="Days of history replayed, the fitting window included."
    )
    window_days: int = WINDOW_DAYS
    min_runs: int = MIN_RUNS
    check_interval_s: float = Field(default=CHECK_INTERVAL_S, description="The sensor's cadence.")
    slowdown_factor: float = Field(default=3.0, description="Injected slowdowns last this many times longer.")
    injected_fraction: float = Field(
        default=0.05, description="Share of each day's runs slowed, and again hung."
    )
    seed: int = 0
    end_date: str | None = Field(
        default=None, description="Replay up to this UTC day (YYYY-MM-DD), excluded; empty: up to today."
    )


# The workflow database may be down: retried, and safe to retry, since the limits of a day are
# replaced as a whole in one transaction.
@dg.asset(partitions_def=DEFAULT_DAILY_PARTITIONS, group_name=GROUP)
def task_duration_baselines(
    context: dg.AssetExecutionContext,
    config: BaselineConfig,
    workflow: WorkflowService,
    alert_store: AlertStore,
) -> dg.MaterializeResult[pd.DataFrame]:
    """Per task type: successful runs in the window, mean, standard deviation and upper limit.

    The limits hold as of the end of the partition's day and are saved where the sensor reads them;
    the asset's value shows task types with their secrets redacted.
    """
    end = context.partition_time_window.end
    start = end - timedelta(days=config.window_days)
    estimator = estimator_named(config.estimator)
    k = DEFAULT_K[estimator] if config.k is None else config.k
    with retried_on_outage(context, workflow):
        if estimator is Estimator.MEAN_STD:
            # Aggregated in the database: months of history never have to be loaded.
            baselines = baselines_from_moments(
                workflow.duration_moments(start, end), k=k, min_runs=config.min_runs
            )
        else:
            runs = workflow.successful_runs(start, end)
            baselines = baselines_from_durations(runs, estimator=estimator, k=k, min_runs=config.min_runs)
        rejected = workflow.rejected_runs(start, end)
    with retried_on_outage(context, alert_store):
        alert_store.save_baselines(end, baselines)

    # The store keeps task types as the workflow does: the sensor matches running tasks to their limit
    # by them. What leaves for the UI and Dagster's storage has their secrets redacted.
    redacted = baselines.assign(
        task_type=baselines["task_type"].map(lambda task_type: redact_secrets(str(task_type)))
    )
    shown = redacted.assign(
        mean_s=baselines["mean_s"].round(1), std_s=baselines["std_s"].round(1),
        upper_limit_s=baselines["upper_limit_s"].round(1),
    )  # fmt: skip
    with_limit = int(baselines["has_limit"].sum())
    return dg.MaterializeResult(
        value=redacted,
        metadata={
            "as_of": end.isoformat(),
            "estimator": estimator.value,
            "k": k,
            "task_types": len(baselines),
            "task_types_with_limit": with_limit,
            "task_types_with_too_little_history": len(baselines) - with_limit,
            "successful_runs": int(baselines["n_runs"].sum()),
            "rejected_runs": len(rejected),
            "rejected_reasons": dg.MetadataValue.json(rejected["reason"].value_counts().to_dict()),
            "limits": dg.MetadataValue.md(markdown_table(shown)),
        },
    )


@dg.asset(group_name=GROUP)
def duration_alert_backtest(
    context: dg.AssetExecutionContext, config: BacktestConfig, workflow: WorkflowService
) -> dg.MaterializeResult[pd.DataFrame]:
    """Each estimator replayed over history at the sensor's cadence: false alerts, recall, delay."""
    end_day = pd.Timestamp(config.end_date, tz="UTC") if config.end_date else pd.Timestamp.now(tz="UTC")
    end = end_day.floor("D").to_pydatetime()
    history = workflow.successful_runs(end - timedelta(days=config.history_days), end)
    results = backtest(
        history,
        window_days=config.window_days,
        min_runs=config.min_runs,
        check_interval_s=config.check_interval_s,
        slowdown_factor=config.slowdown_factor,
        injected_fraction=config.injected_fraction,
        seed=config.seed,
    )
    metadata: dict[str, object] = {
        "history_runs": len(history),
        "results": dg.MetadataValue.md(markdown_table(results.round(4))),
    }
    for row in results.itertuples(index=False):
        metadata[f"{row.estimator}_false_alerts_per_task_type_per_day"] = float(
            row.false_alerts_per_task_type_per_day
        )
        metadata[f"{row.estimator}_slowdown_recall"] = float(row.slowdown_recall)
        metadata[f"{row.estimator}_hang_recall"] = float(row.hang_recall)
    context.log.info(f"Backtest over {len(history)} successful runs:\n{results.to_string(index=False)}")
    return dg.MaterializeResult(value=results, metadata=metadata)
