"""The pruner: a background task that deletes what retention allows, a small step at a time."""

from __future__ import annotations

import asyncio
import contextlib
import time

from gateway.clock import Clock
from gateway.config import RetentionConfig
from gateway.errors import DatabaseUnavailable
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.storage import Backend
from gateway.storage.values import PruneSummary

log = get_logger("gateway.pruner")
STEP_ROWS = 250  # deliveries (and events) a step deletes: a few milliseconds of the writer
# Between steps the pruner waits this many times as long as the step took: while it works
# through a backlog it holds the writer at most a quarter of the time (bench/scenarios/
# retention.py: at a half, delivery through 200,000 old rows ran at 0.86 of its speed without
# pruning; single runs on a loaded machine vary by ±25 %, see its interleaved runs).
PAUSE_PER_STEP = 3.0


class Pruner:
    """Every prune_interval_seconds, one pass of prune steps until nothing old is left. Each
    step is one transaction in the database thread; between steps the pruner waits three times
    as long as the step took (PAUSE_PER_STEP), so it holds the writer at most a quarter of the
    time while a backlog of old rows is worked through; publishing and delivery go on between."""

    def __init__(self, storage: Backend, cfg: RetentionConfig, metrics: Metrics,
                 clock: Clock) -> None:
        self._storage = storage
        self._cfg = cfg
        self._metrics = metrics
        self._clock = clock
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.passes = 0

    async def run_pass(self) -> PruneSummary:
        """One whole pass; what it deleted."""
        total = PruneSummary()
        while not self._stop.is_set():
            started = time.perf_counter()
            step = await self._storage.prune(self._clock.now(), self._cfg.keep_seconds,
                                             STEP_ROWS)
            for name in ("deliveries", "attempts", "events", "hooks", "secrets"):
                n = getattr(step, name)
                if n:
                    setattr(total, name, getattr(total, name) + n)
                    self._metrics.pruned.labels(name).inc(n)
            if not step.more:
                break
            await asyncio.sleep(PAUSE_PER_STEP * (time.perf_counter() - started))
        self.passes += 1
        if total.rows or total.secrets:
            log.info("pruned", deliveries=total.deliveries, attempts=total.attempts,
                     events=total.events, hooks=total.hooks, secrets=total.secrets)
        return total

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_pass()
            except DatabaseUnavailable:
                pass  # logged once by storage; the next pass tries again
            except Exception:
                log.exception("prune_failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._cfg.prune_interval_seconds):
                    await self._stop.wait()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
