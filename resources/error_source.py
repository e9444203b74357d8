"""What every error source gives the graph: one day's records as dump parts.

A source is a resource with `iter_batches(start, end, rows_per_part)`, yielding DataFrames of
DUMP_COLUMNS (`id`, `created_at` as UTC timestamps, `payload` as text or UTF-8 bytes), the records with
start <= created_at < end, at most `rows_per_part` per part, in bounded memory. The payload is
what the source holds, unread: the flatten step reads it by the configured EventShape and
quarantines what it cannot read, so a source never drops a record for its content.
"""

from collections.abc import Iterator
from datetime import datetime

import pandas as pd

from resources.outages import RetriedOnOutage

DUMP_COLUMNS = ["id", "created_at", "payload"]


class ErrorEventSource(RetriedOnOutage):
    """A source of error events read a day at a time (the `event_store` resource of the graph)."""

    def iter_batches(self, start: datetime, end: datetime, rows_per_part: int) -> Iterator[pd.DataFrame]:
        raise NotImplementedError(f"{type(self).__name__} reads no events")

    def read_batches(self, start: datetime, end: datetime) -> pd.DataFrame:
        """The same records as one DataFrame: for a small day, or a look at one."""
        parts = list(self.iter_batches(start, end, rows_per_part=10_000))
        if not parts:
            return pd.DataFrame(columns=DUMP_COLUMNS).astype({"created_at": "datetime64[ns, UTC]"})
        return pd.concat(parts, ignore_index=True)
