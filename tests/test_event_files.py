"""Error events in files: a day's JSON lines or Parquet rows as dump parts, from a local folder or any
fsspec filesystem, picked by the date in the path or by each record's time."""

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from resources.event_files import (
    ROW_ID_FILE_STRIDE,
    EventFiles,
    dated_path,
    has_date,
    is_outage,
    parse_time,
)
from resources.outages import SourceConfigurationError, SourceUnavailableError

DAY = datetime(2026, 11, 21, tzinfo=UTC)
NEXT_DAY = DAY + timedelta(days=1)


def lines(*records: object) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def texts(dump) -> list[str | bytes]:
    return dump["payload"].tolist()


def test_a_date_in_the_path_opens_only_that_days_files(tmp_path: Path):
    for day, message in (("2026-11-20", "before"), ("2026-11-21", "the day"), ("2026-11-22", "after")):
        (tmp_path / f"{day}.jsonl").write_bytes(lines({"message": message}, {"message": message + " 2"}))
    source = EventFiles(path=str(tmp_path / "%Y-%m-%d.jsonl"))
    dump = source.read_batches(DAY, NEXT_DAY)
    assert texts(dump) == ['{"message": "the day"}', '{"message": "the day 2"}']
    assert dump["id"].tolist() == [ROW_ID_FILE_STRIDE + 1, ROW_ID_FILE_STRIDE + 2]
    assert dump["created_at"].tolist() == [DAY, DAY]
    assert source.files(DAY, NEXT_DAY) == [(str(tmp_path / "2026-11-21.jsonl"), DAY)]


def test_a_date_folder_is_read_file_by_file_in_sorted_order_with_ids_saying_file_and_line(tmp_path: Path):
    folder = tmp_path / "2026-11-21"
    folder.mkdir()
    (folder / "b.jsonl").write_bytes(lines({"n": "b1"}))
    (folder / "a.jsonl").write_bytes(lines({"n": "a1"}, {"n": "a2"}))
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / "notes.txt").write_bytes(b"not events\n")
    (tmp_path / "2026-11-22").mkdir()
    (tmp_path / "2026-11-22" / "a.jsonl").write_bytes(lines({"n": "next day"}))
    dump = EventFiles(path=str(tmp_path / "{date}")).read_batches(DAY, NEXT_DAY)
    assert texts(dump) == ['{"n": "a1"}', '{"n": "a2"}', '{"n": "b1"}']
    assert dump["id"].tolist() == [1_000_000_001, 1_000_000_002, 2_000_000_001]


def test_a_time_field_keeps_the_days_records_and_counts_the_others(tmp_path: Path):
    (tmp_path / "a.jsonl").write_bytes(
        lines(
            {"at": "2026-11-20T23:59:59.999999Z", "m": "day before"},
            {"at": "2026-11-21T00:00:00Z", "m": "first instant"},
            {"at": "2026-11-21T09:00:00+09:00", "m": "midnight UTC, Tokyo time"},
            {"at": DAY.timestamp() + 3600, "m": "epoch seconds"},
            {"at": "2026-11-21 23:59:59.999999", "m": "naive, last microsecond"},
            {"at": "2026-11-22T00:00:00Z", "m": "exactly the end"},
            {"at": "2026-11-22T05:00:00Z", "m": "next day"},
        )
    )
    (tmp_path / "b.jsonl").write_bytes(
        lines(
            {"m": "no time"},
            {"at": "yesterday-ish", "m": "unreadable time"},
            [{"at": "2026-11-21"}],
            b"{broken",
        )
    )
    source = EventFiles(path=str(tmp_path), time_field="at")
    dump = source.read_batches(DAY, NEXT_DAY)
    assert [json.loads(p)["m"] for p in texts(dump)] == [
        "first instant",
        "midnight UTC, Tokyo time",
        "epoch seconds",
        "naive, last microsecond",
    ]
    assert dump["created_at"].tolist() == [
        DAY,
        DAY,
        DAY + timedelta(hours=1),
        NEXT_DAY - timedelta(microseconds=1),
    ]
    assert dump["id"].tolist() == [ROW_ID_FILE_STRIDE + n for n in (2, 3, 4, 5)]
    assert source.last_read_counts() == {
        "files_read": 2,
        "records_of_other_days": 3,
        "records_without_time": 4,
        "blank_lines": 0,
    }
    b = tmp_path / "b.jsonl"
    assert source.records_without_time_examples() == [f"{b}:1", f"{b}:2", f"{b}:3", f"{b}:4"]


def test_a_dotted_time_field_reads_a_nested_time(tmp_path: Path):
    (tmp_path / "a.jsonl").write_bytes(
        lines({"event": {"time": "2026-11-21T12:00:00Z"}}, {"event": {"time": "2026-11-22T12:00:00Z"}})
    )
    dump = EventFiles(path=str(tmp_path / "a.jsonl"), time_field="event.time").read_batches(DAY, NEXT_DAY)
    assert dump["created_at"].tolist() == [DAY + timedelta(hours=12)]


def test_gzip_lines_read_as_the_plain_ones(tmp_path: Path):
    records = lines(*({"message": f"error {n}", "state": "BUILD_ERROR"} for n in range(25)))
    (tmp_path / "plain").mkdir()
    (tmp_path / "packed").mkdir()
    (tmp_path / "plain" / "2026-11-21.jsonl").write_bytes(records)
    with gzip.open(tmp_path / "packed" / "2026-11-21.jsonl.gz", "wb") as packed:
        packed.write(records)
    plain = EventFiles(path=str(tmp_path / "plain" / "%Y-%m-%d.jsonl")).read_batches(DAY, NEXT_DAY)
    read = EventFiles(path=str(tmp_path / "packed" / "%Y-%m-%d.jsonl.gz")).read_batches(DAY, NEXT_DAY)
    assert len(read) == 25
    assert read.equals(plain)
    # Found in a folder too, its format by its extension through the compression's.
    assert (
        EventFiles(path=str(tmp_path / "packed"), time_field="t").files(DAY, NEXT_DAY)[0][0].endswith(".gz")
    )


def test_parquet_rows_become_json_objects_of_their_columns(tmp_path: Path):
    table = pa.table(
        {
            "at": pa.array(
                [DAY + timedelta(hours=2), NEXT_DAY, DAY + timedelta(hours=5)], pa.timestamp("us", "UTC")
            ),
            "message": ["disk full", "next day", "exit 137"],
            "attempt": [1, 2, None],
        }
    )
    pq.write_table(table, tmp_path / "errors.parquet", row_group_size=2)
    source = EventFiles(path=str(tmp_path / "*.parquet"), time_field="at")
    dump = source.read_batches(DAY, NEXT_DAY)
    assert [json.loads(p) for p in texts(dump)] == [
        {"at": "2026-11-21T02:00:00+00:00", "message": "disk full", "attempt": 1},
        {"at": "2026-11-21T05:00:00+00:00", "message": "exit 137", "attempt": None},
    ]
    assert dump["id"].tolist() == [ROW_ID_FILE_STRIDE + 1, ROW_ID_FILE_STRIDE + 3]
    assert dump["created_at"].tolist() == [DAY + timedelta(hours=2), DAY + timedelta(hours=5)]
    assert source.last_read_counts()["records_of_other_days"] == 1


def test_a_parquet_payload_column_is_the_payload_as_stored(tmp_path: Path):
    batches = ['[{"message": "a"}]', '[{"message": "b"}, {"message": "c"}]']
    pq.write_table(pa.table({"payload": batches, "host": ["x", "y"]}), tmp_path / "2026-11-21.parquet")
    source = EventFiles(path=str(tmp_path / "{date}.parquet"), payload_column="payload")
    assert texts(source.read_batches(DAY, NEXT_DAY)) == batches
    with pytest.raises(SourceConfigurationError, match=r"has no column 'body'; set `payload_column`"):
        EventFiles(path=str(tmp_path / "{date}.parquet"), payload_column="body").read_batches(DAY, NEXT_DAY)


@pytest.fixture
def memory_fs():
    fs = fsspec.filesystem("memory")
    folder = f"/faultline-test-{id(fs)}"
    yield fs, folder
    fs.rm(folder, recursive=True)


def test_files_on_an_fsspec_memory_filesystem_are_read_like_local_ones(memory_fs):
    fs, folder = memory_fs
    fs.pipe(f"{folder}/2026/11/21/part-0.jsonl", lines({"m": "one"}, {"m": "two"}))
    fs.pipe(f"{folder}/2026/11/22/part-0.jsonl", lines({"m": "next"}))
    dump = EventFiles(path=f"memory://{folder}/%Y/%m/%d/*.jsonl").read_batches(DAY, NEXT_DAY)
    assert texts(dump) == ['{"m": "one"}', '{"m": "two"}']


def test_a_line_that_is_not_utf8_is_kept_as_bytes_and_still_timed(tmp_path: Path):
    raw = b'{"at": "2026-11-21T10:00:00Z", "message": "caf\xe9"}'
    (tmp_path / "2026-11-21.jsonl").write_bytes(lines({"message": "fine"}, raw))
    assert texts(EventFiles(path=str(tmp_path / "{date}.jsonl")).read_batches(DAY, NEXT_DAY)) == [
        '{"message": "fine"}',
        raw,
    ]
    timed = EventFiles(path=str(tmp_path / "*.jsonl"), time_field="at").read_batches(DAY, NEXT_DAY)
    assert texts(timed) == [raw]
    assert timed["created_at"].tolist() == [DAY + timedelta(hours=10)]


def test_blank_lines_are_skipped_and_counted_and_line_numbers_keep_their_place(tmp_path: Path):
    (tmp_path / "2026-11-21.jsonl").write_bytes(b'{"n": 1}\n\n   \r\n{"n": 2}\r\n\t\n')
    source = EventFiles(path=str(tmp_path / "{date}.jsonl"))
    dump = source.read_batches(DAY, NEXT_DAY)
    assert texts(dump) == ['{"n": 1}', '{"n": 2}']
    assert dump["id"].tolist() == [ROW_ID_FILE_STRIDE + 1, ROW_ID_FILE_STRIDE + 4]
    assert source.last_read_counts()["blank_lines"] == 3


def test_parts_hold_at_most_rows_per_part_rows_across_files(tmp_path: Path):
    (tmp_path / "2026-11-21").mkdir()
    (tmp_path / "2026-11-21" / "a.jsonl").write_bytes(lines(*({"n": n} for n in range(4))))
    (tmp_path / "2026-11-21" / "b.jsonl").write_bytes(lines(*({"n": n} for n in range(4, 7))))
    source = EventFiles(path=str(tmp_path / "%Y-%m-%d"))
    parts = list(source.iter_batches(DAY, NEXT_DAY, rows_per_part=3))
    assert [len(part) for part in parts] == [3, 3, 1]
    assert [json.loads(p)["n"] for part in parts for p in part["payload"]] == list(range(7))
    with pytest.raises(ValueError, match="rows_per_part must be at least 1"):
        next(source.iter_batches(DAY, NEXT_DAY, rows_per_part=0))


def test_a_missing_folder_is_a_configuration_error_naming_path(tmp_path: Path):
    for path in (str(tmp_path / "nowhere"), str(tmp_path / "nowhere" / "%Y-%m-%d.jsonl")):
        with pytest.raises(SourceConfigurationError, match=r"nowhere does not exist; check `path`"):
            EventFiles(path=path, time_field=None if "%" in path else "at").read_batches(DAY, NEXT_DAY)
    # The folder is there and the day has no file: a day without events, not an error.
    assert EventFiles(path=str(tmp_path / "%Y-%m-%d.jsonl")).read_batches(DAY, NEXT_DAY).empty


def test_a_url_password_is_never_shown(tmp_path: Path):
    with pytest.raises(SourceConfigurationError) as raised:
        EventFiles(path="memory://reader:S3cret-pw@bucket/missing/{date}.jsonl").read_batches(DAY, NEXT_DAY)
    assert "S3cret-pw" not in str(raised.value) and "does not exist" in str(raised.value)


def test_the_day_must_be_said_once(tmp_path: Path):
    with pytest.raises(SourceConfigurationError, match="holds a date and time_field='at' is set: use one"):
        EventFiles(path=str(tmp_path / "{date}.jsonl"), time_field="at").read_batches(DAY, NEXT_DAY)
    with pytest.raises(SourceConfigurationError, match="put the date in `path` or set `time_field`"):
        EventFiles(path=str(tmp_path)).read_batches(DAY, NEXT_DAY)


def test_a_file_of_unknown_kind_or_unreadable_is_a_configuration_error(tmp_path: Path):
    (tmp_path / "2026-11-21.log").write_bytes(lines({"m": 1}))
    with pytest.raises(
        SourceConfigurationError, match=r"2026-11-21.log is neither JSON lines .* set `format`"
    ):
        EventFiles(path=str(tmp_path / "{date}.log")).read_batches(DAY, NEXT_DAY)
    assert len(EventFiles(path=str(tmp_path / "{date}.log"), format="jsonl").read_batches(DAY, NEXT_DAY)) == 1
    (tmp_path / "2026-11-21.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip at all")
    with pytest.raises(SourceConfigurationError, match=r"2026-11-21.jsonl.gz cannot be read: .*check `path`"):
        EventFiles(path=str(tmp_path / "{date}.jsonl.gz")).read_batches(DAY, NEXT_DAY)


def test_a_store_dropping_connections_is_an_outage_the_step_retries(memory_fs, monkeypatch):
    fs, folder = memory_fs
    fs.pipe(f"{folder}/2026-11-21.jsonl", lines({"m": 1}))
    opened = MemoryFileSystem._open

    def dropped(self, path, mode="rb", **kwargs):  # a remote store resetting the connection on a read
        if mode == "rb":
            raise ConnectionResetError(104, "Connection reset by peer")
        return opened(self, path, mode, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "_open", dropped)
    with pytest.raises(SourceUnavailableError, match=r"2026-11-21.jsonl could not be read: Connection"):
        EventFiles(path=f"memory://{folder}/{{date}}.jsonl").read_batches(DAY, NEXT_DAY)


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (ConnectionResetError(104, "reset"), True),
        (TimeoutError("read timed out"), True),
        (OSError(5, "Input/output error"), True),
        (type("EndpointConnectionError", (Exception,), {})("could not connect"), True),
        (type("HttpError", (Exception,), {"code": 503})("unavailable"), True),
        (FileNotFoundError(2, "No such file"), False),
        (PermissionError(13, "Access denied"), False),
        (type("HttpError", (Exception,), {"code": 403})("forbidden"), False),
        (ValueError("not a parquet file"), False),
    ],
)
def test_outages_are_told_from_configuration_errors(error: Exception, outage: bool):
    assert is_outage(error) is outage


def test_times_are_read_from_iso_text_and_epoch_seconds_only():
    assert parse_time("2026-11-21T10:00:00Z") == DAY + timedelta(hours=10)
    assert parse_time("2026-11-21T10:00:00-02:00") == DAY + timedelta(hours=12)
    assert parse_time(DAY.timestamp() + 1.5) == DAY + timedelta(seconds=1.5)
    assert [parse_time(v) for v in (True, None, "", "soon", float("nan"), 1e300, {"t": 1})] == [None] * 7


def test_a_parquet_file_without_the_time_fields_column_names_the_setting(tmp_path: Path):
    pq.write_table(pa.table({"when": [DAY], "message": ["x"]}), tmp_path / "errors.parquet")
    with pytest.raises(SourceConfigurationError, match=r"has no column 'at'; set `time_field`"):
        EventFiles(path=str(tmp_path), time_field="at.utc").read_batches(DAY, NEXT_DAY)
    nested = pa.table({"at": [{"utc": "2026-11-21T03:00:00Z"}], "message": ["x"]})
    pq.write_table(nested, tmp_path / "errors.parquet")
    dump = EventFiles(path=str(tmp_path), time_field="at.utc", payload_column="message").read_batches(
        DAY, NEXT_DAY
    )
    assert dump["created_at"].tolist() == [DAY + timedelta(hours=3)] and texts(dump) == ["x"]


def test_date_fields_fill_in_the_day_and_a_doubled_percent_stays_a_percent():
    day = DAY.date()
    assert dated_path("s3://logs/{date}/%Y/%m/%d/%j-%y/100%%.jsonl", day) == (
        "s3://logs/2026-11-21/2026/11/21/325-26/100%.jsonl"
    )
    assert has_date("/logs/%Y.jsonl") and has_date("/logs/{date}") and not has_date("/logs/100%%/a.jsonl")
