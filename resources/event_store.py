"""The deployment-events store: batches of engine events in a SQL table, read one day at a time.

Contract: a table (default `deployment_events`) with `id` (primary key), `created_at` (UTC
timestamp) and `payload` (text: a JSON array of events, one row per batch).
"""

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import ClassVar

import pandas as pd
import sqlalchemy as sa
from pydantic import Field

from resources.sql import SqlResource, table_reference, to_utc, validate_identifier

DUMP_COLUMNS = ["id", "created_at", "payload"]


def _events_table(name: str, metadata: sa.MetaData | None = None) -> sa.Table:
    schema, table = table_reference(name)
    return sa.Table(
        table,
        metadata or sa.MetaData(),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("payload", sa.Text()),
        schema=schema,
    )


class DeploymentEventStore(SqlResource):
    """Reads (and, for the demo and tests, writes) the deployment-events table."""

    url: str = Field(description="SQLAlchemy URL of the events database (FAULTLINE_EVENTS_DB_URL).")
    table: str = Field(default="deployment_events", description="Table holding one row per batch.")
    source_name: ClassVar[str] = "deployment-events store"
    settings_hint: ClassVar[str] = "FAULTLINE_EVENTS_DB_URL and the store's `table`"

    def _table(self) -> sa.Table:
        return _events_table(validate_identifier(self.table, "table"))

    def iter_batches(self, start: datetime, end: datetime, rows_per_part: int) -> Iterator[pd.DataFrame]:
        """Rows with start <= created_at < end, as stored, `rows_per_part` at a time in id order.

        Streamed (a server-side cursor on PostgreSQL), so a day of any size is read in bounded
        memory. Payloads come as bytes where the text may be invalid, for the pipeline to quarantine.
        """
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be at least 1, got {rows_per_part}")
        table = self._table()
        with self.connect() as connection:
            # SQLite hands back whatever bytes were stored; reading them as a BLOB lets the pipeline
            # quarantine a payload that is not UTF-8 instead of failing the whole day.
            payload = table.c.payload
            if connection.dialect.name == "sqlite":
                payload = sa.cast(payload, sa.LargeBinary)
            query = (
                sa.select(table.c.id, table.c.created_at, payload.label("payload"))
                .where(table.c.created_at >= to_utc(start), table.c.created_at < to_utc(end))
                .order_by(table.c.id)
            )
            streamed = connection.execution_options(stream_results=True, yield_per=rows_per_part)
            for rows in streamed.execute(query).partitions():
                part = pd.DataFrame(rows, columns=DUMP_COLUMNS)
                part["created_at"] = pd.to_datetime(part["created_at"].map(to_utc), utc=True)
                yield part

    def read_batches(self, start: datetime, end: datetime) -> pd.DataFrame:
        """The same rows as one DataFrame: for a small day, or a look at one."""
        parts = list(self.iter_batches(start, end, rows_per_part=10_000))
        if not parts:
            return pd.DataFrame(columns=DUMP_COLUMNS).astype({"created_at": "datetime64[ns, UTC]"})
        return pd.concat(parts, ignore_index=True)

    def create_table(self, replace: bool = False) -> None:
        table = self._table()
        with self.connect() as connection:
            if replace:
                table.drop(connection, checkfirst=True)
            table.create(connection, checkfirst=True)
            connection.commit()

    def write_batches(self, rows: Iterable[Mapping[str, object]]) -> int:
        """Insert rows of `id`, `created_at` and `payload`; returns how many were written."""
        table = self._table()
        records = [
            {"id": row["id"], "created_at": to_utc(row["created_at"]), "payload": row["payload"]}
            for row in rows
        ]
        with self.connect() as connection:
            if records:
                connection.execute(table.insert(), records)
            connection.commit()
        return len(records)
