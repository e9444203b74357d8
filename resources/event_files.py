"""Error events in files: JSON lines or Parquet under a folder or a glob that fsspec reads (a local
folder, memory://, s3:// with `pip install 'faultline[s3]'`, gs:// with `faultline[gcs]`).

A day's records are picked one of two ways. A date in `path` (`{date}`, or strftime's %Y %m %d %j %y:
`s3://logs/errors/%Y/%m/%d/*.jsonl.gz`) opens only that day's files, and each of their records is the
day's (created_at: the day's start). Or `time_field`, a dotted path into each record read as ISO 8601
text or epoch seconds: every file is opened each day, and a record is the day's when
start <= time < end. Nothing is dropped unseen: what a read leaves out is counted by
`last_read_counts` (`records_of_other_days`, `records_without_time`, `blank_lines`).

Each JSON line is a row of the dump, its text unparsed (bytes when it is not UTF-8, which the flatten
step quarantines); each Parquet row is one JSON object of its columns, or its `payload_column`. A
row's id is `file_number * ROW_ID_FILE_STRIDE + line_number` (both from 1), the file being the
`file_number`-th of `files(start, end)`: an integer, as the graph's row ids are, that says where the
record is.
"""

import errno
import json
import math
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import ClassVar

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.utils import infer_compression
from pydantic import Field, PrivateAttr

from faultline.event_shape import MISSING, field_at
from resources.error_source import DUMP_COLUMNS, ErrorEventSource, json_value
from resources.outages import SourceConfigurationError, SourceUnavailableError
from resources.sql import safe_url

JSONL, PARQUET, AUTO = "jsonl", "parquet", "auto"
FORMATS = (JSONL, PARQUET, AUTO)
SUFFIXES = {JSONL: (".jsonl", ".ndjson"), PARQUET: (".parquet", ".pq")}
# A row id is file_number x this + line (or row) number: readable in decimal, 1e9 lines a file at most,
# and up to 9 billion files within int64.
ROW_ID_FILE_STRIDE = 1_000_000_000
# The date fields a path may hold: `{date}` (2026-11-21) and these strftime fields.
_DATE_FIELD = re.compile(r"\{date\}|%[Ymdjy%]")
_GLOB = re.compile(r"[*?\[]")
# How many records without a readable time are named (file:line) in the summary of a read.
_EXAMPLES = 5
# An OS error of these is a filesystem (a network mount, a remote store) failing, not a wrong path.
_TRANSIENT_ERRNOS = {
    errno.EIO,
    errno.EAGAIN,
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.ESTALE,
}
# Words in the class names of remote stores' passing failures (botocore's EndpointConnectionError and
# ReadTimeoutError, aiohttp's ServerDisconnectedError and ClientConnectorError, S3's SlowDown...).
_OUTAGE_WORDS = ("Connection", "Connector", "Timeout", "Disconnected", "Unavailable", "Throttl", "SlowDown")


def is_outage(error: BaseException) -> bool:
    """Whether a failure to read a file is the store's passing fault (worth retrying), not a wrong
    path, a missing file or a refused permission."""
    if isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        return False
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    if isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS:
        return True
    status = getattr(error, "code", None) or getattr(error, "status", None)
    if isinstance(status, int) and (status >= 500 or status == 429):
        return True
    return any(word in kind.__name__ for kind in type(error).__mro__ for word in _OUTAGE_WORDS)


def shown(path: str) -> str:
    """A path as it may be shown: a URL's user, password and secret-named query values hidden."""
    return safe_url(path) if "://" in path else path


def has_date(path: str) -> bool:
    return any(found.group() != "%%" for found in _DATE_FIELD.finditer(path))


def dated_path(path: str, day: date) -> str:
    """`path` with its date fields filled in for `day`."""
    values = {
        "{date}": day.isoformat(),
        "%Y": f"{day.year:04d}",
        "%m": f"{day.month:02d}",
        "%d": f"{day.day:02d}",
        "%j": f"{day.timetuple().tm_yday:03d}",
        "%y": f"{day.year % 100:02d}",
        "%%": "%",
    }
    return _DATE_FIELD.sub(lambda found: values[found.group()], path)


def by_extension(name: str) -> str | None:
    """jsonl or parquet by a file's extension, a compression's (.gz, .bz2, .zst...) looked through."""
    bare = name.lower()
    if infer_compression(bare):
        bare = bare.rsplit(".", 1)[0]
    return next((kind for kind, suffixes in SUFFIXES.items() if bare.endswith(suffixes)), None)


def parse_time(value: object) -> datetime | None:
    """An instant in UTC from ISO 8601 text (naive taken as UTC), epoch seconds or a datetime; None
    for anything else (a missing value, unreadable text, a boolean)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass
class FilesRead:
    """What one read of the files left out of the dump, counted, and where the first timeless ones are."""

    files: int = 0
    records_of_other_days: int = 0
    records_without_time: int = 0
    blank_lines: int = 0
    without_time_examples: list[str] = field(default_factory=list)

    def without_time(self, where: tuple[str, int]) -> None:
        """Count a record without a readable time at (file, line or row number)."""
        self.records_without_time += 1
        if len(self.without_time_examples) < _EXAMPLES:
            self.without_time_examples.append(f"{where[0]}:{where[1]}")


class _Parts:
    """Rows gathered into dump parts of at most `rows_per_part` rows."""

    def __init__(self, rows_per_part: int) -> None:
        self.rows_per_part = rows_per_part
        self.ids: list[int] = []
        self.times: list[datetime] = []
        self.payloads: list[str | bytes] = []

    def add(self, row_id: int, created_at: datetime, payload: str | bytes) -> pd.DataFrame | None:
        self.ids.append(row_id)
        self.times.append(created_at)
        self.payloads.append(payload)
        return self.take() if len(self.ids) >= self.rows_per_part else None

    def take(self) -> pd.DataFrame | None:
        if not self.ids:
            return None
        part = pd.DataFrame(
            {
                "id": pd.Series(self.ids, dtype="int64"),
                "created_at": pd.to_datetime(self.times, utc=True),
                "payload": pd.Series(self.payloads, dtype=object),
            },
            columns=DUMP_COLUMNS,
        )
        self.ids, self.times, self.payloads = [], [], []
        return part


class EventFiles(ErrorEventSource):
    """Error events in JSON-lines or Parquet files, a day at a time (see the module's docstring)."""

    path: str = Field(
        description="A folder (every .jsonl, .ndjson, .parquet, .pq under it, compressed ones too: "
        ".jsonl.gz), a file or a glob, as a local path or an fsspec URL (s3://, gs://, memory://). "
        "A date in it ({date}, or %Y %m %d %j %y) opens only each day's files."
    )
    format: str = Field(
        default=AUTO,
        description="jsonl (one record per line; gzip and other compressions by extension), parquet, "
        "or auto: by each file's extension.",
    )
    time_field: str | None = Field(
        default=None,
        description="Dotted path to each record's time (ISO 8601 text or epoch seconds) when the path "
        "holds no date: the records of the day are those timed in it.",
    )
    payload_column: str | None = Field(
        default=None,
        description="Parquet: the column holding each row's payload (text); None: the row's columns "
        "as one JSON object.",
    )

    source_name: ClassVar[str] = "error event files"

    _last_read: FilesRead = PrivateAttr(default_factory=FilesRead)

    def _check_settings(self) -> None:
        if self.format not in FORMATS:
            raise SourceConfigurationError(f"format={self.format!r}: use {', '.join(FORMATS)}")
        dated = has_date(self.path)
        if dated and self.time_field:
            raise SourceConfigurationError(
                f"path {self._shown(self.path)!r} holds a date and time_field={self.time_field!r} is "
                "set: use one (a date in the path makes every record of a day's files the day's)"
            )
        if not dated and not self.time_field:
            raise SourceConfigurationError(
                f"path {self._shown(self.path)!r} holds no date ({{date}}, %Y-%m-%d) and no time_field "
                "is set: nothing says which day a record is of; put the date in `path` or set `time_field`"
            )

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Failures inside the block as SourceUnavailableError (the store's outage) or
        SourceConfigurationError (a wrong path, a missing or unreadable file), naming `path`."""
        try:
            yield
        except (SourceConfigurationError, SourceUnavailableError):
            raise
        except Exception as error:
            cause = self._scrubbed(f"{type(error).__name__}: {error}".splitlines()[0][:300])
            if is_outage(error):
                raise SourceUnavailableError(
                    f"{self.source_name}: {what} could not be read: {cause}"
                ) from None
            if isinstance(
                error, OSError | EOFError | zlib.error | pa.ArrowException | ImportError | ValueError
            ):
                raise SourceConfigurationError(
                    f"{self.source_name}: {what} cannot be read: {cause}; check `path` "
                    f"({self._shown(self.path)}) and `format` (not retried: a configuration error)"
                ) from None
            raise

    def _shown(self, path: str) -> str:
        return self._scrubbed(shown(path))

    def _scrubbed(self, text: str) -> str:
        """`text` without the URL's password or query (a signed URL's token), should a library quote them."""
        rest = self.path.partition("://")[2]
        userinfo = rest.split("/", 1)[0].rpartition("@")[0]
        secrets = [userinfo.partition(":")[2], rest.partition("?")[2]]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        with self._reading(f"path {self._shown(self.path)}"):
            return fsspec.core.url_to_fs(self.path)

    def _format_of(self, name: str) -> str | None:
        """The format a file is read in: the configured one, or by its extension (None: not known)."""
        return by_extension(name) if self.format == AUTO else self.format

    def _listed(self, fs: fsspec.AbstractFileSystem, pattern: str) -> list[str]:
        """The files `pattern` names: a glob's matches, a folder's files of the format (by extension;
        not hidden, nor markers such as Spark's _SUCCESS), or the one file; [] for nothing there."""
        if _GLOB.search(pattern):
            matched = fs.glob(pattern, detail=True)
            return sorted(path for path, info in matched.items() if info["type"] == "file")
        if fs.isdir(pattern):
            wanted = list(SUFFIXES) if self.format == AUTO else [self.format]
            return sorted(
                path
                for path in fs.find(pattern)
                if not path.rsplit("/", 1)[-1].startswith((".", "_")) and by_extension(path) in wanted
            )
        return [pattern] if fs.isfile(pattern) else []

    def _root(self, pattern: str) -> str:
        """The folder of `pattern` before its first date field or wildcard: it must exist."""
        dates = (m for m in _DATE_FIELD.finditer(pattern) if m.group() != "%%")
        found = [m.start() for m in (next(dates, None), _GLOB.search(pattern)) if m]
        return pattern[: min(found)].rsplit("/", 1)[0] if found else pattern

    def files(self, start: datetime, end: datetime) -> list[tuple[str, datetime | None]]:
        """The files a read of [start, end) opens, in order, each with the start of its day when the
        path gives it: a row id's file is `files(start, end)[id // ROW_ID_FILE_STRIDE - 1]`."""
        self._check_settings()
        dated = has_date(self.path)
        if dated and (start.time() != time(0) or end.time() != time(0)):
            raise ValueError(f"a date in `path` reads whole days; [{start}, {end}) is not")
        fs, pattern = self._filesystem()
        with self._reading(f"path {self._shown(self.path)}"):
            root = self._root(pattern)
            if root and not fs.exists(root):
                raise SourceConfigurationError(
                    f"{self.source_name}: {self._shown(root)} does not exist; check `path` "
                    f"({self._shown(self.path)}) (not retried: a configuration error)"
                )
            if not dated:
                return [(path, None) for path in self._listed(fs, pattern)]
            found = []
            day = start
            while day < end:
                found += [(path, day) for path in self._listed(fs, dated_path(pattern, day.date()))]
                day += timedelta(days=1)
            return found

    def last_read_counts(self) -> dict[str, int]:
        read = self._last_read
        return {
            "files_read": read.files,
            "records_of_other_days": read.records_of_other_days,
            "records_without_time": read.records_without_time,
            "blank_lines": read.blank_lines,
        }

    def records_without_time_examples(self) -> list[str]:
        """Where the last read's first records without a readable time are (`file:line`)."""
        return list(self._last_read.without_time_examples)

    def iter_batches(self, start: datetime, end: datetime, rows_per_part: int) -> Iterator[pd.DataFrame]:
        """The day's records as dump parts of at most `rows_per_part` rows, files in sorted order, each
        streamed (a JSON line or a Parquet batch at a time), so a day of any size is read in bounded
        memory."""
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be at least 1, got {rows_per_part}")
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        files = self.files(start, end)
        fs, _ = self._filesystem()
        read = self._last_read = FilesRead(files=len(files))
        parts = _Parts(rows_per_part)
        for number, (path, day) in enumerate(files, 1):
            kind = self._format_of(path)
            if kind is None:
                raise SourceConfigurationError(
                    f"{self.source_name}: {self._shown(path)} is neither JSON lines (.jsonl, .ndjson, .gz "
                    "of them) nor Parquet (.parquet, .pq); set `format`, or narrow `path`'s glob"
                )
            rows = self._jsonl_rows if kind == JSONL else self._parquet_rows
            with self._reading(self._shown(path)):
                for row in rows(fs, path, number * ROW_ID_FILE_STRIDE, day, start, end, read, rows_per_part):
                    part = parts.add(*row)
                    if part is not None:
                        yield part
        last = parts.take()
        if last is not None:
            yield last

    def _timed(
        self,
        record: object,
        day: datetime | None,
        start: datetime,
        end: datetime,
        where: tuple[str, int],
        read: FilesRead,
    ) -> datetime | None:
        """The record's created_at: its day's start (a dated path), else its time when in [start, end);
        None for a record left out, counted in `read`."""
        if day is not None:
            return day
        moment = parse_time(field_at(record, self.time_field) if isinstance(record, dict) else MISSING)
        if moment is None:
            read.without_time(where)
            return None
        if not start <= moment < end:
            read.records_of_other_days += 1
            return None
        return moment

    def _jsonl_rows(
        self,
        fs: fsspec.AbstractFileSystem,
        path: str,
        first_id: int,
        day: datetime | None,
        start: datetime,
        end: datetime,
        read: FilesRead,
        rows_per_part: int,
    ) -> Iterator[tuple[int, datetime, str | bytes]]:
        label = self._shown(path)
        with fs.open(path, "rb", compression="infer") as handle:
            for line_number, line in enumerate(handle, 1):
                if line_number >= ROW_ID_FILE_STRIDE:
                    raise SourceConfigurationError(
                        f"{self.source_name}: {self._shown(path)} has {ROW_ID_FILE_STRIDE:,} lines or more; "
                        "split it (row ids hold a line number below that)"
                    )
                content = line.rstrip(b"\r\n")
                if not content.strip():
                    read.blank_lines += 1  # no record there: most JSON-lines readers skip it too
                    continue
                try:
                    payload: str | bytes = content.decode("utf-8")
                except UnicodeDecodeError:
                    payload = content  # kept as read: the flatten step quarantines it
                record = None
                if day is None:
                    # The time only, read from text decoded as far as it goes; the payload stays as read.
                    text = payload if isinstance(payload, str) else content.decode("utf-8", "replace")
                    try:
                        record = json.loads(text)
                    except (ValueError, RecursionError):
                        record = None
                created_at = self._timed(record, day, start, end, (label, line_number), read)
                if created_at is not None:
                    yield first_id + line_number, created_at, payload

    def _parquet_rows(
        self,
        fs: fsspec.AbstractFileSystem,
        path: str,
        first_id: int,
        day: datetime | None,
        start: datetime,
        end: datetime,
        read: FilesRead,
        rows_per_part: int,
    ) -> Iterator[tuple[int, datetime, str | bytes]]:
        label = f"{self._shown(path)}: row"
        with fs.open(path, "rb") as handle:
            # Neither buffered ahead nor read on threads: either holds several row groups at once (a
            # day of 1M events as 5,000-row groups peaked at 759 MB against 250 MB from SQLite).
            parquet = pq.ParquetFile(handle, pre_buffer=False)
            names = parquet.schema_arrow.names
            wanted = {"payload_column": self.payload_column}
            if day is None:  # the time field's column, or the column its dotted path starts in
                wanted["time_field"] = (
                    self.time_field if self.time_field in names else self.time_field.split(".")[0]
                )
            for setting, column in wanted.items():
                if column is not None and column not in names:
                    raise SourceConfigurationError(
                        f"{self.source_name}: {self._shown(path)} has no column {column!r}; set "
                        f"`{setting}` (its columns: {', '.join(names)})"
                    )
            row_number = 0
            for batch in parquet.iter_batches(batch_size=rows_per_part, use_threads=False):
                if self.payload_column is not None:
                    payloads = [_text(value) for value in batch.column(self.payload_column).to_pylist()]
                    records: list = (
                        [None] * batch.num_rows
                        if day is not None
                        else _records_for_time(batch, self.time_field)
                    )
                else:
                    records = batch.to_pylist()
                    payloads = [
                        json.dumps(record, ensure_ascii=False, default=json_value) for record in records
                    ]
                for record, payload in zip(records, payloads, strict=True):
                    row_number += 1
                    created_at = self._timed(record, day, start, end, (label, row_number), read)
                    if created_at is not None:
                        yield first_id + row_number, created_at, payload


def _text(value: object) -> str | bytes:
    """A payload column's value as the dump holds it: text, or bytes when they are not UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, default=json_value)


def _records_for_time(batch: pa.RecordBatch, time_field: str) -> list[dict]:
    """Each row as far as its time field needs: the column it names, or the one its dotted path
    starts in (a struct, read as a dict)."""
    column = time_field if time_field in batch.schema.names else time_field.split(".")[0]
    return [{column: value} for value in batch.column(column).to_pylist()]
