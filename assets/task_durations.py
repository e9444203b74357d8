"""Which running task is stuck: each task type's normal duration, learned daily from its history.

After Amperity's heuristic: per task type, the successful runs of the trailing two weeks give an upper
limit (by default the alert budget's, the seed's mean + 2 standard deviations one switch away); the
`long_running_tasks` sensor checks running tasks against the latest limits. A backtest replays history
at the sensor's cadence.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.settings import DEFAULT_DAILY_PARTITIONS, retried_on_outage
from faultline.alerting import over_limit_rows, over_limit_summary, scan_counts
from faultline.backtest import backtest
from faultline.durations import (
    CHECK_INTERVAL_S,
    DEFAULT_ESTIMATOR,
    DEFAULT_K,
    MIN_RUNS,
    WINDOW_DAYS,
    Estimator,
    OverdueScan,
    baselines_from_histogram,
    baselines_from_moments,
    estimator_named,
    find_overdue_tasks,
)
from faultline.redaction import redact_secrets
from faultline.report import markdown_table, table_columns, table_records
from resources.alert_store import AlertStore
from resources.workflow import WorkflowService

GROUP = "task_durations"


class BaselineConfig(dg.Config):
    # Amperity's window: two weeks of successful runs.
    window_days: int = WINDOW_DAYS
    estimator: str = Field(
        default=DEFAULT_ESTIMATOR.value,
        description="alert_budget (the default: each task type's limit set from its own history to "
        "expect false_alerts_per_month), mean_std (the seed's mean + k std), log_mad (median + k MAD "
        "of log durations) or quantile (k x the p99).",
    )
    k: float | None = Field(
        default=None,
        description="Width of the limit; empty: 2 for mean_std, 2.5 for log_mad, 1.2 for quantile "
        "(alert_budget takes false_alerts_per_month instead).",
    )
    false_alerts_per_month: float = Field(
        default=DEFAULT_K[Estimator.ALERT_BUDGET],
        gt=0,
        description="alert_budget: the false alerts per task type per 30 days you accept.",
    )
    check_interval_s: float = Field(
        default=CHECK_INTERVAL_S,
        gt=0,
        description="The sensor's cadence: alert_budget counts the alerts its ticks would raise.",
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
    if estimator is Estimator.ALERT_BUDGET:
        k = config.false_alerts_per_month
    else:
        k = DEFAULT_K[estimator] if config.k is None else config.k
    with retried_on_outage(context, workflow):
        if estimator is Estimator.MEAN_STD:
            # Aggregated in the database: months of history never have to be loaded.
            baselines = baselines_from_moments(
                workflow.duration_moments(start, end), k=k, min_runs=config.min_runs
            )
        else:
            # The estimators that need quantiles read a histogram the database sums up, not the runs.
            baselines = baselines_from_histogram(
                workflow.duration_histogram(start, end),
                estimator,
                k,
                config.min_runs,
                config.window_days,
                config.check_interval_s,
            )
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
            "k": round(float(k), 3),
            "task_types": len(baselines),
            "with_limit": with_limit,
            "too_little_history": len(baselines) - with_limit,
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
    metadata: dict[str, object] = {"history_runs": len(history), "results": metadata_table(results)}
    # Short keys, so the UI's metadata column shows them whole: false alerts per task type per day,
    # and the recall on injected slowdowns and on hangs.
    for row in results.itertuples(index=False):
        short = row.estimator.removeprefix("alert_")  # alert_budget: budget_false_per_day
        metadata[f"{short}_false_per_day"] = round(float(row.false_alerts_per_task_type_per_day), 4)
        metadata[f"{short}_slow_recall"] = round(float(row.slowdown_recall), 4)
        metadata[f"{short}_hang_recall"] = round(float(row.hang_recall), 4)
    context.log.info(f"Backtest over {len(history)} successful runs:\n{results.to_string(index=False)}")
    return dg.MaterializeResult(value=results, metadata=metadata)


def metadata_table(frame: pd.DataFrame, digits: int = 4) -> dg.TableMetadataValue:
    """A frame as Dagster's table metadata: the UI shows each cell as plain text, numbers rounded."""
    return dg.MetadataValue.table(
        records=[dg.TableRecord(record) for record in table_records(frame, digits)],
        schema=dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in table_columns(frame)]),
    )


OVER_LIMIT_CHECK = "tasks_within_their_limit"
OVER_LIMIT_COLUMNS = ["task_type", "run_id", "started_at", "elapsed", "limit", "mean", "runs"]


def over_limit_findings(
    scan: OverdueScan, as_of: datetime | None, n_unreadable: int, n_new_alerts: int | None = None
) -> dict[str, object]:
    """What a check of the running tasks found, as the keyword arguments of an asset check's result:
    passed when no task is over its limit; the description names the first few over it; the metadata
    has their count (the UI plots it across checks) and all of them as a table."""
    counts = scan_counts(scan.n_running, scan.n_checked, scan.n_without_baseline, n_unreadable)
    limits = f"limits as of {as_of:%Y-%m-%d}" if as_of else "no limits learned yet"
    over = scan.overdue
    if over.empty:
        description = f"No running task is over its limit ({counts}; {limits})."
    else:
        description = (
            f"{len(over)} running tasks over their limit ({counts}; {limits}): {over_limit_summary(over)}."
        )
    tasks = pd.DataFrame(over_limit_rows(over), columns=OVER_LIMIT_COLUMNS)
    metadata: dict[str, object] = {
        "over_limit": len(over),
        **({"new_alerts": n_new_alerts} if n_new_alerts is not None else {}),
        "running": scan.n_running,
        "checked": scan.n_checked,
        "without_baseline": scan.n_without_baseline,
        "unreadable": n_unreadable,
        "limits_as_of": as_of.strftime("%Y-%m-%d") if as_of else "none",
        "tasks": metadata_table(tasks.astype({"runs": "int64"})),
    }
    return {
        "passed": over.empty,
        "severity": dg.AssetCheckSeverity.WARN,
        "description": description,
        "metadata": metadata,
    }


@dg.asset_check(
    asset=task_duration_baselines,
    name=OVER_LIMIT_CHECK,
    description="Whether any running task is past its learned limit. The long_running_tasks sensor "
    "evaluates it on each tick that checks (every 10 minutes by default): the tasks over their limit "
    "now, new or already alerted, with their count plotted over time. Executing it here checks once, "
    "and raises no alert.",
)
def tasks_within_their_limit(workflow: WorkflowService, alert_store: AlertStore) -> dg.AssetCheckResult:
    now = datetime.now(UTC)
    as_of, baselines = alert_store.latest_baselines()
    running, unreadable = workflow.running_tasks(now)
    scan = find_overdue_tasks(running, baselines, now)
    return dg.AssetCheckResult(**over_limit_findings(scan, as_of, len(unreadable)))
