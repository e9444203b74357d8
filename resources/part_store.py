"""Tables too big to hold in memory, kept on disk in parts and processed a part at a time.

A day of a million error events is gigabytes of text (1.5 GB of batches, 1 GB of messages as UTF-8
and four times that as Python strings, since the framing holds an emoji). The dump and the
flattened events are therefore written part by part as they are produced, and every step after them
reads one part at a time, on as many processes as there are cores.

Each materialization writes a generation folder of its own, so two runs of one partition never
write into each other's parts; the asset's value (a small `FrameParts`, pickled by the IO manager)
points at one generation. A generation replaced by a newer one is kept for `keep_replaced_minutes`
after that, for a step of an older run that may still be reading it, and removed at the asset's
first write (of any partition) past that wait.
"""

import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from resources.frame_parts import COMMITTED, FrameParts, PartWriter

_REPLACED = "_replaced"  # holds the time a newer generation of the same table was complete
# A generation never committed (its run died while writing) is left this long: it may still be
# being written by a slow run.
_ABANDONED_AFTER_S = 24 * 3600


def _stamp(path: Path) -> float | None:
    try:
        return float(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _sweep(table_dir: Path, keep_s: float, now: float) -> None:
    """In one table's folder (an asset's partition), mark the generations the newest committed one
    replaced, and remove those replaced more than `keep_s` ago and those abandoned uncommitted.

    Another run may be sweeping or writing the same folder: a generation gone meanwhile is skipped.
    """
    committed: list[tuple[float, Path]] = []
    for generation in table_dir.iterdir():
        try:
            if not generation.is_dir():
                continue
            done = _stamp(generation / COMMITTED)
            if done is not None:
                committed.append((done, generation))
            elif now - generation.stat().st_mtime > _ABANDONED_AFTER_S:
                # Still being written by a concurrent run, or abandoned by one that died.
                shutil.rmtree(generation, ignore_errors=True)
        except FileNotFoundError:
            continue
    committed.sort()
    for _, generation in committed[:-1]:
        try:
            replaced = _stamp(generation / _REPLACED)
            if replaced is None:
                (generation / _REPLACED).write_text(repr(now))
            elif now - replaced > keep_s:
                shutil.rmtree(generation, ignore_errors=True)
        except FileNotFoundError:
            continue


class PartStore(dg.ConfigurableResource):
    """Where big tables are kept between steps (FAULTLINE_PARTS_DIR), part by part."""

    directory: str | None = Field(
        default=None,
        description="Folder of the parts; empty: the Dagster instance's storage folder, beside the "
        "asset values.",
    )
    keep_replaced_minutes: float = Field(
        default=60.0,
        description="How long a replaced generation stays readable for a step of an older run; it is "
        "removed at the asset's first write after that.",
    )
    _instance_storage: Path | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if not self.directory and context.instance is not None:
            self._instance_storage = Path(context.instance.storage_directory())

    def _table_dir(self, asset: str, partition: str | None) -> Path:
        base = Path(self.directory) if self.directory else self._instance_storage
        if base is None:
            raise RuntimeError("PartStore has no folder: set `directory` (FAULTLINE_PARTS_DIR)")
        # Absolute, as the asset value keeps it: a later step may run in another working directory.
        return base.resolve() / asset / f"{partition or '__all__'}.parts"

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
        if not (generation / COMMITTED).exists():
            shutil.rmtree(generation, ignore_errors=True)
            raise RuntimeError(f"the parts written to {generation} were never committed")
        # Every partition of the asset, not only this one: a day materialized again and never since
        # still has its replaced parts removed, at the asset's next write past the wait.
        now = time.time()
        for partition_dir in table_dir.parent.glob("*.parts"):
            _sweep(partition_dir, self.keep_replaced_minutes * 60, now)

    def write(
        self, asset: str, partition: str | None, frames: Iterable[pd.DataFrame], columns: Sequence[str]
    ) -> FrameParts:
        """Each frame of `frames` as a part of a new generation, committed once all are written."""
        with self.writer(asset, partition, columns) as writer:
            for frame in frames:
                writer.write(frame)
            return writer.commit()
