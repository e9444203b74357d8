"""Report files: written whole, with the mode the process's umask gives any file it writes."""

import os
from pathlib import Path

from resources.report_store import ReportStore

NAME = "error_clusters_2026-11-21.md"


def mode_written_under(umask: int, store: ReportStore) -> str:
    previous = os.umask(umask)
    try:
        path = store.write_text(NAME, "# Error clusters\n")
    finally:
        os.umask(previous)
    return oct(path.stat().st_mode & 0o777)


def test_a_report_is_readable_by_others_only_when_the_umask_allows_it(tmp_path: Path):
    store = ReportStore(directory=str(tmp_path))
    # A deployment that keeps its files private (umask 077) keeps its reports private too, and one
    # that shares them (022) shares them; a report rewritten takes the umask of the new write.
    assert mode_written_under(0o077, store) == "0o600"
    assert mode_written_under(0o022, store) == "0o644"
    assert mode_written_under(0o077, store) == "0o600"
    assert mode_written_under(0o002, store) == "0o664"
    assert [path.name for path in tmp_path.iterdir()] == [NAME]  # no temporary file left behind
