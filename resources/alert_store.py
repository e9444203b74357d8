"""The alert store: learned time limits, raised alerts and their deliveries, in faultline's own database
(FAULTLINE_ALERTS_DB_URL, else FAULTLINE_DB_URL's), never in a source it reads.

The database holds the sensor's state, so a restarted daemon neither loses nor repeats an alert:
an alert is unique per (task type, run id), and each sink's delivery of it is recorded once. An
alert keeps its task type and run id with secrets redacted, as every sink shows them; its
uniqueness is a SHA-256 of the two as the workflow holds them, so runs whose ids differ only in
a redacted part are still told apart.
"""

import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import ClassVar

import pandas as pd
import sqlalchemy as sa
from pydantic import Field, PrivateAttr
from sqlalchemy.dialects import postgresql, sqlite

from faultline.redaction import redact_secrets
from resources.sources import privilege_errors
from resources.sql import SqlResource, safe_url, to_utc

BASELINE_COLUMNS = ["task_type", "n_runs", "mean_s", "std_s", "upper_limit_s", "has_limit", "estimator"]
# What the source tells of the run besides its task type and run id (Airflow's task instance: see
# resources/sources.py), NULL where it tells nothing; a link to the run in the source's UI.
SOURCE_FIELDS = {
    "dag_id": sa.Text(),
    "task_id": sa.Text(),
    "dag_run_id": sa.Text(),
    "map_index": sa.Integer(),
    "try_number": sa.Integer(),
    "link": sa.Text(),
    # The dagster source's: the job, the step (op) and the asset it materializes, the Dagster run.
    "dagster_job": sa.Text(),
    "dagster_step": sa.Text(),
    "dagster_asset": sa.Text(),
    "dagster_run_id": sa.Text(),
}
# What the alert is about: a task running past its duration limit, or one queued past its queue limit
# (resources/queue_waits.py). Alerts stored before there were queue alerts have none: running.
RUNNING, QUEUED = "running", "queued"
PHASES = (RUNNING, QUEUED)
# Columns added to the alerts table after its first release, nullable (see _add_columns).
# limit_from: the task type whose limit the task borrowed, NULL for its own (faultline.durations).
ADDED_ALERT_COLUMNS = {**SOURCE_FIELDS, "phase": sa.String(16), "limit_from": sa.Text()}
ALERT_COLUMNS = [
    "alert_id", "task_type", "run_id", "started_at", "elapsed_s",
    "upper_limit_s", "mean_s", "n_runs", "raised_at", *ADDED_ALERT_COLUMNS,
]  # fmt: skip

_metadata = sa.MetaData()


def _limits_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        _metadata,
        sa.Column("as_of", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("task_type", sa.Text(), primary_key=True),
        sa.Column("estimator", sa.String(32), nullable=False),
        sa.Column("n_runs", sa.Integer(), nullable=False),
        sa.Column("mean_s", sa.Float()),
        sa.Column("std_s", sa.Float()),
        sa.Column("upper_limit_s", sa.Float()),
        sa.Column("has_limit", sa.Boolean(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    )


# The limits of how long a task runs, and of how long it waits queued, by phase.
baselines_table = _limits_table("task_duration_baselines")
LIMIT_TABLES = {RUNNING: baselines_table, QUEUED: _limits_table("task_queue_baselines")}
alerts_table = sa.Table(
    "alerts",
    _metadata,
    sa.Column("alert_id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("task_type", sa.Text(), nullable=False),
    sa.Column("run_id", sa.Text(), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("elapsed_s", sa.Float(), nullable=False),
    sa.Column("upper_limit_s", sa.Float(), nullable=False),
    sa.Column("mean_s", sa.Float()),
    sa.Column("n_runs", sa.Integer()),
    sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_key", sa.String(64), nullable=False),
    *(sa.Column(name, kind, nullable=True) for name, kind in ADDED_ALERT_COLUMNS.items()),
    sa.UniqueConstraint("run_key", name="alerts_once_per_run"),
)
deliveries_table = sa.Table(
    "alert_deliveries",
    _metadata,
    sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.alert_id"), primary_key=True),
    sa.Column("sink", sa.String(64), primary_key=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
    # "delivered", or "expired" for an alert too old to be worth sending when its sink came up.
    sa.Column("outcome", sa.String(16), nullable=False, server_default="delivered"),
)
# One deliverer per sink at a time: a tick takes the sink's lease before its round and gives it back
# after; a tick that finds it held by another, unexpired, leaves the sink to that one.
claims_table = sa.Table(
    "alert_sink_claims",
    _metadata,
    sa.Column("sink", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=False),
)


def _insert(connection: sa.Connection, table: sa.Table):
    """An INSERT that skips rows already there (the unique keys make every write idempotent)."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(connection.dialect.name)
    if dialect is None:
        raise ValueError(f"the alert store supports PostgreSQL and SQLite, not {connection.dialect.name}")
    return dialect.insert(table).on_conflict_do_nothing()


def run_key(task_type: str, run_id: str, phase: str = RUNNING) -> str:
    """What makes an alert unique: the run's task type and id as the workflow holds them, hashed, and
    its phase (an attempt may be alerted once queued too long, then once running too long). A running
    alert's key is the one it had before there were phases, so a store's old alerts still count."""
    key = [task_type, run_id] if phase == RUNNING else [task_type, run_id, phase]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def _add_columns(connection: sa.Connection) -> None:
    """Give an alerts table made before the source fields and the phase their columns: nullable, so
    the alerts already there keep their rows, and a store no newer code has touched keeps working."""
    present = {column["name"] for column in sa.inspect(connection).get_columns(alerts_table.name)}
    for name, kind in ADDED_ALERT_COLUMNS.items():
        if name in present:
            continue
        column = f"{name} {kind.compile(dialect=connection.dialect)}"
        if connection.dialect.name == "postgresql":
            # Two processes upgrading one store at once: the second finds the column there.
            connection.execute(sa.text(f"ALTER TABLE {alerts_table.name} ADD COLUMN IF NOT EXISTS {column}"))
        else:
            # SQLite takes a write lock for the ALTER: a second process waits, then finds the column.
            try:
                connection.execute(sa.text(f"ALTER TABLE {alerts_table.name} ADD COLUMN {column}"))
            except sa.exc.OperationalError as error:
                if "duplicate column" not in str(error.orig):
                    raise


def _field(value: object) -> object:
    """A source field as stored: text redacted as every alert's ids are, a number as an int."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return redact_secrets(value) if isinstance(value, str) else int(value)


def _alerts_frame(rows: list) -> pd.DataFrame:
    alerts = pd.DataFrame(rows, columns=ALERT_COLUMNS)
    alerts["phase"] = alerts["phase"].fillna(RUNNING)
    for column in ("started_at", "raised_at"):
        alerts[column] = pd.to_datetime(alerts[column].map(to_utc), utc=True) if rows else alerts[column]
    return alerts


def _needs_privileges(url: str) -> str:
    return (
        f"alert store at {safe_url(url)}: the role may not create or write faultline's tables ("
        f"{', '.join(_metadata.tables)}); point FAULTLINE_ALERTS_DB_URL at a database of faultline's own, "
        f"or GRANT CREATE ON SCHEMA public TO <role> (then SELECT, INSERT, UPDATE and DELETE on those tables)"
    )


class AlertStore(SqlResource):
    """Time limits, alerts and deliveries (FAULTLINE_ALERTS_DB_URL, tables created on first use)."""

    url: str = Field(description="SQLAlchemy URL of the database that keeps the alerts.")
    _schema_ready: bool = PrivateAttr(default=False)

    source_name: ClassVar[str] = "alert store"
    settings_hint: ClassVar[str] = "FAULTLINE_ALERTS_DB_URL"

    @contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        """A pooled connection to the store, its tables created at the resource's first use."""
        with self.connect() as connection, privilege_errors(_needs_privileges(self.url)):
            if not self._schema_ready:
                _metadata.create_all(connection)
                _add_columns(connection)
                connection.commit()
                self._schema_ready = True
            yield connection

    def save_baselines(self, as_of: datetime, baselines: pd.DataFrame, phase: str = RUNNING) -> None:
        """Replace the limits (of `phase`: durations, or queue waits) as of `as_of` in one transaction:
        readers see the old set or the new one, and two refreshes of one day at once leave one whole set
        (the second waits for the first)."""
        limits_table = LIMIT_TABLES[phase]
        rows = [
            {
                "as_of": to_utc(as_of),
                "task_type": row.task_type,
                "estimator": row.estimator,
                "n_runs": int(row.n_runs),
                "mean_s": None if pd.isna(row.mean_s) else float(row.mean_s),
                "std_s": None if pd.isna(row.std_s) else float(row.std_s),
                "upper_limit_s": None if pd.isna(row.upper_limit_s) else float(row.upper_limit_s),
                "has_limit": bool(row.has_limit),
                "computed_at": datetime.now(UTC),
            }
            for row in baselines.itertuples(index=False)
        ]
        with self._connect() as connection:
            if connection.dialect.name == "postgresql":
                # Writers queue here; readers (ACCESS SHARE) do not. Without it the second of two
                # refreshes deletes nothing it can see, then fails on the first's new rows.
                connection.execute(sa.text(f"LOCK TABLE {limits_table.name} IN SHARE ROW EXCLUSIVE MODE"))
            connection.execute(limits_table.delete().where(limits_table.c.as_of == to_utc(as_of)))
            if rows:
                connection.execute(limits_table.insert(), rows)
            connection.commit()

    def latest_baselines(self, phase: str = RUNNING) -> tuple[datetime | None, pd.DataFrame]:
        """The most recent set of limits (of `phase`), read in one statement so it is never half a
        refresh."""
        limits_table = LIMIT_TABLES[phase]
        latest = sa.select(sa.func.max(limits_table.c.as_of)).scalar_subquery()
        query = sa.select(limits_table).where(limits_table.c.as_of == latest)
        with self._connect() as connection:
            # Column by column: a frame built from 10,000 row mappings was most of a sensor tick.
            rows = pd.read_sql(query, connection)
        if rows.empty:
            return None, pd.DataFrame(columns=BASELINE_COLUMNS)
        return to_utc(rows["as_of"].iloc[0]), rows[BASELINE_COLUMNS]

    def record_alerts(self, overdue: pd.DataFrame, raised_at: datetime, phase: str = RUNNING) -> pd.DataFrame:
        """Store an alert for each overdue run (of `phase`: running, or queued) not alerted before in
        that phase; return only the new ones."""
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r}: use one of {', '.join(PHASES)}")
        rows = [
            {
                "task_type": redact_secrets(str(row.task_type)),
                "run_id": redact_secrets(str(row.run_id)),
                "run_key": run_key(str(row.task_type), str(row.run_id), phase),
                "phase": phase,
                "limit_from": _field(getattr(row, "limit_from", None)),
                "started_at": to_utc(pd.Timestamp(row.started_at).floor("us").to_pydatetime()),
                "elapsed_s": float(row.elapsed_s),
                "upper_limit_s": float(row.upper_limit_s),
                "mean_s": float(row.mean_s),
                "n_runs": int(row.n_runs),
                "raised_at": to_utc(raised_at),
                **{name: _field(getattr(row, name, None)) for name in SOURCE_FIELDS},
            }
            for row in overdue.itertuples(index=False)
        ]
        new = []
        with self._connect() as connection:
            statement = _insert(connection, alerts_table).returning(*alerts_table.c)
            if rows:
                # One executemany, which SQLAlchemy sends as multi-row INSERTs ("insertmanyvalues"):
                # a statement per alert took most of a second at 1,000 alerts (bench/durations.py).
                new = connection.execute(statement, rows).mappings().all()
            connection.commit()
        # Ids are drawn in the order the rows were given; RETURNING over batches promises no order.
        return _alerts_frame(sorted(new, key=lambda alert: alert["alert_id"]))

    def newest_alert_id(self) -> int | None:
        """The id of the latest alert raised (ids only grow), None before the first: what a sensor
        compares with its cursor without reading the alerts."""
        with self._connect() as connection:
            return connection.execute(sa.select(sa.func.max(alerts_table.c.alert_id))).scalar()

    def alerts(self) -> pd.DataFrame:
        with self._connect() as connection:
            rows = (
                connection.execute(sa.select(alerts_table).order_by(alerts_table.c.alert_id)).mappings().all()
            )
        return _alerts_frame(rows)

    def undelivered(self, sink: str) -> pd.DataFrame:
        """Alerts that `sink` has not yet received, oldest first."""
        delivered = sa.select(deliveries_table.c.alert_id).where(deliveries_table.c.sink == sink)
        query = (
            sa.select(alerts_table)
            .where(alerts_table.c.alert_id.not_in(delivered))
            .order_by(alerts_table.c.alert_id)
        )
        with self._connect() as connection:
            rows = connection.execute(query).mappings().all()
        return _alerts_frame(rows)

    def mark_delivered(
        self, alert_ids: Iterable[int], sink: str, delivered_at: datetime, outcome: str = "delivered"
    ) -> None:
        """Record, in one transaction, that `sink` is done with these alerts (sent, or expired); an
        alert already recorded for the sink is left as it was."""
        rows = [
            {"alert_id": int(i), "sink": sink, "delivered_at": to_utc(delivered_at), "outcome": outcome}
            for i in alert_ids
        ]
        if not rows:
            return
        with self._connect() as connection:
            connection.execute(_insert(connection, deliveries_table), rows)
            connection.commit()

    def claim_sink(self, sink: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take `sink`'s delivery lease for `holder` until `until`, unless another holder's lease runs
        past `now`. True when `holder` has it."""
        with self._connect() as connection:
            connection.execute(
                _insert(connection, claims_table),
                {"sink": sink, "holder": holder, "claimed_until": to_utc(until)},
            )
            # Row locks serialize two claims of one sink; each re-reads the row it updates.
            taken = connection.execute(
                claims_table.update()
                .where(
                    claims_table.c.sink == sink,
                    sa.or_(claims_table.c.holder == holder, claims_table.c.claimed_until < to_utc(now)),
                )
                .values(holder=holder, claimed_until=to_utc(until))
            )
            connection.commit()
        return taken.rowcount == 1

    def release_sink(self, sink: str, holder: str) -> None:
        with self._connect() as connection:
            connection.execute(
                claims_table.delete().where(claims_table.c.sink == sink, claims_table.c.holder == holder)
            )
            connection.commit()
