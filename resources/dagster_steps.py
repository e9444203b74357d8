"""The `dagster` source: this deployment's runs, each job a task type, and each run's steps, each
`job/step` a task type of its own (an asset's step is named by its op), so a slow op or asset is
flagged on its own, not only once its whole run is late (dagster#23695: an op-level max runtime).

Steps come from the instance's step statistics (the event log's STEP_START and STEP_SUCCESS/FAILURE/
SKIPPED, as Dagster's UI reads them): a successful step is learned from like a successful run, a
step in progress in a started run is checked like a running one.
"""

from datetime import datetime

import dagster as dg
import pandas as pd
from dagster._core.execution.stats import StepEventStatus

from faultline.durations import screen_task_runs
from resources.sql import to_utc
from resources.workflow import RUNNING_COLUMNS, DagsterRunsWorkflowService

STEP_SEPARATOR = "/"
# An asset's task type: `asset:<asset key>` (a Dagster job name holds no ":", so none is taken for one).
ASSET_PREFIX = "asset:"
# A step of a finished run still marked in progress never ended (its process died): not a running
# task, not a finished one either.
STEP_STATUSES = {
    StepEventStatus.SUCCESS: "success",
    StepEventStatus.FAILURE: "failed",
    StepEventStatus.SKIPPED: "aborted",
}
RUN_STATUSES_WITH_STEPS = [
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELING,
    dg.DagsterRunStatus.CANCELED,
]


class DagsterRunsAndStepsWorkflowService(DagsterRunsWorkflowService):
    """Runs as DagsterRunsWorkflowService reads them, and their steps beside them: task type
    `job/step_key`, run id `run_id/step_key`."""

    def _steps(self, records: list, started_runs_only: bool = False) -> pd.DataFrame:
        """Each step of the runs of `records` with its job, times and status ('running' for a step in
        progress in a started run)."""
        rows = []
        for record in records:
            run = record.dagster_run
            for stats in self._instance.get_run_step_stats(run.run_id):
                if stats.status in STEP_STATUSES:
                    status = STEP_STATUSES[stats.status]
                elif (
                    stats.status == StepEventStatus.IN_PROGRESS and run.status == dg.DagsterRunStatus.STARTED
                ):
                    status = "running"
                else:
                    continue
                if started_runs_only and status != "running":
                    continue
                key = stats.step_key
                rows.append(
                    (
                        f"{run.run_id}{STEP_SEPARATOR}{key}",
                        f"{run.job_name}{STEP_SEPARATOR}{key}",
                        stats.start_time,
                        stats.end_time if status != "running" else None,
                        status,
                        self._asset_of(run, key),
                    )
                )
        frame = pd.DataFrame(rows, columns=["run_id", "task_type", "start", "end", "status", "asset"])
        return pd.DataFrame(
            {
                "run_id": frame["run_id"],
                "task_type": frame["task_type"],
                "started_at": pd.to_datetime(frame["start"].astype("float64"), unit="s", utc=True),
                "ended_at": pd.to_datetime(frame["end"].astype("float64"), unit="s", utc=True),
                "status": frame["status"],
                "asset": frame["asset"],
            }
        )

    def _successful(self, start: datetime, end: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
        valid, rejected = super()._successful(start, end)
        steps = self._steps(self._records(RUN_STATUSES_WITH_STEPS, updated_after=to_utc(start)))
        ended = steps["ended_at"]
        in_window = ended.ge(pd.Timestamp(to_utc(start))) & ended.lt(pd.Timestamp(to_utc(end)))
        steps = steps[steps["status"].eq("success") & (in_window | steps["started_at"].isna())]
        asset_of = dict(zip(steps["run_id"], steps["asset"], strict=True))
        step_valid, step_rejected = screen_task_runs(steps.drop(columns="asset"), pd.Timestamp(to_utc(end)))
        # Each asset's own task type too, learned from its steps in every job that materializes it: a
        # step new to its job borrows its limit (see running_tasks).
        asset_types = step_valid["run_id"].map(lambda run_id: _asset_task_type(asset_of[run_id]))
        asset_valid = step_valid[asset_types.notna()].assign(task_type=asset_types[asset_types.notna()])
        return _together(_together(valid, step_valid), asset_valid), _together(rejected, step_rejected)

    def running_tasks(self, now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The started runs and their steps in progress; a step that materializes one asset names that
        asset's task type as its `fallback_task_type`, whose limit it borrows while it has none of its
        own (a step new to its job, an asset moved to another job)."""
        running, rejected = super().running_tasks(now)
        steps = self._steps(self._records([dg.DagsterRunStatus.STARTED]), started_runs_only=True)
        asset_of = dict(zip(steps["run_id"], steps["asset"], strict=True))
        step_running, step_rejected = screen_task_runs(steps.drop(columns="asset"), pd.Timestamp(to_utc(now)))
        step_running = step_running[RUNNING_COLUMNS].assign(
            fallback_task_type=step_running["run_id"].map(lambda run_id: _asset_task_type(asset_of[run_id]))
        )
        running = running.assign(fallback_task_type=None)
        return _together(running, step_running), _together(rejected, step_rejected)


def _asset_task_type(asset: object) -> str | None:
    return ASSET_PREFIX + asset if isinstance(asset, str) else None


def _together(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Both frames' rows, in the first's columns (an empty frame adds none, and no dtype of its own)."""
    frames = [frame for frame in (first, second) if not frame.empty]
    return pd.concat(frames, ignore_index=True)[list(first.columns)] if frames else first
