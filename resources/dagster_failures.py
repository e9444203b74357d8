"""The `dagster` error source: this deployment's own failures read from its Dagster instance, one
row per failure, for the error graph to group by root cause (dagster#4661) and name the cause a
run's failure stands for (dagster#6159).

Three kinds of event become rows: a step that failed (STEP_FAILURE), an asset check evaluation
that did not pass (ASSET_CHECK_EVALUATION, passed False), and a run that failed with no step to
blame (RUN_FAILURE for another reason than a step's failure: a resource that could not be set up,
a run worker that died, run monitoring's maximum runtime). Each row's payload is one JSON object
(DAGSTER_FAILURE_SHAPE) whose `text` is what is clustered: the root cause's class, message and the
frame that raised it.
"""

import heapq
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from dagster._core.errors import DagsterAssetCheckFailedError
from dagster._core.events import DagsterEventType, RunFailureReason
from dagster._core.storage.tags import PARTITION_NAME_TAG, RUN_FAILURE_REASON_TAG
from dagster._utils.error import SerializableErrorInfo
from pydantic import Field, PrivateAttr

from faultline.event_shape import ONE_EVENT_PER_ROW, EventShape
from resources.error_source import DUMP_COLUMNS, ErrorEventSource
from resources.outages import SourceUnavailableError
from resources.sql import is_outage, to_utc

STEP_FAILURE = "step_failure"
ASSET_CHECK_FAILED = "asset_check_failed"
RUN_FAILURE = "run_failure"

# Every row is a failure, its kind the state; the job is the scope the report names.
DAGSTER_FAILURE_SHAPE = EventShape(
    layout=ONE_EVENT_PER_ROW, message_field="text", state_field="kind", scope_field="job", error_states=None
)

FAILURE_EVENT_TYPES = {
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.ASSET_CHECK_EVALUATION,
    DagsterEventType.RUN_FAILURE,
}
# A run still going may fail a step today without its record having changed since yesterday.
IN_PROGRESS_STATUSES = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
# The runs table's update time is compared with `>`: a run updated at the very start is not lost.
_RUN_UPDATE_MARGIN = timedelta(seconds=1)
# On run-sharded SQLite each run's events are numbered from 1 in a file of their own: a row's id is
# the run's storage id in the high bits and the event's in the low ones.
_EVENT_ID_BITS = 32
_FRAME = re.compile(r'File "(?P<path>[^"]*)", line \d+, in (?P<function>[^\n]*)')
# Frames that name no function of their own but the expression inside one; Python 3.12 inlines
# comprehensions into their function (PEP 709), so keeping them would split a cause by version.
_EXPRESSION_FRAMES = {"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"}


class DagsterFailures(ErrorEventSource):
    """Failures of this deployment's runs, read from the Dagster instance of the code location.

    `iter_batches(start, end, rows_per_part)` reads the runs that could hold an event of the day
    (updated since `start` and created before `end`, or still in progress), each run's failure
    events in storage-id order, keeping those with start <= timestamp < end. Runs come in the order
    of their storage id, so the rows are in a stable order. A row's `id` is the event's storage id,
    unique across the instance (on run-sharded SQLite, where each run numbers its events from 1,
    the run's storage id x 2^32 + the event's). Memory holds one part, a page of runs, a page of
    one run's events and the ids of the day's runs read so far. Read a day once it is over: a run
    changing while its day is read may be read in its old state.

    Not rows: a step's failure that is a blocking check's (the check's evaluation is the row), a
    run's failure because a step failed (the step's is), retried attempts (STEP_UP_FOR_RETRY),
    cancellations by a user, and check results reported outside any run.
    """

    runs_per_read: int = Field(default=100, ge=1, description="Run records read from the instance at a time.")
    stack_frames: int = Field(
        default=3, ge=1, description="Frames of the root cause's stack kept in `stack_top`, innermost last."
    )

    _instance: dg.DagsterInstance | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._instance = context.instance

    def iter_batches(self, start: datetime, end: datetime, rows_per_part: int) -> Iterator[pd.DataFrame]:
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be at least 1, got {rows_per_part}")
        if self._instance is None:
            raise RuntimeError("DagsterFailures needs a Dagster instance; use it as a resource")
        start, end = to_utc(start), to_utc(end)
        rows: list[tuple[int, float, str]] = []
        with _outages_named():
            sharded = self._instance.event_log_storage.is_run_sharded
            for record in self._runs(start, end):
                for row in self._run_failures(record, start.timestamp(), end.timestamp(), rows_per_part):
                    if sharded:
                        row = ((record.storage_id << _EVENT_ID_BITS) + row[0], *row[1:])
                    rows.append(row)
                    if len(rows) == rows_per_part:
                        yield _part(rows)
                        rows = []
        if rows:
            yield _part(rows)

    def _runs(self, start: datetime, end: datetime) -> Iterator[dg.RunRecord]:
        """Each run that may hold an event of [start, end), once, in storage-id order."""
        since = start - _RUN_UPDATE_MARGIN
        updated = self._run_pages(dg.RunsFilter(updated_after=since, created_before=end))
        going = self._run_pages(
            dg.RunsFilter(statuses=IN_PROGRESS_STATUSES, updated_before=since, created_before=end)
        )
        seen: set[str] = set()  # a run updated while the day is read can be in both lists
        for record in heapq.merge(updated, going, key=lambda record: record.storage_id):
            if record.dagster_run.run_id not in seen:
                seen.add(record.dagster_run.run_id)
                yield record

    def _run_pages(self, filters: dg.RunsFilter) -> Iterator[dg.RunRecord]:
        cursor = None
        while True:
            page = self._instance.get_run_records(
                filters=filters, limit=self.runs_per_read, ascending=True, cursor=cursor
            )
            yield from page
            if len(page) < self.runs_per_read:
                return
            cursor = page[-1].dagster_run.run_id

    def _run_failures(
        self, record: dg.RunRecord, start: float, end: float, page_size: int
    ) -> Iterator[tuple[int, float, str]]:
        """(storage id, timestamp, payload) of each failure of the run in [start, end)."""
        run = record.dagster_run
        step_assets: dict[str, list[str]] | None = None
        cursor = None
        while True:
            page = self._instance.get_records_for_run(
                run.run_id, cursor=cursor, of_type=FAILURE_EVENT_TYPES, limit=page_size
            )
            for event_record in page.records:
                entry = event_record.event_log_entry
                if not start <= entry.timestamp < end:
                    continue
                event = entry.get_dagster_event()
                if event.event_type == DagsterEventType.STEP_FAILURE and step_assets is None:
                    step_assets = self._step_assets(run)
                fields = failure_fields(event, run.tags, step_assets or {}, self.stack_frames)
                if fields is not None:
                    payload = {**fields, "job": run.job_name, "run_id": run.run_id}
                    yield event_record.storage_id, entry.timestamp, json.dumps(payload)
            if not page.has_more:
                return
            cursor = page.cursor

    def _step_assets(self, run: dg.DagsterRun) -> dict[str, list[str]]:
        """The assets each step of the run materializes (none for an op's step), from its plan."""
        if run.execution_plan_snapshot_id is None:
            return {}
        plan = self._instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        if plan is None:
            return {}
        return {
            step.key: [
                output.properties.asset_key.to_user_string()
                for output in step.outputs
                if output.properties is not None and output.properties.asset_key is not None
            ]
            for step in plan.steps
        }


def failure_fields(
    event: dg.DagsterEvent, run_tags: Mapping[str, str], step_assets: dict[str, list[str]], stack_frames: int
) -> dict | None:
    """The payload's fields for one failure event (None for an event that is not a row of its own):
    `kind`, `text` (what is clustered) and what a reader needs to find the failure."""
    data = event.event_specific_data
    partition = run_tags.get(PARTITION_NAME_TAG)
    if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
        if data.passed:
            return None
        asset = data.asset_key.to_user_string()
        message = data.description or _metadata_text(data.metadata)
        return {
            "kind": ASSET_CHECK_FAILED,
            "text": f"Asset check {data.check_name} on {asset} failed" + (f": {message}" if message else ""),
            "message": message,
            "check": data.check_name,
            "asset": asset,
            "severity": data.severity.value,
            "blocking": data.blocking,
            "metadata": _metadata_values(data.metadata),
            "step_key": event.step_key,
            "partition": data.partition or partition,
        }
    if event.event_type == DagsterEventType.STEP_FAILURE:
        if data.error is not None and data.error.cls_name == DagsterAssetCheckFailedError.__name__:
            return None  # a blocking check's failure: its evaluation is the row
        assets = step_assets.get(event.step_key, [])
        return {
            "kind": STEP_FAILURE,
            **error_fields(data.error, event.message, stack_frames),
            "error_source": data.error_source.value if data.error_source else None,
            "step_key": event.step_key,
            "asset": ", ".join(assets) or None,
            "partition": partition,
        }
    reason = data.failure_reason if data is not None else None
    if reason == RunFailureReason.STEP_FAILURE:
        return None  # its steps' failures are the rows
    error = data.error if data is not None else None
    return {
        "kind": RUN_FAILURE,
        **error_fields(error, event.message, stack_frames),
        "failure_reason": reason.value if reason else run_tags.get(RUN_FAILURE_REASON_TAG),
        "partition": partition,
    }


def error_fields(error: SerializableErrorInfo | None, event_message: str | None, stack_frames: int) -> dict:
    """What groups a failure by its root cause.

    The root cause is the innermost error of the `cause` chain (`raise ... from`): Dagster wraps a
    user's exception (DagsterExecutionStepExecutionError, DagsterResourceFunctionError) and a
    library wraps the one it met, and two failures of one cause share the innermost whatever wraps
    it. The implicit `context` chain is not followed: an error raised while handling another is the
    one its code chose to report. `text` is "Class: message" and the frame that raised it as
    "file:function" (no line number, no directory, so an edit of the file or another install path
    keeps the group; a comprehension's frame is its function's). A failure without an error (run
    monitoring's maximum runtime) is its message.
    """
    if error is None:
        message = (event_message or "").strip()
        return {"text": message, "error_class": None, "message": message, "error_chain": [], "stack_top": []}
    chain = [error]
    while chain[-1].cause is not None:
        chain.append(chain[-1].cause)
    root = chain[-1]
    message = _message_of(root)
    frames = [_frame(line) for line in root.stack]
    frames = [frame for frame in frames if frame]
    text = f"{root.cls_name}: {message}" if message else root.cls_name or ""
    if frames:
        text += f"\n at {frames[-1]}"
    return {
        "text": text,
        "error_class": root.cls_name,
        "message": message,
        "error_chain": [link.cls_name for link in chain],
        "stack_top": frames[-stack_frames:],
    }


def _message_of(error: SerializableErrorInfo) -> str:
    """The error's message without the "module.Class: " that Python's traceback puts before it."""
    text = error.message.strip()
    head, separator, rest = text.partition(": ")
    if separator and error.cls_name and head.split(".")[-1] == error.cls_name:
        return rest.strip()
    return "" if text.split(".")[-1] == error.cls_name else text


def _frame(line: str) -> str | None:
    """ "file:function" of a formatted stack frame ('  File "/a/b.py", line 3, in parse')."""
    found = _FRAME.search(line)
    if found is None or found["function"].strip() in _EXPRESSION_FRAMES:
        return None
    file = re.split(r"[\\/]", found["path"])[-1]
    return f"{file}:{found['function'].strip()}"


def _metadata_values(metadata: dict) -> dict:
    """A check's metadata as plain JSON values (text, numbers, booleans; others as their text)."""
    values = {}
    for key, entry in metadata.items():
        value = getattr(entry, "value", entry)
        values[key] = value if isinstance(value, str | int | float | bool) or value is None else str(value)
    return values


def _metadata_text(metadata: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(_metadata_values(metadata).items()))


def _part(rows: list[tuple[int, float, str]]) -> pd.DataFrame:
    part = pd.DataFrame(rows, columns=DUMP_COLUMNS)
    part["id"] = part["id"].astype("int64")
    # Floored to the microsecond the instance keeps (a float of seconds), so a row stays before `end`.
    part["created_at"] = pd.to_datetime(part["created_at"], unit="s", utc=True).dt.floor("us")
    return part


@contextmanager
def _outages_named() -> Iterator[None]:
    """The instance's storage being down as SourceUnavailableError, which the step retries; other
    errors pass as they are. The driver's first line names the server, never a password."""
    try:
        yield
    except Exception as error:
        outage = _database_outage(error)
        if outage is None:
            raise
        line = str(outage.orig).strip().splitlines()[0] if outage.orig else type(outage).__name__
        raise SourceUnavailableError(f"the Dagster instance's storage could not be read: {line}") from None


def _database_outage(error: BaseException) -> sa.exc.DBAPIError | None:
    """The database error behind `error` when it is an outage. Dagster's PostgreSQL storage retries a
    lost connection itself, then raises an error of its own from the driver's."""
    for _ in range(10):  # a chain of causes is short; a cycle in one is not followed for ever
        if isinstance(error, sa.exc.DBAPIError):
            return error if is_outage(error) else None
        if error.__cause__ is None:
            return None
        error = error.__cause__
    return None
