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

A table may also have a retention (`keep_days`, given by the asset that writes it): a generation is
then removed at the asset's first write past that many days after it was written, even the newest
of its partition, and a later read of it fails with `PartsExpiredError`, which says so. Files are
0600 and folders 0700 whatever the umask: the dump holds the store's payloads unredacted.
"""

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from resources.frame_parts import COMMITTED, EXPIRED, FrameParts, PartWriter, write_private

_REPLACED = "_replaced"  # holds the time a newer generation of the same table was complete
# A generation never committed (its run died while writing) is left this long: it may still be
# being written by a slow run.
_ABANDONED_AFTER_S = 24 * 3600


def _stamp(path: Path) -> float | None:
    try:
        return float(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _private_dir(path: Path) -> None:
    """`path` as a folder only its owner can enter, also one made before with a wider mode."""
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def _expire(table_dir: Path, asset: str, keep_days: float, now: float) -> None:
    """Record that the retention removes the partition's parts: a reader then learns why they are gone."""
    record = {"asset": asset, "partition": table_dir.name.removesuffix(".parts"), "keep_days": keep_days}
    write_private(table_dir / EXPIRED, json.dumps({**record, "removed_at": now}).encode())


def _sweep(
    table_dir: Path, asset: str, keep_s: float, keep_days: float | None, now: float, current: Path
) -> None:
    """In one table's folder (an asset's partition), remove the generations written more than
    `keep_days` ago (the `current` one excepted), mark those the newest committed one replaced, and
    remove those replaced more than `keep_s` ago and those abandoned uncommitted.

    Another run may be sweeping or writing the same folder: a generation gone meanwhile is skipped.
    """
    os.chmod(table_dir, 0o700)  # a folder an older version made with the umask's mode
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
    if keep_days is not None:
        expired = [(done, g) for done, g in committed if now - done > keep_days * 86400 and g != current]
        if expired and len(expired) == len(committed):
            _expire(table_dir, asset, keep_days, now)  # before the parts go, for a reader failing now
        for _, generation in expired:
            shutil.rmtree(generation, ignore_errors=True)
        committed = [entry for entry in committed if entry not in expired]
    for _, generation in committed[:-1]:
        try:
            replaced = _stamp(generation / _REPLACED)
            if replaced is None:
                write_private(generation / _REPLACED, repr(now).encode())
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
    def writer(
        self, asset: str, partition: str | None, columns: Sequence[str], keep_days: float | None = None
    ) -> Iterator[PartWriter]:
        """A writer of a new generation of `asset`'s table for `partition`, to `commit()` in the block.

        If the block fails or does not commit, the generation is removed: a failed read of the source
        leaves no parts behind, and a retry starts from nothing. With `keep_days`, the asset's parts
        of every partition written more than that many days ago are removed after the commit; without,
        a partition's newest parts are kept until a newer materialization replaces them.
        """
        if keep_days is not None and not keep_days > 0:
            raise ValueError(f"keep_days={keep_days} for {asset}: keep parts a positive number of days")
        table_dir = self._table_dir(asset, partition)
        try:
            table_dir.parent.parent.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            pass  # the instance's storage folder, or one the deployment made: its mode is theirs
        else:
            os.chmod(table_dir.parent.parent, 0o700)
        _private_dir(table_dir.parent)
        _private_dir(table_dir)
        generation = table_dir / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        generation.mkdir(mode=0o700)
        os.chmod(generation, 0o700)
        writer = PartWriter(generation, columns)
        try:
            yield writer
        except BaseException:
            shutil.rmtree(generation, ignore_errors=True)
            raise
        if not (generation / COMMITTED).exists():
            shutil.rmtree(generation, ignore_errors=True)
            raise RuntimeError(f"the parts written to {generation} were never committed")
        (table_dir / EXPIRED).unlink(missing_ok=True)  # the partition has parts again
        # Every partition of the asset, not only this one: a day materialized again and never since
        # still has its replaced parts removed, and a day past its retention its parts, at the
        # asset's next write past the wait.
        now = time.time()
        for partition_dir in table_dir.parent.glob("*.parts"):
            try:
                _sweep(partition_dir, asset, self.keep_replaced_minutes * 60, keep_days, now, generation)
            except FileNotFoundError:
                continue

    def write(
        self,
        asset: str,
        partition: str | None,
        frames: Iterable[pd.DataFrame],
        columns: Sequence[str],
        keep_days: float | None = None,
    ) -> FrameParts:
        """Each frame of `frames` as a part of a new generation, committed once all are written."""
        with self.writer(asset, partition, columns, keep_days) as writer:
            for frame in frames:
                writer.write(frame)
            return writer.commit()
