"""What every error source gives the graph: one day's records as dump parts.

A source is a resource with `iter_batches(start, end, rows_per_part)`, yielding DataFrames of
DUMP_COLUMNS (`id`, `created_at` as UTC timestamps, `payload` as text or UTF-8 bytes), the records with
start <= created_at < end, at most `rows_per_part` per part, in bounded memory. The payload is
what the source holds, unread: the flatten step reads it by the configured EventShape and
quarantines what it cannot read, so a source never drops a record for its content.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pandas as pd

from resources.outages import RetriedOnOutage

DUMP_COLUMNS = ["id", "created_at", "payload"]


def json_value(value: object) -> object:
    """A value of a table or a Parquet file as JSON can hold it (json.dumps's `default`) when a source
    writes a record as a JSON object: times as ISO 8601 text, naive ones taken as UTC as everywhere
    in faultline."""
    if isinstance(value, datetime):
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        # Bytes that are not UTF-8 as \xNN escapes: the record is kept whole, its text readable.
        return value.decode("utf-8", "backslashreplace")
    return str(value)  # a UUID, an IP address: their text


class ErrorEventSource(RetriedOnOutage):
    """A source of error events read a day at a time (the `event_store` resource of the graph)."""

    def iter_batches(self, start: datetime, end: datetime, rows_per_part: int) -> Iterator[pd.DataFrame]:
        raise NotImplementedError(f"{type(self).__name__} reads no events")

    def last_read_counts(self) -> dict[str, int]:
        """What the last `iter_batches` left out of the dump and why, by name (records of another
        day, blank lines, ...), for the dump's metadata: a source that leaves nothing out has none."""
        return {}

    def records_without_time_examples(self) -> list[str]:
        """Where the last read's first records without a readable time are (a source that reads every
        record's time from a column or the event log has none)."""
        return []

    def read_batches(self, start: datetime, end: datetime) -> pd.DataFrame:
        """The same records as one DataFrame: for a small day, or a look at one."""
        parts = list(self.iter_batches(start, end, rows_per_part=10_000))
        if not parts:
            return pd.DataFrame(columns=DUMP_COLUMNS).astype({"created_at": "datetime64[ns, UTC]"})
        return pd.concat(parts, ignore_index=True)
