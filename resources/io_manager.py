"""Where asset values are kept between steps: pickles in Dagster's storage folder, written atomically.

Dagster's default filesystem IO manager writes a value in place, so while a second run of the same
partition rewrites a file, a step of the first run reading it finds it cut short (EOFError). Here
each write goes to a temporary file of its own and is renamed over the value in one step: a reader
sees the old value or the new one, whole.
"""

import os
import pickle
import uuid
from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath


class AtomicPickleIOManager(dg.UPathIOManager):
    """Pickled values at `<base>/<asset key>/<partition>`, as Dagster's default lays them out."""

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            with partial.open("wb") as file:
                pickle.dump(obj, file, pickle.HIGHEST_PROTOCOL)
            os.replace(partial, path)
        except BaseException:
            if partial.exists():
                partial.unlink()
            raise

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        with path.open("rb") as file:
            return pickle.load(file)


class AtomicFilesystemIOManager(dg.ConfigurableIOManagerFactory):
    """The IO manager of every asset: Dagster's storage folder unless `base_dir` says otherwise."""

    base_dir: str | None = Field(default=None, description="Folder of the pickles; empty: Dagster's storage.")

    def create_io_manager(self, context: dg.InitResourceContext) -> AtomicPickleIOManager:
        return AtomicPickleIOManager(base_path=UPath(self.base_dir or context.instance.storage_directory()))
