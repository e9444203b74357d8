"""Tables too big to hold in memory, kept on disk in parts and processed a part at a time.

A day of a million error events is gigabytes of text (1.5 GB of batches, 1 GB of messages as UTF-8
and four times that as Python strings, since the framing holds an emoji). The dump and the
flattened events are therefore written part by part as they are produced, and every step after them
reads one part at a time, on as many processes as there are cores.

Each materialization writes a generation folder of its own, so two runs of one partition never
write into each other's parts; the asset's value (a small `FrameParts`, pickled by the IO manager)
points at one generation. A generation replaced by a newer one is kept for `keep_replaced_minutes`
after that, for a step of an older run that may still be reading it, then removed.
"""

import multiprocessing
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

_COMMITTED = "_committed"  # holds the time the generation was complete
_REPLACED = "_replaced"  # holds the time a newer generation of the same table was complete
# A generation never committed (its run died while writing) is left this long: it may still be
# being written by a slow run.
_ABANDONED_AFTER_S = 24 * 3600


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
        raise FileNotFoundError(
            f"part {path.name} of {path.parent} is gone: a newer materialization of this partition "
            "replaced it and the old parts were removed; materialize the partition again"
        ) from None


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    with open(path, "wb") as file:
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
        (self.directory / _COMMITTED).write_text(repr(time.time()))
        return FrameParts(str(self.directory), tuple(self._files), tuple(self._row_counts), self.columns)


def _stamp(path: Path) -> float | None:
    try:
        return float(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _remove_replaced(table_dir: Path, current: Path, keep_s: float) -> None:
    """Mark the generations `current` replaces; remove those replaced more than `keep_s` ago."""
    now = time.time()
    committed = _stamp(current / _COMMITTED) or now
    for generation in table_dir.iterdir():
        if generation == current or not generation.is_dir():
            continue
        done = _stamp(generation / _COMMITTED)
        if done is None:
            # Still being written by a concurrent run, or abandoned by one that died.
            if now - generation.stat().st_mtime > _ABANDONED_AFTER_S:
                shutil.rmtree(generation, ignore_errors=True)
            continue
        if done > committed:
            continue  # newer than ours: a concurrent run committed after us
        replaced = _stamp(generation / _REPLACED)
        if replaced is None:
            (generation / _REPLACED).write_text(repr(now))
        elif now - replaced > keep_s:
            shutil.rmtree(generation, ignore_errors=True)


class PartStore(dg.ConfigurableResource):
    """Where big tables are kept between steps (FAULTLINE_PARTS_DIR), part by part."""

    directory: str | None = Field(
        default=None,
        description="Folder of the parts; empty: the Dagster instance's storage folder, beside the "
        "asset values.",
    )
    keep_replaced_minutes: float = Field(
        default=60.0,
        description="How long a replaced generation stays readable for a step of an older run.",
    )
    _instance_storage: Path | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if not self.directory and context.instance is not None:
            self._instance_storage = Path(context.instance.storage_directory())

    def _table_dir(self, asset: str, partition: str | None) -> Path:
        base = Path(self.directory) if self.directory else self._instance_storage
        if base is None:
            raise RuntimeError("PartStore has no folder: set `directory` (FAULTLINE_PARTS_DIR)")
        return base / asset / f"{partition or '__all__'}.parts"

    @contextmanager
    def writer(self, asset: str, partition: str | None, columns: Sequence[str]) -> Iterator[PartWriter]:
        """A writer of a new generation of `asset`'s table for `partition`, to `commit()` in the block.

        If the block fails or does not commit, the generation is removed: a failed read of the source
        leaves no parts behind, and a retry starts from nothing.
        """
        table_dir = self._table_dir(asset, partition)
        generation = table_dir / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        generation.mkdir(parents=True)
        writer = PartWriter(generation, columns)
        try:
            yield writer
        except BaseException:
            shutil.rmtree(generation, ignore_errors=True)
            raise
        if not (generation / _COMMITTED).exists():
            shutil.rmtree(generation, ignore_errors=True)
            raise RuntimeError(f"the parts written to {generation} were never committed")
        _remove_replaced(table_dir, generation, self.keep_replaced_minutes * 60)

    def write(
        self, asset: str, partition: str | None, frames: Iterable[pd.DataFrame], columns: Sequence[str]
    ):
        """Each frame of `frames` as a part of a new generation, committed once all are written."""
        with self.writer(asset, partition, columns) as writer:
            for frame in frames:
                writer.write(frame)
            return writer.commit()


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
_PRELOADED = ["pandas", "faultline.flatten", "faultline.cleaning", "resources.part_store"]


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
