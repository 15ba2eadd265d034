"""The recorder: finished attempts, written to storage in batches.

Each commit has a fixed cost (WAL frames for every page it touches) that a batch of one pays in
full, so the recorder waits up to RECORD_WINDOW seconds for RECORD_BATCH results while attempts
are in flight. A failed write keeps its results and is tried again after a short backoff; told
to finish, the recorder drains what it holds and returns (it is never cancelled: a cancelled
write could commit in the database thread and then be retried, writing attempts twice).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from gateway.errors import DatabaseUnavailable
from gateway.logs import get_logger
from gateway.storage import AttemptResult

log = get_logger("gateway.delivery")

RECORD_BATCH = 32
RECORD_WINDOW = 0.002


class Recorder:
    __slots__ = ("_busy", "_full", "_record", "_wake", "done", "recording", "results")

    def __init__(self, record: Callable[[list[AttemptResult]], Awaitable[None]],
                 busy: Callable[[], bool]) -> None:
        """`record` writes one batch (and what follows from it); `busy` says whether attempts
        are in flight (worth waiting a moment for more)."""
        self._record = record
        self._busy = busy
        self.results: list[AttemptResult] = []
        self.recording = False
        self.done = False
        self._wake = asyncio.Event()
        self._full = asyncio.Event()

    def add(self, result: AttemptResult) -> None:
        self.results.append(result)
        self._wake.set()
        if len(self.results) >= RECORD_BATCH:
            self._full.set()

    @property
    def pending(self) -> bool:
        return bool(self.results) or self.recording

    def finish(self) -> None:
        """Write what is held, then return from run()."""
        self.done = True
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            if len(self.results) < RECORD_BATCH and self._busy() and not self.done:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RECORD_WINDOW):
                        await self._full.wait()
            self._wake.clear()
            self._full.clear()
            try:
                await self._flush()
                failures = 0
            except Exception as exc:
                failures += 1
                if not isinstance(exc, DatabaseUnavailable):  # (logged once by storage)
                    log.exception("record_failed", failures=failures)
                if self.done and failures >= 3:
                    return
                # The results are kept; back off a little before the database is tried again.
                await asyncio.sleep(min(0.05 * 2**failures, 2.0))
                self._wake.set()
                continue
            if self.done and not self.results:
                return

    async def _flush(self) -> None:
        while self.results:
            batch = self.results
            self.results = []
            self.recording = True
            try:
                await self._record(batch)
            except BaseException:
                self.results = batch + self.results
                raise
            finally:
                self.recording = False
