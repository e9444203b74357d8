"""Tables kept as pickled DataFrame parts in a folder, and work on them a part at a time, on every core.

Nothing of Dagster here: worker processes import this module, and start faster without it. The
resource that says where the parts live, and replaces one generation by the next, is `PartStore`.
Every file here is written readable by its owner only, whatever the umask: a dump's parts hold the
store's payloads unredacted.
"""

import json
import multiprocessing
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

COMMITTED = "_committed"  # in a generation's folder, the time it was complete
# In a partition's folder whose parts its retention removed: when, and the retention (JSON).
EXPIRED = "_expired"


class PartsExpiredError(FileNotFoundError):
    """A table's parts were removed by its retention (`keep_days`), not replaced by a newer run."""


@dataclass(frozen=True)
class FrameParts:
    """A table as pickled DataFrame parts in one folder, in order; what the asset value holds."""

    directory: str
    files: tuple[str, ...]
    row_counts: tuple[int, ...]
    columns: tuple[str, ...]

    @property
    def n_rows(self) -> int:
        return sum(self.row_counts)

    @property
    def n_parts(self) -> int:
        return len(self.files)

    def path(self, index: int) -> Path:
        return Path(self.directory) / self.files[index]

    def read_part(self, index: int) -> pd.DataFrame:
        return read_frame(self.path(index))

    def frames(self) -> Iterator[pd.DataFrame]:
        for index in range(self.n_parts):
            yield self.read_part(index)

    def to_frame(self) -> pd.DataFrame:
        """The whole table in memory: for small tables, tests and a look in a notebook."""
        frames = list(self.frames())
        if not frames:
            return pd.DataFrame(columns=list(self.columns))
        return pd.concat(frames, ignore_index=True)


def read_frame(path: Path) -> pd.DataFrame:
    try:
        with open(path, "rb") as file:
            return pickle.load(file)
    except FileNotFoundError:
        expired = _expiry(path.parent.parent)
        if expired is not None:
            raise expired from None
        raise FileNotFoundError(
            f"part {path.name} of {path.parent} is gone: a newer materialization of this partition "
            "replaced it and the old parts were removed; materialize the partition again"
        ) from None


def _expiry(partition_dir: Path) -> PartsExpiredError | None:
    """The error for a partition whose parts its retention removed, if it did (see `PartStore`)."""
    try:
        record = json.loads((partition_dir / EXPIRED).read_text())
        asset, partition, keep_days = record["asset"], record["partition"], float(record["keep_days"])
        removed = datetime.fromtimestamp(float(record["removed_at"]), UTC)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return PartsExpiredError(
        f"the parts of {asset} for {partition} were removed on {removed:%Y-%m-%d %H:%M} UTC by its "
        f"retention: they are kept {keep_days:g} days after they are written (`keep_days` in "
        f"{asset}'s config). Materialize {asset} for {partition} again (the dump reads the day anew "
        "from the events store; the flattened events need the dump first, so re-run it too if it is "
        "past its own retention), then the assets after it."
    )


def write_private(path: Path, content: bytes) -> None:
    """`content` to `path`, readable and writable by the owner only."""
    with open_private(path) as file:
        file.write(content)


def open_private(path: Path):
    """`path` opened for writing in binary, truncated, mode 0600 whatever the umask and whatever it
    had: a part holds raw payloads (the dump) or users' messages (the flattened events)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        return os.fdopen(descriptor, "wb")
    except BaseException:
        os.close(descriptor)
        raise


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    with open_private(path) as file:
        pickle.dump(frame, file, pickle.HIGHEST_PROTOCOL)


class PartWriter:
    """Writes one generation of a table, part after part; `commit()` makes it a `FrameParts`."""

    def __init__(self, directory: Path, columns: Sequence[str]) -> None:
        self.directory = directory
        self.columns = tuple(columns)
        self._files: list[str] = []
        self._row_counts: list[int] = []

    @property
    def n_parts(self) -> int:
        return len(self._files)

    def path_of(self, index: int) -> Path:
        return self.directory / f"part-{index:05d}.pkl"

    def added(self, n_rows: int) -> None:
        """Record that the next part (at `path_of(n_parts)`) was written, with `n_rows` rows."""
        self._files.append(self.path_of(self.n_parts).name)
        self._row_counts.append(n_rows)

    def write(self, frame: pd.DataFrame) -> None:
        write_frame(frame, self.path_of(self.n_parts))
        self.added(len(frame))

    def commit(self) -> FrameParts:
        """The parts written so far, as the table's value; the generation is complete."""
        write_private(self.directory / COMMITTED, repr(time.time()).encode())
        return FrameParts(str(self.directory), tuple(self._files), tuple(self._row_counts), self.columns)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _run_part(
    function: Callable[[pd.DataFrame], Any], source: Path, target: Path | None
) -> tuple[int | None, Any]:
    frame = read_frame(source)
    if target is None:
        return None, function(frame)
    written, summary = function(frame)
    write_frame(written, target)
    return len(written), summary


# Workers come from a fork server: a clean process started once, with these modules imported, forked
# for each pool. Forking the Dagster process itself could copy a lock some thread of it holds.
_PRELOADED = ["pandas", "faultline.flatten", "faultline.cleaning", "resources.frame_parts"]


def _process_pool(workers: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOADED)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def map_parts(
    function: Callable[[pd.DataFrame], Any],
    source: FrameParts,
    workers: int,
    target: PartWriter | None = None,
) -> list[Any]:
    """`function` on every part of `source`, in order; what it returns, part by part.

    With a `target`, `function` returns (a DataFrame, a summary): the DataFrame is written as the
    target's part of the same index, by the process that made it, and the summaries are returned.
    With `workers` above 1 and more than one part, parts run in that many processes; `function` must
    then be picklable (a module's function, or a functools.partial of one).
    """
    first = target.n_parts if target else 0
    jobs = [
        (function, source.path(index), target.path_of(first + index) if target else None)
        for index in range(source.n_parts)
    ]
    if workers > 1 and len(jobs) > 1:
        with _process_pool(min(workers, len(jobs))) as pool:
            done = list(pool.map(_run_part, *zip(*jobs, strict=True)))
    else:
        done = [_run_part(*job) for job in jobs]
    if target is not None:
        for n_rows, _ in done:
            target.added(n_rows)
    return [summary for _, summary in done]
