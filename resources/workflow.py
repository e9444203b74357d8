"""Workflow services: where task runs come from, a SQL table or the Dagster deployment itself.

Both answer the same questions: per task type, the duration aggregates of the successful runs that
ended in a window (their moments, and a histogram of them for the estimators that need quantiles);
the successful durations themselves; and the tasks running now. Task runs that cannot be trusted are
counted with a reason, never used.
"""

from abc import ABC, abstractmethod
from dataclasses import replace
from datetime import datetime, timedelta
from operator import itemgetter
from typing import ClassVar
from urllib.parse import quote

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from faultline.durations import (
    HISTOGRAM_BUCKET_WIDTH,
    HISTOGRAM_COLUMNS,
    LEVEL_SHIFT_DAYS,
    READABLE_TIMES,
    REJECTIONS,
    RunFacts,
    duration_histogram,
    screen_task_runs,
    to_utc_naive,
)
from resources.outages import RetriedOnOutage
from resources.sql import SqlResource, table_reference, to_utc, validate_identifier

MOMENT_COLUMNS = ["task_type", "n_runs", "mean_s", "mean_sq_s"]
RUNNING_COLUMNS = ["run_id", "task_type", "started_at"]
SUCCESSFUL_RUN_COLUMNS = ["run_id", "task_type", "started_at", "ended_at", "status", "duration_s"]
_TASK_TYPE_SEPARATOR = "."
HISTOGRAM_CHUNK_ROWS = 100_000


class WorkflowService(RetriedOnOutage, ABC):
    """Where task runs come from."""

    @abstractmethod
    def duration_moments(self, start: datetime, end: datetime) -> pd.DataFrame:
        """Per task type, over successful runs that ended in [start, end): n_runs, mean_s, mean_sq_s."""

    @abstractmethod
    def successful_runs(self, start: datetime, end: datetime) -> pd.DataFrame:
        """Every successful run that ended in [start, end): SUCCESSFUL_RUN_COLUMNS, times in UTC."""

    def duration_histogram(self, start: datetime, end: datetime) -> pd.DataFrame:
        """`faultline.durations.duration_histogram` of the successful runs that ended in [start, end),
        recent meaning ended in the LEVEL_SHIFT_DAYS before `end`. Here from `successful_runs`; a source
        that can sum up in its store does it there, so the runs never leave it."""
        return duration_histogram(self.successful_runs(start, end), pd.Timestamp(to_utc(end)))

    @abstractmethod
    def rejected_runs(self, start: datetime, end: datetime) -> pd.DataFrame:
        """Runs of the window left out of every baseline, with their reason (run_id, task_type, reason)."""

    @abstractmethod
    def running_tasks(self, now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(running tasks: run_id, task_type, started_at; rejected rows: run_id, task_type, reason)."""


class SqlWorkflowService(WorkflowService, SqlResource):
    """A table of task runs, read in place; names are Config so an existing table fits as it is.

    Defaults match the contract `task_runs(run_id, task_type, started_at, ended_at, status)` with the
    statuses running, success, failed and aborted. For Airflow's `task_instance`: table
    task_instance, task_type_columns [dag_id, task_id], run_id_columns [dag_id, task_id, run_id,
    map_index], started_at_column start_date, ended_at_column end_date, status_column state,
    failed_statuses [failed, upstream_failed], aborted_statuses [skipped, removed, shutdown, ...].
    """

    url: str = Field(description="SQLAlchemy URL of the workflow database (FAULTLINE_WORKFLOW_DB_URL).")
    table: str = "task_runs"
    run_id_columns: list[str] = Field(default=["run_id"], description="Joined with '.' into a run id.")
    task_type_columns: list[str] = Field(
        default=["task_type"], description="Joined with '.' into a task type."
    )
    started_at_column: str = "started_at"
    ended_at_column: str = "ended_at"
    status_column: str = "status"
    success_statuses: list[str] = ["success"]
    running_statuses: list[str] = ["running"]
    failed_statuses: list[str] = ["failed"]
    aborted_statuses: list[str] = ["aborted"]

    source_name: ClassVar[str] = "workflow database"
    settings_hint: ClassVar[str] = "FAULTLINE_WORKFLOW_DB_URL and the service's table and column settings"

    def _columns(self) -> dict[str, list[str] | str]:
        def column(name: str, setting: str) -> str:
            return validate_identifier(name, setting, qualified=False)

        for setting in ("run_id_columns", "task_type_columns"):
            if not getattr(self, setting):
                raise ValueError(f"{setting} is empty; name the column or columns that hold it")

        return {
            "run_id_columns": [column(c, "run_id_columns") for c in self.run_id_columns],
            "task_type_columns": [column(c, "task_type_columns") for c in self.task_type_columns],
            "started_at_column": column(self.started_at_column, "started_at_column"),
            "ended_at_column": column(self.ended_at_column, "ended_at_column"),
            "status_column": column(self.status_column, "status_column"),
        }

    def _table_columns(self) -> dict[str, list[str] | str]:
        """The table's own columns the service reads, by the setting that names each (`_columns`; a
        view over the table names others)."""
        return self._columns()

    def _table(self) -> sa.TableClause:
        schema, name = table_reference(validate_identifier(self.table, "table"))
        columns = self._columns()
        names = {*columns["run_id_columns"], *columns["task_type_columns"]}
        names |= {columns["started_at_column"], columns["ended_at_column"], columns["status_column"]}
        return sa.table(name, *(sa.column(n) for n in sorted(names)), schema=schema)

    def _check_columns(self, connection: sa.Connection) -> None:
        """A clear error naming the setting when the table or a configured column does not exist."""
        schema, name = table_reference(self.table)
        inspector = sa.inspect(connection)
        if not inspector.has_table(name, schema=schema):
            raise ValueError(f"the workflow database has no table {self.table!r}; set its name in `table`")
        present = {column["name"] for column in inspector.get_columns(name, schema=schema)}
        for setting, value in self._table_columns().items():
            for column in [value] if isinstance(value, str) else value:
                if column not in present:
                    raise ValueError(f"table {self.table!r} has no column {column!r}; set `{setting}`")

    def _readable(self, connection: sa.Connection, column: sa.ColumnElement) -> sa.ColumnElement:
        """Whether a stored time can be read (NULL for NULL, never for a value): an instant of
        `READABLE_TIMES`, the span the pandas screening reads.

        SQLite: text starting with a real calendar date (julianday reads 2026-02-30 as March 2nd) that
        julianday reads (not a number, nor 'now'). PostgreSQL: 'infinity' is outside the span.
        """
        first, end = (self._instant(connection, moment.to_pydatetime()) for moment in READABLE_TIMES)
        dialect = connection.dialect.name
        if dialect == "sqlite":
            date = sa.func.substr(column, 1, 10)
            instant = sa.func.julianday(column)
            readable = sa.and_(
                column.op("GLOB")("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*"),
                sa.func.date(sa.func.julianday(date)) == date,
                instant >= first,
                instant < end,
            )
            return sa.case((column.is_(None), None), else_=sa.func.coalesce(readable, False))
        if dialect == "postgresql":
            return sa.and_(column >= first, column < end)
        return column.is_not(None)

    def _unreadable(self, connection: sa.Connection, column: sa.ColumnElement) -> sa.ColumnElement:
        """NULL, or a value that is not a readable time."""
        return sa.or_(column.is_(None), sa.not_(self._readable(connection, column)))

    def _has_nul(self, connection: sa.Connection, columns: list[str], table: sa.TableClause):
        """Whether any of the columns holds a NUL character (only SQLite can store one; PostgreSQL
        cannot, so an alert or a limit for such a task could not be written there)."""
        if connection.dialect.name != "sqlite":
            return sa.false()
        return sa.or_(
            *(sa.func.instr(sa.cast(table.c[name], sa.LargeBinary), b"\x00") > 0 for name in columns)
        )

    def _seconds(
        self,
        connection: sa.Connection,
        started: sa.ColumnElement,
        ended: sa.ColumnElement,
        floating: bool = False,
    ):
        """Seconds from start to end; `floating`: as double precision on PostgreSQL too, where EXTRACT
        gives numeric, exact but many times slower to compute with."""
        dialect = connection.dialect.name
        if dialect == "sqlite":
            return (sa.func.julianday(ended) - sa.func.julianday(started)) * 86400.0
        if dialect == "postgresql":
            # NULL for an unreadable time: PostgreSQL fails the whole query on infinity - a time, and
            # does not promise to test the WHERE clause's other conditions first.
            readable = sa.and_(self._readable(connection, started), self._readable(connection, ended))
            interval = ended - started
            seconds = sa.func.date_part("epoch", interval) if floating else sa.extract("epoch", interval)
            return sa.case((readable, seconds), else_=None)
        if dialect in ("mysql", "mariadb"):
            return sa.func.timestampdiff(sa.text("MICROSECOND"), started, ended) / 1e6
        raise ValueError(f"durations are not implemented for {dialect} databases; use PostgreSQL or SQLite")

    def _instant(self, connection: sa.Connection, value: sa.ColumnElement | datetime) -> sa.ColumnElement:
        """A comparable instant: SQLite stores text in more than one format, julianday reads them all."""
        if connection.dialect.name == "sqlite":
            if isinstance(value, datetime):
                value = to_utc(value).replace(tzinfo=None).isoformat(sep=" ")
            return sa.func.julianday(value)
        return sa.literal(to_utc(value), sa.DateTime(timezone=True)) if isinstance(value, datetime) else value

    def _ended_in(self, connection: sa.Connection, table: sa.TableClause, start: datetime, end: datetime):
        ended = self._instant(connection, table.c[self.ended_at_column])
        return sa.and_(ended >= self._instant(connection, start), ended < self._instant(connection, end))

    def _run_facts(
        self,
        connection: sa.Connection,
        table: sa.TableClause,
        now: datetime,
        known: dict[str, bool] | None = None,
    ) -> RunFacts:
        """What the screening asks of each run, as SQL expressions; `known` gives facts the query's other
        conditions already decide, as constants the database folds away instead of testing every row."""
        started, ended = table.c[self.started_at_column], table.c[self.ended_at_column]
        status = table.c[self.status_column]
        finished = [*self.success_statuses, *self.failed_statuses, *self.aborted_statuses]
        facts = RunFacts(
            run_id_missing=sa.or_(*(table.c[name].is_(None) for name in self.run_id_columns)),
            task_type_missing=sa.or_(*(table.c[name].is_(None) for name in self.task_type_columns)),
            run_id_has_nul=self._has_nul(connection, self.run_id_columns, table),
            task_type_has_nul=self._has_nul(connection, self.task_type_columns, table),
            status_missing=status.is_(None),
            running=status.in_(self.running_statuses),
            finished=status.in_(finished),
            started_missing=started.is_(None),
            started_unreadable=sa.not_(self._readable(connection, started)),
            ended_present=ended.is_not(None),
            ended_unreadable=sa.and_(ended.is_not(None), sa.not_(self._readable(connection, ended))),
            started_after_now=self._instant(connection, started) > self._instant(connection, now),
            # Instants compared, not seconds: EXTRACT gives PostgreSQL's slow numeric, on every row.
            ends_before_start=self._instant(connection, ended) < self._instant(connection, started),
            ends_at_start=self._instant(connection, ended) == self._instant(connection, started),
        )
        return replace(
            facts, **{name: sa.true() if value else sa.false() for name, value in (known or {}).items()}
        )

    def _rejection(self, connection: sa.Connection, table: sa.TableClause, now: datetime) -> sa.ColumnElement:
        """Why the screening rejects a run, NULL for a valid one: `REJECTIONS` as a SQL CASE."""
        facts = self._run_facts(connection, table, now)
        return sa.case(*((rule(facts), reason) for reason, rule in REJECTIONS), else_=None)

    def _successful_in(
        self, connection: sa.Connection, table: sa.TableClause, start: datetime, end: datetime
    ) -> list[sa.ColumnElement]:
        """The runs a baseline learns from: successful, ended in [start, end), and not rejected by the
        screening as of `end`: no rule of `REJECTIONS` holds.

        Rule by rule rather than `CASE ... END IS NULL`, whose share of rows PostgreSQL cannot estimate
        (it guesses 0.5%, then sorts 10 million rows to group them instead of hashing).
        """
        # A successful run's status is there and finished; one that ended in the window has an end.
        known = {"status_missing": False, "finished": True, "ended_present": True}
        facts = self._run_facts(connection, table, now=end, known=known)
        return [
            table.c[self.status_column].in_(self.success_statuses),
            self._ended_in(connection, table, start, end),
            *(rule(facts).is_not(sa.true()) for _, rule in REJECTIONS),
        ]

    def _task_type(self, table: sa.TableClause) -> list[sa.ColumnElement]:
        return [table.c[name].label(f"task_type_{i}") for i, name in enumerate(self.task_type_columns)]

    def _joined(self, frame: pd.DataFrame, prefix: str) -> pd.Series:
        parts = [frame[c].astype("string") for c in frame.columns if c.startswith(prefix)]
        joined = parts[0]
        for part in parts[1:]:
            joined = joined + _TASK_TYPE_SEPARATOR + part
        return joined.astype(object)

    def write_runs(self, runs: pd.DataFrame, replace: bool = False) -> int:
        """Create the contract's `task_runs` table and insert `runs` (the demo's and the tests' data)."""
        schema, name = table_reference(validate_identifier(self.table, "table"))
        table = sa.Table(
            name,
            sa.MetaData(),
            sa.Column("run_id", sa.Text(), primary_key=True),
            sa.Column("task_type", sa.Text()),
            sa.Column("started_at", sa.DateTime(timezone=True)),
            sa.Column("ended_at", sa.DateTime(timezone=True)),
            sa.Column("status", sa.Text()),
            schema=schema,
        )
        records = [
            {
                column: (None if pd.isna(value) else to_utc(value.to_pydatetime()))
                if column in ("started_at", "ended_at")
                else value
                for column, value in row.items()
            }
            for row in runs[["run_id", "task_type", "started_at", "ended_at", "status"]].to_dict(
                orient="records"
            )
        ]
        with self.connect() as connection:
            if replace:
                table.drop(connection, checkfirst=True)
            table.create(connection, checkfirst=True)
            if records:
                connection.execute(table.insert(), records)
            connection.commit()
        return len(records)

    def duration_moments(self, start: datetime, end: datetime) -> pd.DataFrame:
        table = self._table()
        started, ended = table.c[self.started_at_column], table.c[self.ended_at_column]
        with self.connect() as connection:
            self._check_columns(connection)
            seconds = self._seconds(connection, started, ended)
            task_type = self._task_type(table)
            query = (
                sa.select(
                    *task_type,
                    sa.func.count().label("n_runs"),
                    sa.func.avg(seconds).label("mean_s"),
                    sa.func.avg(seconds * seconds).label("mean_sq_s"),
                )
                .where(*self._successful_in(connection, table, start, end))
                .group_by(*task_type)
            )
            rows = pd.DataFrame(connection.execute(query).mappings().all())
        if rows.empty:
            return pd.DataFrame(columns=MOMENT_COLUMNS)
        n = rows["n_runs"].astype("int64")
        # Two column tuples can join into one task type ("a.b", "c" and "a", "b.c"): add up their sums.
        sums = (
            pd.DataFrame(
                {
                    "task_type": self._joined(rows, "task_type_"),
                    "n_runs": n,
                    "sum_s": rows["mean_s"].astype("float64") * n,
                    "sum_sq_s": rows["mean_sq_s"].astype("float64") * n,
                }
            )
            .groupby("task_type", as_index=False, sort=True)[["n_runs", "sum_s", "sum_sq_s"]]
            .sum()
        )
        return sums.assign(
            mean_s=sums["sum_s"] / sums["n_runs"], mean_sq_s=sums["sum_sq_s"] / sums["n_runs"]
        )[MOMENT_COLUMNS]

    def duration_histogram(self, start: datetime, end: datetime) -> pd.DataFrame:
        """Summed up in the database with one GROUP BY (task type, recent, bucket): a few rows per
        task type and bucket in place of every run of the window."""
        table = self._table()
        started, ended = table.c[self.started_at_column], table.c[self.ended_at_column]
        with self.connect() as connection:
            self._check_columns(connection)
            seconds = self._seconds(connection, started, ended, floating=True)
            recent_from = self._instant(connection, end - timedelta(days=LEVEL_SHIFT_DAYS))
            runs = (
                sa.select(
                    *self._task_type(table),
                    (self._instant(connection, ended) >= recent_from).label("recent"),
                    sa.func.floor(sa.func.ln(seconds) / HISTOGRAM_BUCKET_WIDTH).label("bucket"),
                    seconds.label("d"),
                )
                .where(*self._successful_in(connection, table, start, end))
                .subquery()
            )
            task_type = [runs.c[f"task_type_{i}"] for i in range(len(self.task_type_columns))]
            query = sa.select(
                *task_type,
                runs.c.recent,
                runs.c.bucket,
                sa.func.count().label("n_runs"),
                sa.func.sum(runs.c.d).label("sum_s"),
                sa.func.sum(runs.c.d * runs.c.d).label("sum_sq_s"),
                sa.func.min(runs.c.d).label("min_s"),
                sa.func.max(runs.c.d).label("max_s"),
            ).group_by(*task_type, runs.c.recent, runs.c.bucket)
            result = connection.execute(query)
            try:
                # The driver's plain tuples, a chunk at a time: a window of millions of runs can give
                # a million buckets, and as row objects all at once they would outweigh the histogram.
                names, chunks = list(result.keys()), []
                while rows := result.cursor.fetchmany(HISTOGRAM_CHUNK_ROWS):
                    chunks.append(self._histogram_chunk(pd.DataFrame(rows, columns=names)))
            finally:
                result.close()
        if not chunks:
            return pd.DataFrame(columns=list(HISTOGRAM_COLUMNS))
        histogram = pd.concat(chunks, ignore_index=True)
        if len(self.task_type_columns) == 1:
            return histogram
        # Two column tuples can join into one task type ("a.b", "c" and "a", "b.c"): add them up.
        return (
            histogram.groupby(["task_type", "recent", "bucket"], as_index=False, sort=True)
            .agg(
                n_runs=("n_runs", "sum"),
                sum_s=("sum_s", "sum"),
                sum_sq_s=("sum_sq_s", "sum"),
                min_s=("min_s", "min"),
                max_s=("max_s", "max"),
            )
            .astype({"n_runs": "int64"})[list(HISTOGRAM_COLUMNS)]
        )

    def _histogram_chunk(self, read: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "task_type": self._joined(read, "task_type_"),
                "recent": read["recent"].astype(bool),
                "bucket": read["bucket"].astype("int64"),
                "n_runs": read["n_runs"].astype("int64"),
                **{name: read[name].astype("float64") for name in HISTOGRAM_COLUMNS[4:]},
            }
        )

    def successful_runs(self, start: datetime, end: datetime) -> pd.DataFrame:
        table = self._table()
        started, ended = table.c[self.started_at_column], table.c[self.ended_at_column]
        with self.connect() as connection:
            self._check_columns(connection)
            seconds = self._seconds(connection, started, ended)
            task_type = self._task_type(table)
            run_id = [table.c[name].label(f"run_id_{i}") for i, name in enumerate(self.run_id_columns)]
            query = sa.select(
                *run_id,
                *task_type,
                started.label("started_at"),
                ended.label("ended_at"),
                seconds.label("duration_s"),
            ).where(*self._successful_in(connection, table, start, end))
            rows = pd.DataFrame(connection.execute(query).mappings().all())
        if rows.empty:
            return pd.DataFrame(columns=SUCCESSFUL_RUN_COLUMNS)
        return pd.DataFrame(
            {
                "run_id": self._joined(rows, "run_id_"),
                "task_type": self._joined(rows, "task_type_"),
                "started_at": _utc_times(rows["started_at"]),
                "ended_at": _utc_times(rows["ended_at"]),
                "status": "success",
                "duration_s": rows["duration_s"].astype("float64"),
            }
        )

    def rejected_runs(self, start: datetime, end: datetime) -> pd.DataFrame:
        """Judged in SQL by the screening as of `end`, for the rows whose end falls in the window, or
        whose start does when the end is missing or unreadable; rows with neither time readable count
        in every window."""
        table = self._table()
        started, ended = table.c[self.started_at_column], table.c[self.ended_at_column]
        with self.connect() as connection:
            self._check_columns(connection)
            task_type = self._task_type(table)
            run_id = [table.c[name].label(f"run_id_{i}") for i, name in enumerate(self.run_id_columns)]
            reason = self._rejection(connection, table, now=end).label("reason")
            started_at = self._instant(connection, started)
            ended_unreadable = self._unreadable(connection, ended)
            in_window = sa.or_(
                sa.and_(self._readable(connection, ended), self._ended_in(connection, table, start, end)),
                sa.and_(
                    ended_unreadable,
                    self._readable(connection, started),
                    started_at >= self._instant(connection, start),
                    started_at < self._instant(connection, end),
                ),
                sa.and_(ended_unreadable, self._unreadable(connection, started)),
            )
            inner = sa.select(*run_id, *task_type, reason).where(in_window).subquery()
            query = sa.select(inner).where(inner.c.reason.is_not(None))
            rows = pd.DataFrame(connection.execute(query).mappings().all())
        if rows.empty:
            return pd.DataFrame(columns=["run_id", "task_type", "reason"])
        return pd.DataFrame(
            {
                "run_id": self._joined(rows, "run_id_"),
                "task_type": self._joined(rows, "task_type_"),
                "reason": rows["reason"],
            }
        )

    def running_tasks(self, now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
        table = self._table()
        with self.connect() as connection:
            self._check_columns(connection)
            run_id = [table.c[name].label(f"run_id_{i}") for i, name in enumerate(self.run_id_columns)]
            times = []
            for name, column in (("started_at", self.started_at_column), ("ended_at", self.ended_at_column)):
                value = table.c[column]
                if connection.dialect.name == "postgresql":
                    # A time the driver cannot hand to Python comes as NULL with a flag, and is rejected
                    # as unparseable below, instead of failing the whole tick.
                    readable = self._readable(connection, value)
                    times.append(sa.case((readable, value), else_=None).label(name))
                    times.append(sa.and_(value.is_not(None), sa.not_(readable)).label(f"{name}_unreadable"))
                else:
                    times.append(value.label(name))
            query = sa.select(*run_id, *self._task_type(table), *times).where(
                table.c[self.status_column].in_(self.running_statuses)
            )
            result = connection.execute(query)
            try:
                # The driver's plain tuples, taken apart column by column. SQLAlchemy's row objects
                # (or an iterator per row, from zip(*rows)), 100,000 of them a tick, outlived the
                # young generations and set off full garbage collections of the whole process; the
                # collector stops tracking a tuple of strings and times at its first look.
                names, rows = list(result.keys()), result.cursor.fetchall()
            finally:
                result.close()
        if not rows:
            empty = pd.DataFrame(columns=RUNNING_COLUMNS)
            return empty, pd.DataFrame(columns=["run_id", "task_type", "reason"])
        # As objects, so that pandas does not look at each value to infer a type. Times go to the
        # screening as stored, so an unreadable one is rejected with its reason.
        read = pd.DataFrame(
            {name: pd.Series(list(map(itemgetter(i), rows)), dtype=object) for i, name in enumerate(names)}
        )
        times = {}
        for name in ("started_at", "ended_at"):
            times[name] = read[name]
            if f"{name}_unreadable" in read:  # rejected with its reason by the screening
                times[name] = read[name].mask(read[f"{name}_unreadable"].astype(bool), "unreadable")
        runs = pd.DataFrame(
            {
                "run_id": self._joined(read, "run_id_"),
                "task_type": self._joined(read, "task_type_"),
                **times,
                "status": "running",
            }
        )
        valid, rejected = screen_task_runs(runs, pd.Timestamp(to_utc(now)))
        return valid[RUNNING_COLUMNS], rejected


def _utc_times(values: pd.Series) -> pd.Series:
    """Timestamps as read from any store (datetimes, or SQLite's text) as UTC pandas timestamps."""
    aware = values.map(lambda v: to_utc(v) if isinstance(v, datetime) else v)
    return to_utc_naive(aware).dt.tz_localize("UTC")


class DagsterRunsWorkflowService(WorkflowService):
    """The runs of this Dagster deployment: job name as task type, run start and end, status.

    So every job gets a learned time limit without setting `dagster/max_runtime` by hand.
    """

    check_queue: bool = Field(
        default=True, description="Learn how long runs wait to start and flag one queued past its limit."
    )
    dagster_base_url: str | None = Field(
        default=None,
        description="The Dagster UI, e.g. http://dagster.example.com/ (FAULTLINE_DAGSTER_BASE_URL): each "
        "alert links to its run there.",
    )
    _instance: dg.DagsterInstance | None = PrivateAttr(default=None)
    _assets_by_plan: dict[str, dict[str, str]] = PrivateAttr(default_factory=dict)

    def alert_fields(self, overdue: pd.DataFrame) -> pd.DataFrame:
        """`overdue` with each alert's job, step and the asset that step materializes (for a step's
        alert: task type `job/step`, run id `run/step`), the Dagster run id, and a link to the run."""
        pairs = zip(overdue["task_type"], overdue["run_id"], strict=True)
        fields = [self.dagster_fields(str(task_type), str(run_id)) for task_type, run_id in pairs]
        names = ["dagster_job", "dagster_step", "dagster_asset", "dagster_run_id", "link"]
        return overdue.assign(**{name: [f[name] for f in fields] for name in names})

    def dagster_fields(self, task_type: str, run_id: str) -> dict[str, str | None]:
        # Neither a job's name nor a run id holds a "/"; a step key may not either.
        job, _, step = task_type.partition("/")
        dagster_run_id = run_id.partition("/")[0]
        base = self.dagster_base_url.rstrip("/") + "/" if self.dagster_base_url else None
        return {
            "dagster_job": job,
            "dagster_step": step or None,
            "dagster_asset": self._asset_of(self._instance.get_run_by_id(dagster_run_id), step)
            if step and self._instance
            else None,
            "dagster_run_id": dagster_run_id,
            "link": f"{base}runs/{quote(dagster_run_id, safe='')}" if base else None,
        }

    def _asset_of(self, run: dg.DagsterRun | None, step: str) -> str | None:
        """The asset the run's step materializes, from the run's execution plan (None for an op's
        step, or a step of several assets: named by the step alone)."""
        if run is None or not run.execution_plan_snapshot_id:
            return None
        return self._plan_assets(run.execution_plan_snapshot_id).get(step)

    def _plan_assets(self, snapshot_id: str) -> dict[str, str]:
        """Step key to the one asset it materializes, for an execution plan; kept, since the runs of a
        job share their plan's snapshot (its id is a hash of its content)."""
        if snapshot_id not in self._assets_by_plan:
            plan = self._instance.get_execution_plan_snapshot(snapshot_id)
            assets: dict[str, str] = {}
            # A snapshot the storage no longer has names no asset: the step goes by its key alone.
            for planned in plan.steps if plan is not None else []:
                keys = {
                    output.properties.asset_key
                    for output in planned.outputs
                    if output.properties and output.properties.asset_key
                }
                if len(keys) == 1:
                    assets[planned.key] = keys.pop().to_user_string()
            self._assets_by_plan[snapshot_id] = assets
        return self._assets_by_plan[snapshot_id]

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._instance = context.instance

    def _records(self, statuses: list[dg.DagsterRunStatus], **filters) -> list:
        if self._instance is None:
            raise RuntimeError("DagsterRunsWorkflowService needs a Dagster instance; use it as a resource")
        return list(self._instance.get_run_records(filters=dg.RunsFilter(statuses=statuses, **filters)))

    def _successful(self, start: datetime, end: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The successful runs that ended in [start, end), and those without a start, screened as of
        `end`: (valid runs, rejected runs)."""
        records = self._records([dg.DagsterRunStatus.SUCCESS], updated_after=to_utc(start))
        frame = pd.DataFrame(
            [(r.dagster_run.run_id, r.dagster_run.job_name, r.start_time, r.end_time) for r in records],
            columns=["run_id", "task_type", "start", "end"],
        )
        in_window = frame["end"].ge(to_utc(start).timestamp()) & frame["end"].lt(to_utc(end).timestamp())
        frame = frame[in_window | frame["start"].isna()]
        runs = pd.DataFrame(
            {
                "run_id": frame["run_id"],
                "task_type": frame["task_type"],
                "started_at": pd.to_datetime(frame["start"], unit="s", utc=True),
                "ended_at": pd.to_datetime(frame["end"], unit="s", utc=True),
                "status": "success",
            }
        )
        return screen_task_runs(runs, pd.Timestamp(to_utc(end)))

    def duration_moments(self, start: datetime, end: datetime) -> pd.DataFrame:
        durations = self.successful_runs(start, end)
        seconds = durations["duration_s"]
        grouped = pd.DataFrame({"task_type": durations["task_type"], "d": seconds, "d2": seconds * seconds})
        moments = grouped.groupby("task_type").agg(
            n_runs=("d", "size"), mean_s=("d", "mean"), mean_sq_s=("d2", "mean")
        )
        return moments.reset_index()[MOMENT_COLUMNS]

    def successful_runs(self, start: datetime, end: datetime) -> pd.DataFrame:
        valid, _ = self._successful(start, end)
        return valid.assign(
            started_at=valid["started_at"].dt.tz_localize("UTC"),
            ended_at=valid["ended_at"].dt.tz_localize("UTC"),
            duration_s=valid["duration_s"].astype("float64"),
        )[SUCCESSFUL_RUN_COLUMNS]

    def rejected_runs(self, start: datetime, end: datetime) -> pd.DataFrame:
        _, rejected = self._successful(start, end)
        return rejected

    def running_tasks(self, now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
        records = self._records([dg.DagsterRunStatus.STARTED])
        runs = pd.DataFrame(
            {
                "run_id": [r.dagster_run.run_id for r in records],
                "task_type": [r.dagster_run.job_name for r in records],
                "started_at": pd.to_datetime([r.start_time for r in records], unit="s", utc=True),
                "ended_at": pd.NaT,
                "status": "running",
            }
        )
        valid, rejected = screen_task_runs(runs, pd.Timestamp(to_utc(now)))
        return valid[RUNNING_COLUMNS], rejected
