"""Where reports are written as files a person can open (markdown) or a program can read (JSON)."""

import os
import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field


class ReportStore(dg.ConfigurableResource):
    """A folder of report files (FAULTLINE_REPORTS_DIR)."""

    directory: str = Field(description="Folder the reports are written to; created if missing.")

    def write_text(self, name: str, content: str) -> Path:
        """Write `content` to `name` in the folder atomically: a reader, or a second run writing the
        same report at the same time, only ever sees a whole file, never half of one or a mix.

        Each write goes to a temporary file of its own in the folder, which then replaces `name`
        in one rename. Text that is not valid Unicode (a lone surrogate from a JSON escape) is
        written with a backslash escape rather than failing the report.
        """
        folder = Path(self.directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        descriptor, partial = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".partial")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(content.encode("utf-8", "backslashreplace"))
                file.flush()
                os.fsync(file.fileno())
            os.chmod(partial, 0o644)
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return path
