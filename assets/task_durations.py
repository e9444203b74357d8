"""Which running task is stuck: each task type's normal duration, learned daily from its history.

After Amperity's heuristic: per task type, the successful runs of the trailing two weeks give an upper
limit (by default the alert budget's, the seed's mean + 2 standard deviations one switch away); the
`long_running_tasks` sensor checks running tasks against the latest limits. A backtest replays history
at the sensor's cadence.
"""

from collections.abc import Iterable
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
from resources.alert_store import QUEUED, RUNNING, AlertStore
from resources.dagster_steps import ASSET_PREFIX
from resources.queue_waits import queue_waits_of
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
        baselines, rejected = learn_limits(workflow, estimator, k, config, start, end)
    with retried_on_outage(context, alert_store):
        alert_store.save_baselines(end, baselines)
    # How long tasks wait queued, learned the same way where the source records it.
    with retried_on_outage(context, workflow):
        waits = queue_waits_of(workflow)  # may read the table's columns
    queue_metadata: dict[str, object] = {
        "queue_limits": "none: queue checks are off, or the source records no queue times"
    }
    if waits is not None:
        with retried_on_outage(context, workflow):
            queue_limits, queue_rejected = learn_limits(waits, estimator, k, config, start, end)
        with retried_on_outage(context, alert_store):
            alert_store.save_baselines(end, queue_limits, phase=QUEUED)
        shown_waits = queue_limits.assign(
            task_type=queue_limits["task_type"].map(lambda task_type: redact_secrets(str(task_type))),
            mean_s=queue_limits["mean_s"].round(1), std_s=queue_limits["std_s"].round(1),
            upper_limit_s=queue_limits["upper_limit_s"].round(1),
        )  # fmt: skip
        queue_metadata = {
            "queue_limits": int(queue_limits["has_limit"].sum()),
            "queue_waits": int(queue_limits["n_runs"].sum()),
            "queue_waits_rejected": len(queue_rejected),
            "queue_rejected_reasons": dg.MetadataValue.json(
                queue_rejected["reason"].value_counts().to_dict()
            ),
            "queue_limits_table": dg.MetadataValue.md(markdown_table(shown_waits)),
        }

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
            **queue_metadata,
        },
    )


def learn_limits(
    workflow: WorkflowService,
    estimator: Estimator,
    k: float,
    config: BaselineConfig,
    start: datetime,
    end: datetime,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each task type's limit from the successful runs (or queue waits) that ended in [start, end), and
    the runs of the window rejected by the screening."""
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
    return baselines, workflow.rejected_runs(start, end)


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
    scan: OverdueScan,
    as_of: datetime | None,
    n_unreadable: int,
    n_new_alerts: int | None = None,
    phase: str = RUNNING,
) -> dict[str, object]:
    """What a check of the running (or, by `phase`, queued) tasks found, as the keyword arguments of an
    asset check's result: passed when no task is over its limit; the description names the first few
    over it; the metadata has their count (the UI plots it across checks) and all of them as a table."""
    counts = scan_counts(scan.n_running, scan.n_checked, scan.n_without_baseline, n_unreadable, phase)
    limits = f"limits as of {as_of:%Y-%m-%d}" if as_of else "no limits learned yet"
    limit = "its queue limit" if phase == QUEUED else "its limit"
    over = scan.overdue
    if over.empty:
        description = f"No {phase} task is over {limit} ({counts}; {limits})."
    else:
        description = (
            f"{len(over)} {phase} tasks over {limit.replace('its', 'their')} ({counts}; {limits}): "
            f"{over_limit_summary(over)}."
        )
    tasks = pd.DataFrame(over_limit_rows(over), columns=OVER_LIMIT_COLUMNS)
    if phase == QUEUED:  # a queue alert's start is when the task was queued
        tasks = tasks.rename(columns={"started_at": "queued_at", "elapsed": "waiting"})
    metadata: dict[str, object] = {
        "over_limit": len(over),
        **({"new_alerts": n_new_alerts} if n_new_alerts is not None else {}),
        phase: scan.n_running,
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


QUEUE_CHECK = "tasks_within_their_queue_limit"


def queue_findings(
    workflow: WorkflowService, alert_store: AlertStore, now: datetime
) -> tuple[OverdueScan, dict[str, object]] | None:
    """The tasks queued past their queue limit now, and what the check says of them; None where the
    source records no queue times."""
    waits = queue_waits_of(workflow)
    if waits is None:
        return None
    as_of, limits = alert_store.latest_baselines(QUEUED)
    queued, unreadable = waits.running_tasks(now)
    scan = find_overdue_tasks(queued, limits, now)
    return scan, over_limit_findings(scan, as_of, len(unreadable), phase=QUEUED)


@dg.asset_check(
    asset=task_duration_baselines,
    name=QUEUE_CHECK,
    description="Whether any task has waited queued past its queue limit (learned from how long its "
    "task type waited to start, where the source records when a task was queued: Airflow's "
    "queued_dttm, FAULTLINE_WORKFLOW_QUEUED_AT_COLUMN, a Dagster run's creation). The "
    "long_running_tasks sensor evaluates it on each tick; executing it here checks once, and raises "
    "no alert.",
)
def tasks_within_their_queue_limit(workflow: WorkflowService, alert_store: AlertStore) -> dg.AssetCheckResult:
    found = queue_findings(workflow, alert_store, datetime.now(UTC))
    if found is None:
        return dg.AssetCheckResult(
            passed=True,
            description="Not checked: queue checks are off (FAULTLINE_QUEUE_CHECKS), or the task source "
            "records no queue times.",
        )
    _, findings = found
    return dg.AssetCheckResult(**findings)


# Dagster's own assets, watched (FAULTLINE_WORKFLOW_SOURCE=dagster): each asset with a learned limit of
# its own (`asset:<key>`, from its steps in every job) gets this check, in faultline's code location,
# shown on the asset's page beside its own checks. The long_running_tasks sensor evaluates it for an
# asset while a step materializing it runs, and once more when the step that failed it is gone.
WATCHED_ASSET_CHECK = "within_its_runtime_limit"


def watched_asset_keys(baselines: pd.DataFrame, own: Iterable[str] = ()) -> list[str]:
    """The assets (their keys as user strings, `a/b`) that have a limit of their own in `baselines`,
    but those of `own` (faultline's: a check on them would join its own jobs, whose selections take
    their assets' checks) and a name no Dagster asset key can have (a row left by another source)."""
    limited = baselines[baselines["has_limit"].astype(bool)]
    task_types = limited["task_type"].astype(str)
    named = task_types[task_types.str.startswith(ASSET_PREFIX)].str.slice(len(ASSET_PREFIX))
    return sorted(key for key in set(named) - set(own) if _is_asset_key(key))


def _is_asset_key(text: str) -> bool:
    try:
        spec = dg.AssetCheckSpec(WATCHED_ASSET_CHECK, asset=dg.AssetKey.from_user_string(text))
        dg.multi_asset_check(specs=[spec], name="watched_asset_key")(lambda: None)
    except dg.DagsterInvalidDefinitionError:
        return False
    return True


def watched_asset_findings(
    running: pd.DataFrame, scan: OverdueScan, asset_keys: list[str]
) -> dict[str, tuple[int, dict[str, object]]]:
    """For each asset of `asset_keys`, how many of its steps run now (a step that materializes it alone,
    in any job), and what its check says of them: passed when none is over its limit (its own, or the
    asset's it borrows), the description naming those over it, the metadata their table."""
    asset_of_run = {}
    if "fallback_task_type" in running.columns:
        named = running[running["fallback_task_type"].notna()]
        asset_of_run = dict(
            zip(
                named["run_id"],
                named["fallback_task_type"].str.slice(len(ASSET_PREFIX)),
                strict=True,
            )
        )
    running_assets = pd.Series([asset_of_run.get(run_id) for run_id in running["run_id"]], dtype=object)
    over_assets = pd.Series([asset_of_run.get(run_id) for run_id in scan.overdue["run_id"]], dtype=object)
    findings = {}
    for key in asset_keys:
        n_running = int(running_assets.eq(key).sum())
        over = scan.overdue[over_assets.eq(key).to_numpy()] if len(over_assets) else scan.overdue
        if over.empty:
            description = (
                f"{n_running} steps materializing it running, none over its limit."
                if n_running
                else "No step materializing it is running."
            )
        else:
            description = (
                f"{len(over)} of {n_running} steps materializing it over their limit: "
                f"{over_limit_summary(over)}."
            )
        tasks = pd.DataFrame(over_limit_rows(over), columns=OVER_LIMIT_COLUMNS)
        findings[key] = (
            n_running,
            {
                "passed": over.empty,
                "severity": dg.AssetCheckSeverity.WARN,
                "description": description,
                "metadata": {
                    "over_limit": len(over),
                    "running_steps": n_running,
                    "steps": metadata_table(tasks.astype({"runs": "int64"})),
                },
            },
        )
    return findings


def watched_asset_checks(asset_keys: list[str]) -> list[dg.AssetChecksDefinition]:
    """The check on each watched asset (none without any), one definition for them all: executing it
    checks the selected assets' running steps once, and raises no alert."""
    if not asset_keys:
        return []
    specs = [
        dg.AssetCheckSpec(
            WATCHED_ASSET_CHECK,
            asset=dg.AssetKey.from_user_string(key),
            description="faultline: whether a step materializing this asset has been running past its "
            "learned limit (its own, or the asset's across jobs). The long_running_tasks sensor evaluates "
            "it while such a step runs.",
        )
        for key in asset_keys
    ]

    @dg.multi_asset_check(specs=specs, can_subset=True, name="watched_assets_within_their_runtime_limit")
    def watched_assets_within_their_runtime_limit(
        context: dg.AssetCheckExecutionContext, workflow: WorkflowService, alert_store: AlertStore
    ):
        now = datetime.now(UTC)
        _, baselines = alert_store.latest_baselines()
        running, _ = workflow.running_tasks(now)
        findings = watched_asset_findings(running, find_overdue_tasks(running, baselines, now), asset_keys)
        for check_key in context.selected_asset_check_keys:
            _, found = findings[check_key.asset_key.to_user_string()]
            yield dg.AssetCheckResult(asset_key=check_key.asset_key, check_name=check_key.name, **found)

    return [watched_assets_within_their_runtime_limit]
