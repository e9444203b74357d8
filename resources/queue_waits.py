"""Queue waits: how long a task sat queued before it started, learned and checked as durations are.

A task stuck in the queue never starts, so the check of running tasks never sees it (a lost executor
slot, a dead worker, a full pool). A source that records when a task was queued (Airflow's
`queued_dttm`, a `sql` table's FAULTLINE_WORKFLOW_QUEUED_AT_COLUMN, a Dagster run's creation) is read a
second time as a table of waits: an attempt that left the queue is a finished "run" from its queueing
to its start, one still queued a "running" one since it was queued. The same screening, estimators
and alert store then learn a queue limit per task type and flag a task queued past it, as an alert of
its own (phase "queued").
"""

from datetime import datetime
from types import SimpleNamespace

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from faultline.durations import screen_task_runs
from resources.sources import AIRFLOW_NOT_RUN_STATES, AirflowTaskInstances, TaskRunsTable
from resources.sql import table_reference, to_utc, validate_identifier
from resources.workflow import RUNNING_COLUMNS, DagsterRunsWorkflowService, WorkflowService

QUEUED = "queued"
LEFT_QUEUE = "left_queue"
# The wait's columns in the view a SQL source is read through.
QUEUED_AT, LEFT_QUEUE_AT, QUEUE_STATE = (
    "faultline_queued_at",
    "faultline_left_queue_at",
    "faultline_queue_state",
)
# A Dagster run is waiting to start while queued, or launched and not yet started (its process is
# coming up): a run stuck in either never reaches the check of running tasks.
DAGSTER_QUEUED_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING]
DAGSTER_STARTED_STATUSES = [
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELING,
    dg.DagsterRunStatus.CANCELED,
]


class SqlQueueWaits(TaskRunsTable):
    """A task runs table read as queue waits (see the module): each row queued at `queued_at_column`,
    still queued while its state is one of `queued_statuses`, out of the queue at its start.

    What is not a wait is left out, as the duration side leaves such rows out: a row in a state of
    `not_run_statuses`, and one whose start equals its end (Airflow gives a task it fails or skips
    while queued, by `task_queued_timeout` or by hand, a start and an end at that moment: its stuck
    time would otherwise be learned as a normal wait). With `resumed_left_out`, a row that started
    before it was last queued is left out too: Airflow queues a deferred task again when its trigger
    fires and keeps its first start, so that row's queue time is its resumption's. Elsewhere such a
    row, and a queued row without a queue time, go to the screening, which rejects them with their
    reason.
    """

    queued_at_column: str
    queued_statuses: list[str]
    source_started_at_column: str
    source_ended_at_column: str
    source_status_column: str
    not_run_statuses: list[str] = []
    resumed_left_out: bool = False
    started_at_column: str = QUEUED_AT
    ended_at_column: str = LEFT_QUEUE_AT
    status_column: str = QUEUE_STATE
    success_statuses: list[str] = [LEFT_QUEUE]
    running_statuses: list[str] = [QUEUED]
    failed_statuses: list[str] = []
    aborted_statuses: list[str] = []
    waiting_statuses: list[str] = []

    def _table_columns(self) -> dict[str, list[str] | str]:
        """The source table's own columns this view reads, each by the setting that names it."""

        def column(name: str, setting: str) -> str:
            return validate_identifier(name, setting, qualified=False)

        ids = self._columns()  # the run id and task type columns, checked as the source checks them
        return {
            "run_id_columns": ids["run_id_columns"],
            "task_type_columns": ids["task_type_columns"],
            "started_at_column": column(self.source_started_at_column, "started_at_column"),
            "ended_at_column": column(self.source_ended_at_column, "ended_at_column"),
            "status_column": column(self.source_status_column, "status_column"),
            "queued_at_column": column(self.queued_at_column, "queued_at_column"),
        }

    def has_queue_column(self) -> bool:
        """Whether the table has the column of queue times (Airflow's default names one that a table of
        Airflow's shape made by hand may lack: then there are no waits to check)."""
        schema, name = table_reference(self.table)
        with self.connect() as connection:
            inspector = sa.inspect(connection)
            if not inspector.has_table(name, schema=schema):
                return True  # the reads then fail naming the table
            return self.queued_at_column in {c["name"] for c in inspector.get_columns(name, schema=schema)}

    def _table(self) -> sa.TableClause:
        schema, name = table_reference(validate_identifier(self.table, "table"))
        columns = self._table_columns()
        names = {*columns["run_id_columns"], *columns["task_type_columns"]}
        names |= {columns["started_at_column"], columns["ended_at_column"], columns["status_column"]}
        names.add(columns["queued_at_column"])
        source = sa.table(name, *(sa.column(n) for n in sorted(names)), schema=schema)
        status = source.c[self.source_status_column]
        started, queued_at = source.c[self.source_started_at_column], source.c[self.queued_at_column]
        ended = source.c[self.source_ended_at_column]
        queued = sa.and_(status.is_not(None), status.in_(self.queued_statuses))
        # What _readable and _instant ask of a connection: its dialect (the view is built unconnected).
        dialect = SimpleNamespace(dialect=self.engine().dialect)

        def before(first: sa.ColumnElement, second: sa.ColumnElement, equal: bool = False):
            """Both times readable and `first` earlier than (or, `equal`, the same as) `second`."""
            compare = sa.ColumnOperators.__eq__ if equal else sa.ColumnOperators.__lt__
            return sa.func.coalesce(
                sa.and_(
                    self._readable(dialect, first),
                    self._readable(dialect, second),
                    compare(self._instant(dialect, first), self._instant(dialect, second)),
                ),
                False,
            )

        never_ran = before(started, ended, equal=True)
        if self.not_run_statuses:
            never_ran = sa.or_(never_ran, sa.and_(status.is_not(None), status.in_(self.not_run_statuses)))
        left_queue = sa.and_(queued_at.is_not(None), started.is_not(None), sa.not_(never_ran))
        if self.resumed_left_out:
            left_queue = sa.and_(left_queue, sa.not_(before(started, queued_at)))
        identity = [source.c[n] for n in sorted({*columns["run_id_columns"], *columns["task_type_columns"]})]
        view = sa.select(
            *identity,
            queued_at.label(QUEUED_AT),
            sa.case((queued, None), else_=started).label(LEFT_QUEUE_AT),
            sa.case((queued, QUEUED), else_=LEFT_QUEUE).label(QUEUE_STATE),
        ).where(sa.or_(queued, left_queue))
        # Named as the table, so every query of the service reads the waits as it reads a table.
        return view.subquery(name)


def queue_waits_of(workflow: WorkflowService) -> WorkflowService | None:
    """The source's queue waits, None where it has no queue times or their check is switched off."""
    if isinstance(workflow, DagsterRunsWorkflowService):
        return DagsterQueueWaits.of(workflow) if workflow.check_queue else None
    if not isinstance(workflow, TaskRunsTable) or isinstance(workflow, SqlQueueWaits):
        return None
    if not workflow.queued_at_column:
        return None
    source = {name: getattr(workflow, name) for name in TaskRunsTable.model_fields}
    overridden = {"started_at_column", "ended_at_column", "status_column", "success_statuses",
                  "running_statuses", "failed_statuses", "aborted_statuses", "waiting_statuses"}  # fmt: skip
    waits = SqlQueueWaits(
        **{name: value for name, value in source.items() if name not in overridden},
        source_started_at_column=workflow.started_at_column,
        source_ended_at_column=workflow.ended_at_column,
        source_status_column=workflow.status_column,
        **(
            {"not_run_statuses": AIRFLOW_NOT_RUN_STATES, "resumed_left_out": True}
            if isinstance(workflow, AirflowTaskInstances)
            else {}
        ),
    )
    if not workflow.queued_at_column_required and not waits.has_queue_column():
        return None
    return waits


class DagsterQueueWaits(DagsterRunsWorkflowService):
    """This deployment's runs as queue waits: a run waits from its creation (the UI's launch, a
    schedule's or a backfill's submission) to its start; one queued or starting is waiting now."""

    @classmethod
    def of(cls, runs: DagsterRunsWorkflowService) -> "DagsterQueueWaits":
        waits = cls(outage_retries=runs.outage_retries, outage_retry_delay_s=runs.outage_retry_delay_s)
        waits._instance = runs._instance
        return waits

    def _successful(self, start: datetime, end: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The runs that started in [start, end), each a wait from creation to start, screened as of
        `end`: (valid waits, rejected ones)."""
        records = self._records(DAGSTER_STARTED_STATUSES, updated_after=to_utc(start))
        frame = pd.DataFrame(
            [
                (r.dagster_run.run_id, r.dagster_run.job_name, r.create_timestamp, r.start_time)
                for r in records
            ],
            columns=["run_id", "task_type", "created", "start"],
        )
        frame = frame[frame["start"].notna()]
        started = pd.to_datetime(frame["start"].astype("float64"), unit="s", utc=True)
        in_window = started.ge(pd.Timestamp(to_utc(start))) & started.lt(pd.Timestamp(to_utc(end)))
        frame, started = frame[in_window], started[in_window]
        waits = pd.DataFrame(
            {
                "run_id": frame["run_id"],
                "task_type": frame["task_type"],
                "started_at": pd.to_datetime(frame["created"], utc=True),
                "ended_at": started,
                "status": "success",
            }
        )
        return screen_task_runs(waits, pd.Timestamp(to_utc(end)))

    def running_tasks(self, now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
        records = self._records(DAGSTER_QUEUED_STATUSES)
        runs = pd.DataFrame(
            {
                "run_id": [r.dagster_run.run_id for r in records],
                "task_type": [r.dagster_run.job_name for r in records],
                "started_at": pd.to_datetime([r.create_timestamp for r in records], utc=True),
                "ended_at": pd.NaT,
                "status": "running",
            }
        )
        valid, rejected = screen_task_runs(runs, pd.Timestamp(to_utc(now)))
        return valid[RUNNING_COLUMNS], rejected
