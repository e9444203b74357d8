"""Sources of task runs by name (FAULTLINE_WORKFLOW_SOURCE): `airflow`, Airflow's own `task_instance`
table read in place; `sql`, any table whose names the variables give; `dagster`, this deployment's runs
and their steps.

A SQL source only ever reads: a role with SELECT on its one table is enough, and faultline's own tables
live in faultline's database (FAULTLINE_ALERTS_DB_URL). A refused privilege is a
SourceConfigurationError that names the database and the GRANT it needs.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import quote

import pandas as pd
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from resources.dagster_steps import DagsterRunsAndStepsWorkflowService
from resources.outages import SourceConfigurationError
from resources.sql import safe_url, table_reference, translated_errors, validate_identifier
from resources.workflow import DagsterRunsWorkflowService, SqlWorkflowService, WorkflowService

if TYPE_CHECKING:
    from assets.settings import Settings

# PostgreSQL's SQLSTATE for a missing privilege (psycopg2 calls it pgcode, psycopg 3 sqlstate).
INSUFFICIENT_PRIVILEGE = "42501"
# What a waiting-state list writes for a row whose state is NULL.
NULL_STATE = "NULL"

# Airflow 2.x and 3.x task instance states (airflow.utils.state.TaskInstanceState). A deferred task and
# a reschedule-mode sensor between pokes are still at work on their attempt: checked like running ones,
# from the attempt's first start. A row in a waiting state has not run yet or waits between attempts:
# it is neither checked nor counted as rejected.
AIRFLOW_RUNNING_STATES = ["running", "deferred", "up_for_reschedule"]
AIRFLOW_SUCCESS_STATES = ["success"]
AIRFLOW_FAILED_STATES = ["failed"]
# None: a skipped, upstream_failed or removed task did not run. Airflow writes such a row with start_date
# and end_date both the moment it gave up on it (the execution API's skip, the scheduler's
# upstream_failed), a zero duration the screening would count as rejected in every window: these
# rows are left out with the waiting ones.
AIRFLOW_ABORTED_STATES: list[str] = []
AIRFLOW_NOT_RUN_STATES = ["skipped", "upstream_failed", "removed"]
AIRFLOW_WAITING_STATES = [
    NULL_STATE,  # created with its run, not yet scheduled (the UI's "no status")
    "scheduled",
    "queued",
    "up_for_retry",
    "restarting",
    "awaiting_input",  # Airflow 3.1's human-in-the-loop tasks
    "shutdown",  # Airflow 2.x before 2.9: on its way to up_for_retry or failed
    "sensing",  # Airflow 2.0 to 2.3's smart sensors
    *AIRFLOW_NOT_RUN_STATES,
]
# Airflow's ids are `[\w.-]+` (airflow.utils.helpers.KEY_REGEX), and a task group's task id holds the
# group's dots: parts joined with "/" never collide ("a.b"/"c" against "a"/"b.c").
AIRFLOW_ID_SEPARATOR = "/"
AIRFLOW_FIELDS = ["dag_id", "task_id", "dag_run_id", "map_index", "try_number", "link"]


def needs_select(tables: list[str], url: str, source_name: str) -> str:
    """What a read of `tables` refused for want of a privilege says, and the GRANT that fixes it."""
    schemas = sorted({schema for schema, _ in map(table_reference, tables) if schema})
    return (
        f"{source_name} at {safe_url(url)}: the role may not read {' and '.join(map(repr, tables))}; "
        f"faultline only reads them, so a read-only role is enough: GRANT SELECT ON {', '.join(tables)} "
        f"TO <role>" + "".join(f" (and GRANT USAGE ON SCHEMA {schema} TO <role>)" for schema in schemas)
    )


@contextmanager
def privilege_errors(message: str) -> Iterator[None]:
    """A refused privilege inside the block as a SourceConfigurationError saying `message`."""
    try:
        yield
    except sa.exc.ProgrammingError as error:
        state = getattr(error.orig, "pgcode", None) or getattr(error.orig, "sqlstate", None)
        if state != INSUFFICIENT_PRIVILEGE:
            raise
        raise SourceConfigurationError(f"{message} (not retried: a configuration error)") from None


class TaskRunsTable(SqlWorkflowService):
    """A table of task runs read in place, whose rows in a waiting state are left out, and whose id
    parts (several run id or task type columns) are joined with `id_separator`."""

    waiting_statuses: list[str] = Field(
        default=[],
        description=f"States of rows not yet running, between attempts or never run: left out, neither "
        f"checked, learned from nor rejected ({NULL_STATE!r} stands for a row without a state).",
    )
    id_separator: str = Field(default=".", description="Joins the parts of a run id or a task type.")
    queued_at_column: str | None = Field(
        default=None,
        description="When a row was queued (resources/queue_waits.py): its queue waits are learned and a "
        "row queued past its limit is alerted. None: no queue times, no queue check.",
    )
    queued_statuses: list[str] = Field(default=["queued"], description="States of a row still queued.")
    queued_at_column_required: bool = Field(
        default=True,
        description="False where `queued_at_column` is a default the table may lack (Airflow's "
        "queued_dttm in a table of its shape made by hand): then there is no queue check.",
    )

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """As SqlResource's, a refused SELECT told apart from other configuration errors."""
        engine = self.engine()
        with translated_errors(self.url, self.source_name, self.settings_hint):
            with privilege_errors(needs_select(self._read_tables(), self.url, self.source_name)):
                with engine.connect() as connection:
                    yield connection

    def _read_tables(self) -> list[str]:
        """The tables the source reads, named in the GRANT a refused read asks for."""
        return [self.table]

    def _table(self) -> sa.TableClause:
        return self._waiting_left_out(super()._table())

    def _waiting_left_out(self, table: sa.TableClause) -> sa.TableClause:
        """`table` without its rows in a waiting state, named as `table` (a subquery when any are left)."""
        named = [state for state in self.waiting_statuses if state != NULL_STATE]
        if not self.waiting_statuses:
            return table
        status = table.c[self.status_column]
        if NULL_STATE in self.waiting_statuses:
            kept = sa.and_(status.is_not(None), status.not_in(named)) if named else status.is_not(None)
        else:
            kept = sa.or_(status.is_(None), status.not_in(named))
        # Named as the table, so every query of the service reads the rows it keeps as it read the table.
        return sa.select(table).where(kept).subquery(table.name)

    def _joined(self, frame: pd.DataFrame, prefix: str) -> pd.Series:
        parts = [frame[c].astype("string") for c in frame.columns if c.startswith(prefix)]
        joined = parts[0]
        for part in parts[1:]:
            joined = joined + self.id_separator + part
        return joined.astype(object)


class AirflowTaskInstances(TaskRunsTable):
    """Airflow 2.x or 3.x's `task_instance`: a task type per dag_id/task_id, a run per attempt
    (run_id/map_index/try_number, so a retry that hangs again is alerted again), its states, and a
    link to the task instance in Airflow's UI when `airflow_base_url` is set."""

    table: str = "task_instance"
    task_type_columns: list[str] = ["dag_id", "task_id"]
    run_id_columns: list[str] = ["run_id", "map_index", "try_number"]
    started_at_column: str = "start_date"
    ended_at_column: str = "end_date"
    status_column: str = "state"
    success_statuses: list[str] = AIRFLOW_SUCCESS_STATES
    running_statuses: list[str] = AIRFLOW_RUNNING_STATES
    failed_statuses: list[str] = AIRFLOW_FAILED_STATES
    aborted_statuses: list[str] = AIRFLOW_ABORTED_STATES
    waiting_statuses: list[str] = AIRFLOW_WAITING_STATES
    id_separator: str = AIRFLOW_ID_SEPARATOR
    # Set by the scheduler each time it queues an attempt (Airflow 2.x and 3.x).
    queued_at_column: str | None = "queued_dttm"
    queued_statuses: list[str] = ["queued"]
    queued_at_column_required: bool = False
    airflow_base_url: str | None = Field(
        default=None,
        description="Airflow's UI, e.g. https://airflow.example.com/ (FAULTLINE_AIRFLOW_BASE_URL).",
    )
    reschedule_table: str | None = Field(
        default="task_reschedule",
        description="Airflow's record of a reschedule-mode sensor's pokes (in the schema of `table` when "
        "it names none): a poked attempt is measured from its first poke. None: from start_date alone.",
    )

    _poke_keys: list[tuple[str, str]] | None = PrivateAttr(default=None)

    def _reschedules(self) -> str | None:
        if not self.reschedule_table:
            return None
        schema, _ = table_reference(self.table)
        named = validate_identifier(self.reschedule_table, "reschedule_table")
        return f"{schema}.{named}" if schema and "." not in named else named

    def _read_tables(self) -> list[str]:
        reschedules = self._reschedules()
        # What _table() found (it runs first): looked up here, connect() would ask itself again.
        return [self.table, reschedules] if reschedules and self._poke_keys else [self.table]

    def _attempt_keys(self) -> list[tuple[str, str]]:
        """(task_reschedule column, task_instance column) pairs that tie a poke to its attempt: Airflow 3's
        ti_id (a task instance's id is new at each try, its pokes deleted), Airflow 2's dag_id, task_id,
        run_id, map_index and try_number; none when there is no such table. Read from the catalog once."""
        if self._poke_keys is None:
            keys: list[tuple[str, str]] = []
            reschedules = self._reschedules()
            if reschedules:
                schema, name = table_reference(reschedules)
                with self.connect() as connection:
                    inspector = sa.inspect(connection)
                    present = (
                        {column["name"] for column in inspector.get_columns(name, schema=schema)}
                        if inspector.has_table(name, schema=schema)
                        else set()
                    )
                if {"ti_id", "start_date"} <= present:
                    keys = [("ti_id", "id")]
                elif {"dag_id", "task_id", "run_id", "try_number", "start_date"} <= present:
                    attempt = ["dag_id", "task_id", "run_id", "map_index", "try_number"]
                    keys = [(column, column) for column in attempt if column in present]
            self._poke_keys = keys
        return self._poke_keys

    def _table(self) -> sa.TableClause:
        """task_instance as faultline measures it: a row in a running state has no end yet (a sensor
        between pokes keeps its last poke's), and an attempt that was poked started at its first poke
        (Airflow sets start_date anew at each poke; a deferred task keeps its first start itself)."""
        table = SqlWorkflowService._table(self)
        keys = self._attempt_keys()
        named = [column.name for column in table.c]
        extra = sorted({ti for _, ti in keys} - set(named))
        source = sa.table(table.name, *(sa.column(n) for n in [*named, *extra]), schema=table.schema)
        started, attempts = source.c[self.started_at_column], source
        if keys:
            schema, name = table_reference(self._reschedules())
            pokes = sa.table(
                name, sa.column("start_date"), *(sa.column(poke) for poke, _ in keys), schema=schema
            )
            by_attempt = [pokes.c[poke] for poke, _ in keys]
            # Joined once, grouped: a correlated MIN per row was run again for each of the screening's
            # many uses of the start (1M rows on PostgreSQL: 75 s against 3.8 s without the pokes).
            first_pokes = (
                sa.select(*by_attempt, sa.func.min(pokes.c.start_date).label("first_poke"))
                .group_by(*by_attempt)
                .subquery("first_pokes")
            )
            attempts = source.outerjoin(
                first_pokes, sa.and_(*(first_pokes.c[poke] == source.c[ti] for poke, ti in keys))
            )
            started = sa.func.coalesce(first_pokes.c.first_poke, started)
        running = source.c[self.status_column].in_(self.running_statuses)
        measured = {
            self.started_at_column: started,
            self.ended_at_column: sa.case((running, None), else_=source.c[self.ended_at_column]),
        }
        columns = [measured.get(c.name, source.c[c.name]).label(c.name) for c in table.c]
        # Named as the table, so every query of the service reads it as it read the table.
        return self._waiting_left_out(sa.select(*columns).select_from(attempts).subquery(table.name))

    def alert_fields(self, overdue: pd.DataFrame) -> pd.DataFrame:
        """`overdue` with each run's dag_id, task_id, dag_run_id, map_index, try_number and link."""
        pairs = zip(overdue["task_type"], overdue["run_id"], strict=True)
        fields = [self.airflow_fields(str(task_type), str(run_id)) for task_type, run_id in pairs]
        return overdue.assign(**{name: [f[name] for f in fields] for name in AIRFLOW_FIELDS})

    def airflow_fields(self, task_type: str, run_id: str) -> dict[str, object]:
        """A task type and run id of this source taken apart (empty fields for other shapes).

        dag_id and task_id hold no separator; map_index and try_number are integers, so Airflow's
        run_id is what lies between, whatever it holds."""
        dag_id, _, task_id = task_type.partition(self.id_separator)
        dag_run_id, map_index, try_number = (run_id.rsplit(self.id_separator, 2) + [None, None])[:3]
        if not task_id or map_index is None or try_number is None:
            return dict.fromkeys(AIRFLOW_FIELDS)
        fields = {
            "dag_id": dag_id,
            "task_id": task_id,
            "dag_run_id": dag_run_id,
            "map_index": _integer(map_index),
            "try_number": _integer(try_number),
        }
        return {**fields, "link": self.link(**fields)}

    def link(
        self, dag_id: str, task_id: str, dag_run_id: str, map_index: int | None, try_number: int | None
    ) -> str | None:
        """The task instance's page in Airflow 3's UI, at its attempt (the route of Airflow's own
        TaskInstance.log_url: dags/<dag>/runs/<run>/tasks/<task>[/mapped/<i>][?try_number=<n>])."""
        if not self.airflow_base_url:
            return None
        base = self.airflow_base_url.rstrip("/") + "/"
        mapped = f"/mapped/{map_index}" if map_index is not None and map_index >= 0 else ""
        attempt = f"?try_number={try_number}" if try_number else ""
        dag, run, task = (quote(part, safe="") for part in (dag_id, dag_run_id, task_id))
        return f"{base}dags/{dag}/runs/{run}/tasks/{task}{mapped}{attempt}"


def _integer(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def alert_fields(workflow: WorkflowService, overdue: pd.DataFrame) -> pd.DataFrame:
    """The tasks over their limit with the structured fields their source gives (none for a table of
    one's own)."""
    if isinstance(workflow, AirflowTaskInstances | DagsterRunsWorkflowService):
        return workflow.alert_fields(overdue)
    return overdue


def _names(value: str | None) -> list[str] | None:
    """A comma-separated list of names as a list, None when not given."""
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def workflow_service(settings: "Settings") -> WorkflowService:
    """The source FAULTLINE_WORKFLOW_SOURCE names, its table, columns and states from FAULTLINE_WORKFLOW_*
    where given, else the source's defaults (Airflow's for `airflow`, the `task_runs` contract for `sql`)."""
    retries = {
        "outage_retries": settings.source_retries,
        "outage_retry_delay_s": settings.source_retry_delay_s,
    }
    if settings.workflow_source == "dagster":
        return DagsterRunsAndStepsWorkflowService(
            check_queue=settings.queue_checks == "on", dagster_base_url=settings.dagster_base_url, **retries
        )
    given = {
        "table": settings.workflow_table,
        "run_id_columns": _names(settings.workflow_run_id_columns),
        "task_type_columns": _names(settings.workflow_task_type_columns),
        "started_at_column": settings.workflow_started_at_column,
        "ended_at_column": settings.workflow_ended_at_column,
        "status_column": settings.workflow_status_column,
        "success_statuses": _names(settings.workflow_success_states),
        "running_statuses": _names(settings.workflow_running_states),
        "failed_statuses": _names(settings.workflow_failed_states),
        "aborted_statuses": _names(settings.workflow_aborted_states),
        "waiting_statuses": _names(settings.workflow_waiting_states),
        "id_separator": settings.workflow_id_separator,
        "queued_at_column": settings.workflow_queued_at_column,
        "queued_statuses": _names(settings.workflow_queued_states),
    }
    config = {name: value for name, value in given.items() if value is not None}
    if settings.workflow_queued_at_column is not None:
        config["queued_at_column_required"] = True
    if settings.queue_checks == "off":
        config["queued_at_column"] = None
    url = settings.workflow_db_url or settings.store_url()
    if settings.workflow_source == "airflow":
        return AirflowTaskInstances(url=url, airflow_base_url=settings.airflow_base_url, **config, **retries)
    return TaskRunsTable(url=url, **config, **retries)
