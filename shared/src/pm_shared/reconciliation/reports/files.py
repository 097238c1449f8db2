"""Writes a report's files, `<period>.csv` and `<period>.html`, each atomically: a reader (a web server,
a mail job, a sync) sees the old file or the new one whole, never a half-written one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pm_shared.reconciliation.reports.csv_out import to_csv
from pm_shared.reconciliation.reports.html_out import to_html
from pm_shared.reconciliation.reports.model import Report


def write(report: Report, directory: Path) -> list[Path]:
    """Writes `<period>.csv` and `<period>.html` into `directory` (made when missing), replacing any
    earlier ones, and returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [
        write_atomically(directory / f"{report.period}.csv", to_csv(report)),
        write_atomically(directory / f"{report.period}.html", to_html(report)),
    ]
    _sync_directory(directory)
    return written


def write_atomically(path: Path, text: str) -> Path:
    """Writes `text` (UTF-8) to a temporary file beside `path`, flushes it to disk, then renames it
    over `path`: a rename within one directory is atomic. The temporary file is removed on failure."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(temporary)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file 0600; a report is meant to be read like any other file.
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _sync_directory(directory: Path) -> None:
    """Makes the renames themselves durable (where the platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
