"""The deployment-events store: error events in a SQL table, read one day at a time.

Contract by default: a table `deployment_events` with `id` (integer primary key), `created_at` (UTC
timestamp) and `payload` (text: a JSON array of events, one row per batch). The column names are
settings, so an existing table fits as it is; a table with one event per row in plain columns names
them in `event_columns`, and each row's payload is then those columns as one JSON object. On SQLite,
times are compared as text in the format SQLAlchemy writes (`2026-11-21 09:30:00.000000`, UTC).
"""

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import ClassVar

import pandas as pd
import sqlalchemy as sa
from pydantic import Field

from resources.error_source import DUMP_COLUMNS, ErrorEventSource, json_value
from resources.outages import SourceConfigurationError
from resources.sql import SqlResource, safe_url, table_reference, to_utc, validate_identifier

__all__ = ["DUMP_COLUMNS", "DeploymentEventStore"]


def _events_table(name: str, id_column: str, created_at_column: str, payload_column: str) -> sa.Table:
    schema, table = table_reference(name)
    return sa.Table(
        table,
        sa.MetaData(),
        sa.Column(id_column, sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(created_at_column, sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column(payload_column, sa.Text()),
        schema=schema,
    )


def event_payload(names: list[str], values: Iterable[object], time_columns: frozenset[str]) -> str | bytes:
    """One row's columns as a JSON object (keys the column names, in their order).

    Bytes are read as UTF-8; a value that is not UTF-8 makes the whole payload bytes that are not
    either, so the flatten step quarantines the row rather than this reader failing the day. Text in
    a time column (SQLite keeps times as text) is rewritten as ISO 8601 when it reads as a time.
    """
    record: dict[str, object] = {}
    not_utf8 = False
    for name, value in zip(names, values, strict=True):
        if isinstance(value, memoryview):
            value = value.tobytes()
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                value, not_utf8 = value.decode("utf-8", "surrogateescape"), True
        if name in time_columns and isinstance(value, str):
            try:
                value = to_utc(datetime.fromisoformat(value)).isoformat()
            except ValueError:
                pass  # kept as stored: the event still says what the table holds
        record[name] = value
    text = json.dumps(record, ensure_ascii=False, default=json_value)
    return text.encode("utf-8", "surrogateescape") if not_utf8 else text


class DeploymentEventStore(ErrorEventSource, SqlResource):
    """Reads (and, for the demo and tests, writes) a table of error events."""

    url: str = Field(description="SQLAlchemy URL of the events database (FAULTLINE_EVENTS_DB_URL).")
    table: str = Field(default="deployment_events", description="Table holding the events.")
    id_column: str = Field(
        default="id",
        description="Integer column identifying a row (the row id of its events and of the quarantine); "
        "the day is read in its order.",
    )
    created_at_column: str = Field(
        default="created_at", description="Timestamp column (UTC) that places a row in its day."
    )
    payload_column: str = Field(
        default="payload",
        description="Text or JSON column holding a row's payload (a JSON array of events by default); "
        "not read when `event_columns` is set.",
    )
    event_columns: list[str] = Field(
        default=[],
        description="For a table with one event per row in plain columns: the columns that make each "
        "row's payload, one JSON object with the column names as keys (times as ISO 8601 text). "
        "Empty: the payload is `payload_column`.",
    )
    source_name: ClassVar[str] = "deployment-events store"
    settings_hint: ClassVar[str] = "FAULTLINE_EVENTS_DB_URL and the store's `table`"

    def _names(self) -> dict[str, str | list[str]]:
        """Each setting's column name(s), validated: a name is quoted by SQLAlchemy, never run."""

        def column(name: str, setting: str) -> str:
            return validate_identifier(name, setting, qualified=False)

        names: dict[str, str | list[str]] = {
            "id_column": column(self.id_column, "id_column"),
            "created_at_column": column(self.created_at_column, "created_at_column"),
        }
        if self.event_columns:
            if len(set(self.event_columns)) < len(self.event_columns):
                raise ValueError(f"event_columns={self.event_columns!r} names a column twice")
            names["event_columns"] = [column(name, "event_columns") for name in self.event_columns]
        else:
            names["payload_column"] = column(self.payload_column, "payload_column")
        return names

    def _table(self) -> sa.Table:
        return _events_table(
            validate_identifier(self.table, "table"),
            validate_identifier(self.id_column, "id_column", qualified=False),
            validate_identifier(self.created_at_column, "created_at_column", qualified=False),
            validate_identifier(self.payload_column, "payload_column", qualified=False),
        )

    def _declared_columns(self, connection: sa.Connection) -> dict[str, object] | None:
        """The table's columns and their declared types; None when there is no such table."""
        schema, name = table_reference(self.table)
        inspector = sa.inspect(connection)
        if not inspector.has_table(name, schema=schema):
            return None
        return {column["name"]: column["type"] for column in inspector.get_columns(name, schema=schema)}

    def _name_missing_column(self, declared: dict[str, object] | None, names: dict) -> None:
        """A SourceConfigurationError naming the setting whose column the table lacks, if one does
        (a missing table is left to the query's own error, which names it)."""
        if declared is None:
            return
        for setting, value in names.items():
            for column in [value] if isinstance(value, str) else value:
                if column not in declared:
                    raise SourceConfigurationError(
                        f"{self.source_name} at {safe_url(self.url)}: table {self.table!r} has no column "
                        f"{column!r}; set `{setting}` (not retried: a configuration error)"
                    )

    def iter_batches(self, start: datetime, end: datetime, rows_per_part: int) -> Iterator[pd.DataFrame]:
        """Rows with start <= created_at < end, as stored, `rows_per_part` at a time in id order.

        Streamed (a server-side cursor on PostgreSQL), so a day of any size is read in bounded
        memory. Payloads come as bytes where the text may be invalid, for the pipeline to quarantine.
        """
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be at least 1, got {rows_per_part}")
        names = self._names()
        try:
            yield from self._read(names, start, end, rows_per_part)
        except SourceConfigurationError:
            # The database's own words ("no such column: x") do not say which setting to change.
            with self.connect() as connection:
                self._name_missing_column(self._declared_columns(connection), names)
            raise

    def _read_table(self, names: dict) -> sa.TableClause:
        """The table as read: the id and time typed, every other column untyped (as stored)."""
        schema, name = table_reference(validate_identifier(self.table, "table"))
        columns = {
            self.id_column: sa.column(self.id_column, sa.BigInteger()),
            self.created_at_column: sa.column(self.created_at_column, sa.DateTime(timezone=True)),
        }
        for column in names.get("event_columns") or [self.payload_column]:
            columns.setdefault(column, sa.column(column))
        return sa.table(name, *columns.values(), schema=schema)

    def _read(
        self, names: dict, start: datetime, end: datetime, rows_per_part: int
    ) -> Iterator[pd.DataFrame]:
        table = self._read_table(names)
        identity, created_at = table.c[self.id_column], table.c[self.created_at_column]
        event_columns: list[str] = list(names.get("event_columns", []))
        with self.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if event_columns:
                declared = self._declared_columns(connection)
                self._name_missing_column(declared, names)
                time_types = (sa.DateTime, sa.Date, sa.Time)
                time_columns = frozenset(
                    name for name in event_columns if declared and isinstance(declared[name], time_types)
                )
                values: list[sa.ColumnElement] = [table.c[name] for name in event_columns]
                if sqlite:
                    # Text as bytes, as for a payload below; untyped, so every value comes as stored.
                    values = [
                        sa.type_coerce(
                            sa.case((sa.func.typeof(v) == "text", sa.cast(v, sa.LargeBinary)), else_=v),
                            sa.types.NullType(),
                        )
                        for v in values
                    ]
                selected = [v.label(f"event_{i}") for i, v in enumerate(values)]
            else:
                payload = table.c[self.payload_column]
                # SQLite hands back whatever bytes were stored; reading them as a BLOB lets the pipeline
                # quarantine a payload that is not UTF-8 instead of failing the whole day. Elsewhere as
                # text, also from a JSON column, which a driver would otherwise hand back parsed.
                selected = [sa.cast(payload, sa.LargeBinary if sqlite else sa.Text).label("payload")]
            query = (
                sa.select(identity.label("id"), created_at.label("created_at"), *selected)
                .where(created_at >= to_utc(start), created_at < to_utc(end))
                .order_by(identity)
            )
            streamed = connection.execution_options(stream_results=True, yield_per=rows_per_part)
            for rows in streamed.execute(query).partitions():
                if event_columns:
                    rows = [
                        (row[0], row[1], event_payload(event_columns, row[2:], time_columns)) for row in rows
                    ]
                part = pd.DataFrame(rows, columns=DUMP_COLUMNS)
                if not pd.api.types.is_integer_dtype(part["id"]):
                    raise SourceConfigurationError(
                        f"{self.source_name} at {safe_url(self.url)}: column {self.id_column!r} of "
                        f"{self.table!r} holds {part['id'].iloc[0]!r}, not an integer; the graph numbers "
                        "each row's events by an integer id: set `id_column` to an integer column (a view "
                        "can add one) (not retried: a configuration error)"
                    )
                part["created_at"] = pd.to_datetime(part["created_at"].map(to_utc), utc=True)
                yield part

    def create_table(self, replace: bool = False) -> None:
        table = self._table()
        with self.connect() as connection:
            if replace:
                table.drop(connection, checkfirst=True)
            table.create(connection, checkfirst=True)
            connection.commit()

    def write_batches(self, rows: Iterable[Mapping[str, object]]) -> int:
        """Insert rows of `id`, `created_at` and `payload` (into the configured columns); returns how
        many were written."""
        table = self._table()
        records = [
            {
                self.id_column: row["id"],
                self.created_at_column: to_utc(row["created_at"]),
                self.payload_column: row["payload"],
            }
            for row in rows
        ]
        with self.connect() as connection:
            if records:
                connection.execute(table.insert(), records)
            connection.commit()
        return len(records)
