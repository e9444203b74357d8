"""Where reports are written as files a person can open (markdown) or a program can read (JSON)."""

from pathlib import Path

import dagster as dg
from pydantic import Field


class ReportStore(dg.ConfigurableResource):
    """A folder of report files (FAULTLINE_REPORTS_DIR)."""

    directory: str = Field(description="Folder the reports are written to; created if missing.")

    def write_text(self, name: str, content: str) -> Path:
        """Write `content` to `name` in the folder atomically (readers never see half a file)."""
        folder = Path(self.directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(content, encoding="utf-8")
        partial.replace(path)
        return path
