"""Tables kept in parts: written and read a part at a time, generations replaced safely, parts
processed in worker processes exactly as in one."""

import functools
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from faultline.flatten import flatten_part
from resources import frame_parts, part_store
from resources.frame_parts import COMMITTED, EXPIRED, FrameParts, PartsExpiredError, map_parts
from resources.part_store import PartStore


def frames(sizes: list[int]) -> list[pd.DataFrame]:
    first = 0
    parts = []
    for size in sizes:
        parts.append(pd.DataFrame({"n": range(first, first + size), "text": [f"t{i}" for i in range(size)]}))
        first += size
    return parts


def test_a_table_written_in_parts_reads_back_part_by_part_and_whole(tmp_path: Path):
    store = PartStore(directory=str(tmp_path))
    table = store.write("events", "2026-11-21", frames([3, 0, 2]), ["n", "text"])
    assert (table.n_parts, table.n_rows, table.row_counts) == (3, 5, (3, 0, 2))
    assert [len(part) for part in table.frames()] == [3, 0, 2]
    assert table.to_frame()["n"].tolist() == [0, 1, 2, 3, 4]
    empty = store.write("events", "2026-11-22", [], ["n", "text"])
    assert empty.n_rows == 0 and list(empty.to_frame().columns) == ["n", "text"]


def test_a_write_that_fails_or_is_never_committed_leaves_no_parts_behind(tmp_path: Path):
    store = PartStore(directory=str(tmp_path))

    def failing_source():
        yield from frames([2])
        raise ConnectionError("store went away")

    with pytest.raises(ConnectionError):
        store.write("dump", "day", failing_source(), ["n", "text"])
    with pytest.raises(RuntimeError, match="never committed"):
        with store.writer("dump", "day", ["n", "text"]) as writer:
            writer.write(frames([1])[0])
    assert list((tmp_path / "dump" / "day.parts").iterdir()) == []


def test_a_replaced_generation_stays_readable_for_a_while_then_is_removed(tmp_path: Path):
    store = PartStore(directory=str(tmp_path), keep_replaced_minutes=0)
    first = store.write("events", "day", frames([2]), ["n", "text"])
    second = store.write("events", "day", frames([3]), ["n", "text"])
    # A run still reading the first generation finds it whole: it was replaced only now.
    assert first.to_frame()["n"].tolist() == [0, 1]
    third = store.write("events", "day", frames([4]), ["n", "text"])
    with pytest.raises(FileNotFoundError, match="replaced it and the old parts were removed"):
        first.to_frame()
    assert second.n_rows == 3 and third.to_frame()["n"].tolist() == [0, 1, 2, 3]
    kept = PartStore(directory=str(tmp_path), keep_replaced_minutes=60)
    kept.write("events", "day", frames([1]), ["n", "text"])
    assert second.to_frame()["n"].tolist() == [0, 1, 2]


def dump_part(rows: range) -> pd.DataFrame:
    # Rows of one error event and one event that is no object; every third row, a progress event.
    payload = '[{"scope": "A", "state": "BUILD_ERROR", "message": "m%d password=hunter%d"}, 7]'
    return pd.DataFrame(
        {
            "id": list(rows),
            "created_at": pd.Timestamp("2026-11-21", tz="UTC"),
            "payload": [
                payload % (i, i) if i % 3 else '[{"scope": "A", "state": "X", "message": "ok"}]' for i in rows
            ],
        }
    )


def test_parts_flattened_in_worker_processes_give_what_one_process_gives(tmp_path: Path):
    store = PartStore(directory=str(tmp_path))
    dump = store.write("dump", "day", [dump_part(range(k * 10, k * 10 + 10)) for k in range(4)], ["id"])
    flatten = functools.partial(flatten_part, error_states=("BUILD_ERROR",), max_message_chars=1000)
    results = {}
    for workers in (1, 2):
        with store.writer("events", f"workers-{workers}", ["row_id"]) as writer:
            summaries = map_parts(flatten, dump, workers, target=writer)
            results[workers] = (writer.commit().to_frame(), summaries)
    (one_events, one_summaries), (two_events, two_summaries) = results[1], results[2]
    pd.testing.assert_frame_equal(one_events, two_events)
    assert len(two_events) == 26 and two_events["message"].str.contains("<assigned_secret>").all()
    assert sum(len(summary.quarantine) for summary in two_summaries) == 26
    for one, two in zip(one_summaries, two_summaries, strict=True):
        pd.testing.assert_frame_equal(one.quarantine, two.quarantine)
        assert (one.n_rows, one.n_events_read, one.non_error_states) == (
            two.n_rows,
            two.n_events_read,
            two.non_error_states,
        )


def test_parts_a_dead_run_left_uncommitted_are_removed_after_a_day_not_before(tmp_path: Path):
    store = PartStore(directory=str(tmp_path))
    table = tmp_path / "events" / "day.parts"
    abandoned, in_progress = table / "20261101T000000-dead", table / "20261121T000000-busy"
    for folder in (abandoned, in_progress):
        folder.mkdir(parents=True)
        (folder / "part-00000.pkl").write_bytes(b"partial")
    day_ago = time.time() - 25 * 3600
    os.utime(abandoned, (day_ago, day_ago))
    store.write("events", "day", frames([1]), ["n", "text"])
    assert not abandoned.exists() and in_progress.exists()


def test_a_day_materialized_again_loses_its_replaced_parts_at_the_next_write_of_any_day(tmp_path: Path):
    store = PartStore(directory=str(tmp_path), keep_replaced_minutes=0)
    first = store.write("events", "2026-11-20", frames([2]), ["n", "text"])
    store.write("events", "2026-11-20", frames([3]), ["n", "text"])  # replaces the first: marked
    # Marked a second ago rather than now: past the wait of 0 minutes whatever the clock's resolution.
    (Path(first.directory) / part_store._REPLACED).write_text(repr(time.time() - 1))
    store.write("events", "2026-11-21", frames([1]), ["n", "text"])  # another day's write sweeps it
    assert not Path(first.directory).exists()
    assert len(list((tmp_path / "events" / "2026-11-20.parts").iterdir())) == 1


def test_a_generation_another_run_removes_during_the_sweep_is_skipped(tmp_path: Path, monkeypatch):
    store = PartStore(directory=str(tmp_path), keep_replaced_minutes=0)
    gone = Path(store.write("events", "day", frames([1]), ["n", "text"]).directory)
    stamp = part_store._stamp

    def removed_by_another_run(path: Path) -> float | None:
        if path.parent == gone:
            shutil.rmtree(gone, ignore_errors=True)
        return stamp(path)

    monkeypatch.setattr(part_store, "_stamp", removed_by_another_run)
    assert store.write("events", "day", frames([2]), ["n", "text"]).to_frame()["n"].tolist() == [0, 1]


def test_a_relative_folder_is_kept_absolute_in_the_value(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = PartStore(directory="parts").write("events", "day", frames([2]), ["n", "text"])
    assert Path(table.directory).is_absolute()
    monkeypatch.chdir("/")
    assert table.n_rows == len(table.to_frame()) == 2


def fails_on_the_first_part(frame: pd.DataFrame, ran: Path, release: Path) -> int:
    """Part 0 fails at once; every other part, once started, waits for `release` to exist."""
    (ran / str(frame["n"].iloc[0])).touch()
    if frame["n"].iloc[0] == 0:
        raise ValueError("part 0 is broken")
    deadline = time.monotonic() + 60  # a safety net for a broken test, never reached when it works
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(frame)


def test_a_part_that_fails_stops_the_map_without_running_every_other_part(tmp_path: Path, monkeypatch):
    """No part but the failing one ends before the map has seen it fail: the others are released only
    when the map shuts its pool down. Only the parts already in a worker (2) or queued for one (the
    pool queues workers + 1) can then still run, so 6 at most of the 12, whatever the timing."""
    table = PartStore(directory=str(tmp_path)).write("events", "day", frames([1] * 12), ["n", "text"])
    ran, release = tmp_path / "ran", tmp_path / "release"
    ran.mkdir()
    make_pool = frame_parts._process_pool

    def pool_releasing_the_parts_at_shutdown(workers: int):
        pool = make_pool(workers)
        shutdown = pool.shutdown

        def release_then_shut_down(*args, **kwargs) -> None:
            release.touch()
            shutdown(*args, **kwargs)

        pool.shutdown = release_then_shut_down
        return pool

    monkeypatch.setattr(frame_parts, "_process_pool", pool_releasing_the_parts_at_shutdown)
    with pytest.raises(ValueError, match="part 0 is broken"):
        map_parts(functools.partial(fails_on_the_first_part, ran=ran, release=release), table, workers=2)
    assert release.exists() and (ran / "0").exists()
    assert len(list(ran.iterdir())) <= 6


def written_days_ago(table: FrameParts, days: float) -> None:
    """Date a generation's commit `days` back, as if it had been written then."""
    (Path(table.directory) / COMMITTED).write_text(repr(time.time() - days * 86400))


def test_a_dump_past_its_retention_is_removed_at_the_next_write_of_any_day_and_a_read_says_why(
    tmp_path: Path,
):
    store = PartStore(directory=str(tmp_path))
    old = store.write("deployment_events_dump", "2026-11-01", frames([2]), ["n", "text"], keep_days=3)
    recent = store.write("deployment_events_dump", "2026-11-02", frames([1]), ["n", "text"], keep_days=3)
    written_days_ago(old, 3.1)
    written_days_ago(recent, 2.9)
    store.write("deployment_events_dump", "2026-11-05", frames([1]), ["n", "text"], keep_days=3)
    assert not Path(old.directory).exists()
    assert recent.to_frame()["n"].tolist() == [0]
    with pytest.raises(PartsExpiredError) as expired:
        old.to_frame()
    message = str(expired.value)
    assert "deployment_events_dump for 2026-11-01 were removed" in message
    assert "kept 3 days after they are written (`keep_days`" in message
    assert "Materialize deployment_events_dump for 2026-11-01 again" in message
    # Materialized again, the day is readable, and a read of the new parts no longer says it expired.
    again = store.write("deployment_events_dump", "2026-11-01", frames([3]), ["n", "text"], keep_days=3)
    assert again.n_rows == len(again.to_frame()) == 3
    assert not (tmp_path / "deployment_events_dump" / "2026-11-01.parts" / EXPIRED).exists()


def test_the_flattened_events_outlive_the_dump_they_were_made_from(tmp_path: Path):
    store = PartStore(directory=str(tmp_path))
    dump = store.write("dump", "2026-11-01", frames([2]), ["n", "text"], keep_days=3)
    flattened = store.write("flattened", "2026-11-01", frames([2]), ["n", "text"], keep_days=30)
    written_days_ago(dump, 4)
    written_days_ago(flattened, 4)
    store.write("dump", "2026-11-05", frames([1]), ["n", "text"], keep_days=3)
    store.write("flattened", "2026-11-05", frames([1]), ["n", "text"], keep_days=30)
    assert not Path(dump.directory).exists()
    assert flattened.to_frame()["n"].tolist() == [0, 1]
    written_days_ago(flattened, 31)
    store.write("flattened", "2026-12-02", frames([1]), ["n", "text"], keep_days=30)
    with pytest.raises(PartsExpiredError, match="kept 30 days"):
        flattened.to_frame()


def test_parts_are_kept_until_replaced_without_a_retention_and_a_retention_must_be_positive(tmp_path: Path):
    store = PartStore(directory=str(tmp_path))
    forever = store.write("events", "2026-11-01", frames([2]), ["n", "text"])
    written_days_ago(forever, 400)
    store.write("events", "2026-11-02", frames([1]), ["n", "text"])
    assert forever.n_rows == len(forever.to_frame()) == 2
    with pytest.raises(ValueError, match="keep_days=0 for events"):
        store.write("events", "2026-11-03", frames([1]), ["n", "text"], keep_days=0)


@pytest.fixture
def permissive_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_parts_and_their_folders_are_owner_only_whatever_the_umask(tmp_path: Path, permissive_umask):
    # A folder an older version made with the umask's 0755 is closed too.
    (tmp_path / "parts" / "events" / "day.parts").mkdir(parents=True, mode=0o755)
    store = PartStore(directory=str(tmp_path / "parts" / "new"), keep_replaced_minutes=60)
    dump = store.write("dump", "day", [dump_part(range(k * 10, k * 10 + 10)) for k in range(3)], ["id"])
    flatten = functools.partial(flatten_part, error_states=("BUILD_ERROR",), max_message_chars=1000)
    with store.writer("events", "day", ["row_id"]) as writer:  # parts written by worker processes
        map_parts(flatten, dump, 2, target=writer)
        writer.commit()
    store.write("dump", "day", frames([1]), ["n", "text"])  # marks the first generation replaced
    expired = store.write("dump", "old", frames([1]), ["n", "text"], keep_days=1)
    written_days_ago(expired, 2)
    store.write("dump", "day", frames([1]), ["n", "text"], keep_days=1)  # records the expiry
    old_store = PartStore(directory=str(tmp_path / "parts"))
    old_store.write("events", "day", frames([1]), ["n", "text"])
    files = [path for path in (tmp_path / "parts").rglob("*") if path.is_file()]
    folders = [path for path in (tmp_path / "parts").rglob("*") if path.is_dir()]
    assert {oct(path.stat().st_mode & 0o777) for path in files} == {"0o600"}
    assert {oct(path.stat().st_mode & 0o777) for path in folders} == {"0o700"}
    every_kind = {"part-00000.pkl", "part-00002.pkl", COMMITTED, part_store._REPLACED, EXPIRED}
    assert {path.name for path in files} >= every_kind
