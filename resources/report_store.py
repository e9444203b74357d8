"""Where reports are written as files a person can open (markdown, charts) or a program can read (JSON)."""

import os
import secrets
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
        in one rename. The file's mode is the process's umask's (0644 under 022, 0600 under 077), as
        for any file it writes. Text that is not valid Unicode (a lone surrogate from a JSON escape)
        is written with a backslash escape rather than failing the report.
        """
        return self.write_bytes(name, content.encode("utf-8", "backslashreplace"))

    def write_bytes(self, name: str, content: bytes) -> Path:
        """Write `content` (a chart's PNG, say) to `name` in the folder, atomically as `write_text`."""
        folder = Path(self.directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        descriptor, partial = _new_file(folder, name)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return path

    def read_text(self, name: str) -> str | None:
        """The text of `name` in the folder, or None when there is no such file."""
        try:
            return (Path(self.directory) / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None


def _new_file(folder: Path, name: str) -> tuple[int, Path]:
    """A temporary file of this write's own beside `name`, created 0666 less the umask (mkstemp's
    would be 0600 whatever the umask, and reading the umask means setting it, for every thread)."""
    while True:
        partial = folder / f".{name}.{secrets.token_hex(8)}.partial"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return os.open(partial, flags, 0o666), partial
        except FileExistsError:
            continue
