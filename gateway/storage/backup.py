"""`gateway backup DEST`: a consistent copy of the SQLite database while the gateway serves,
through SQLite's online backup API."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import StorageError

STEP_PAGES = 256  # pages copied per step (1 MiB at 4 KiB pages): progress moves, writers go on


@dataclass(frozen=True, slots=True)
class BackupResult:
    dest: str
    pages: int
    bytes: int
    hooks: int
    events: int
    seconds: float

    def summary(self) -> str:
        return (f"backup: {self.dest}: {self.bytes / 1048576:.1f} MiB ({self.pages:,} pages), "
                f"{self.hooks:,} hooks, {self.events:,} events, in {self.seconds:.1f} s")


def _counts(c: sqlite3.Connection) -> tuple[int, int]:
    hooks = c.execute("SELECT COUNT(*) FROM hooks").fetchone()[0]
    events = c.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    return int(hooks), int(events)


def backup(src: str, dest: str, *, busy_timeout: float = 5.0,
           progress: Callable[[int, int], None] | None = None) -> BackupResult:
    """Copy the database at src to dest (which must not exist), as of one moment.

    The copy is made from inside one read transaction: in WAL mode that snapshot does not
    hold up the gateway's writers, and the backup's steps all read it, so commits made
    meanwhile neither restart the copy nor end up half in it. It is written to a file beside
    dest and renamed into place once whole and checked; a failure leaves nothing behind."""
    if not Path(src).exists():
        raise StorageError(f"no database at {src}")
    if Path(dest).exists():
        raise StorageError(f"{dest} exists; give a new file name")
    started = time.monotonic()
    partial = f"{dest}.partial-{os.getpid()}"
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        source = sqlite3.connect(src, isolation_level=None, timeout=busy_timeout)
        try:
            source.execute("PRAGMA query_only = 1")
            source.execute("BEGIN")
            hooks, events = _counts(source)  # (this read starts the snapshot)
            copy = sqlite3.connect(partial, isolation_level=None)
            try:
                def step(status: int, remaining: int, total: int) -> None:
                    if progress is not None:
                        progress(total - remaining, total)

                source.backup(copy, pages=STEP_PAGES, progress=step)
                pages = int(copy.execute("PRAGMA page_count").fetchone()[0])
            finally:
                copy.close()
            source.execute("COMMIT")
        finally:
            source.close()
        # The copy opened as it will be used: whole, and holding what the snapshot held.
        check = sqlite3.connect(f"file:{partial}?mode=ro&immutable=1", uri=True)
        try:
            ok = check.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok" or _counts(check) != (hooks, events):
                raise StorageError(f"the copy does not check out ({ok})")
        finally:
            check.close()
        os.replace(partial, dest)
    except sqlite3.Error as exc:
        raise StorageError(f"backup failed: {exc}") from None
    except OSError as exc:
        raise StorageError(f"cannot write {dest}: {exc.strerror or exc}") from None
    finally:
        for leftover in (partial, f"{partial}-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    return BackupResult(dest, pages, os.stat(dest).st_size, hooks, events,
                        time.monotonic() - started)
