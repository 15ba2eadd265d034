"""The delivery loop: claims due deliveries within the claim budget (budget.py), hands them to
the per-host slots (slots.py) whose workers make the attempts (dispatch.py), gives the results
to the recorder (recorder.py), and stops in stages. The one place these meet."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping

from gateway.clock import Clock
from gateway.config import DeliveryConfig
from gateway.delivery.budget import ClaimBudget
from gateway.delivery.recorder import Recorder
from gateway.delivery.slots import HostSlots
from gateway.dispatch import Dispatcher
from gateway.errors import DatabaseUnavailable
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.models import DeliveryStatus, DueDelivery, HookStatus
from gateway.storage import AttemptResult, Claim, Claimed, Storage

log = get_logger("gateway.delivery")


class DeliveryEngine:
    def __init__(self, storage: Storage, dispatcher: Dispatcher, cfg: DeliveryConfig,
                 metrics: Metrics, clock: Clock) -> None:
        self._storage = storage
        self._dispatcher = dispatcher
        self._cfg = cfg
        self._metrics = metrics
        self._clock = clock
        self._budget = ClaimBudget(cfg)
        self._slots = HostSlots(cfg, self._attempt)
        self._recorder = Recorder(self._record, lambda: self._slots.running > 0)
        self._attempt_counts: Counter[str] = Counter()
        metrics.watch_engine(self)
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        # Every row this process holds claimed in the database, until its attempt is recorded
        # or it is handed back.
        self._claimed: dict[str, DueDelivery] = {}
        self._reset_due = False  # claims of an earlier run not handed back yet (see start)
        self._stopping = False
        self._stop_task: asyncio.Task[None] | None = None
        self._gone: set[str] = set()  # hooks that answered 410, until that is recorded
        self._loop_task: asyncio.Task[None] | None = None
        self._recorder_task: asyncio.Task[None] | None = None

    # -- what the API and the wiring see ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def wake(self) -> None:
        """New work may be due (a publish, a retry, a resumed hook)."""
        self._budget.dry = None
        self._wake.set()

    def hook_changed(self, hook_id: str) -> None:
        """A hook was paused, deleted or changed: rows of it waiting in memory for a slot are
        handed back, so they go out (or not) by the hook's new state. Attempts already in
        flight finish. Every change to a hook goes through this process, so checking here
        replaces a database read before each attempt."""
        dropped = self._slots.drop_hook(hook_id)
        for d in dropped:
            if self._claimed.pop(d.id, None) is not None:
                self._budget.finished(d)
        self._budget.dry = None
        if dropped:
            self._slots.track(asyncio.create_task(
                self._storage.release_claims([d.id for d in dropped])))
        self._wake.set()

    @property
    def attempt_counts(self) -> Mapping[str, int]:
        return self._attempt_counts

    @property
    def in_flight_by_host(self) -> Mapping[str, int]:
        return self._slots.host_running

    async def start(self, *, background: bool = True) -> None:
        try:
            handed_back = await self._storage.reset_claims()
        except DatabaseUnavailable:
            # Started on a database that cannot write: the loop hands them back once it can.
            self._reset_due = True
        else:
            if handed_back:
                log.info("claims_handed_back", count=handed_back)
        self._recorder_task = asyncio.create_task(self._recorder.run(), name="gateway-recorder")
        if background:
            self._loop_task = asyncio.create_task(self._loop(), name="gateway-delivery")

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Deliver everything due now, wait for every attempt to be recorded, then return
        (tests: pair with a manual clock to step through retry schedules)."""
        async with asyncio.timeout(timeout):
            while True:
                self._progress.clear()
                claimed = await self._fill()
                if not claimed and not self._claimed and not self._recorder.pending:
                    return
                await self._progress.wait()

    # -- the staged stop -------------------------------------------------------------------------

    def begin_stop(self) -> None:
        """Start stopping (see stop) without waiting for it: on SIGTERM the grace period for
        attempts runs beside the HTTP server's wait for requests in flight, not after it (a
        stop took up to twice shutdown_grace_seconds)."""
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._stop())

    async def stop(self) -> None:
        """Stop claiming, let attempts in flight finish within the grace period, cancel the
        rest, record what finished and hand every unfinished claim back. Once, however often
        it is called."""
        self.begin_stop()
        assert self._stop_task is not None
        await self._stop_task

    async def _stop(self) -> None:
        self._stopping = True
        self._slots.stopping = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        queued = self._slots.drain()
        tasks = self._slots.tasks
        finished_in_grace = len(tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._cfg.shutdown_grace_seconds)
            finished_in_grace -= len(pending)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._recorder_task is not None:
            self._recorder.finish()
            await asyncio.gather(self._recorder_task, return_exceptions=True)
        unfinished = list(self._claimed)
        try:
            await self._storage.release_claims(unfinished)
        except DatabaseUnavailable:
            unfinished = []  # they stay claimed: the next start hands them back
        log.info("delivery_stopped", finished_in_grace=finished_in_grace, queued=len(queued),
                 handed_back=len(unfinished))

    # -- claiming --------------------------------------------------------------------------------

    async def _loop(self) -> None:
        budget = self._budget
        while not self._stopping:
            self._wake.clear()
            timeout = self._cfg.poll_interval_seconds
            try:
                if self._reset_due:
                    await self._storage.reset_claims()
                    self._reset_due = False
                if self._wanted():
                    await self._fill()
                if budget.dry is not None:
                    # Every due row was seen: sleep until the next one falls due. A row already
                    # due yet not taken waits on a bound (a full host, an ordered hook's
                    # earlier event) that a wake-up frees, so it does not count.
                    if budget.next_due is None:
                        # After the moment that claim looked: a row that fell due since then
                        # was not among what it saw, so it ends the dry spell at once.
                        epoch = budget.dry_epoch
                        found = await self._storage.next_due_at(budget.dry_since)
                        if epoch == budget.dry_epoch:
                            budget.next_due = (found,)
                    # (A claim made meanwhile, by the recorder, made that answer stale.)
                    due = budget.next_due[0] if budget.next_due is not None else self._clock.now()
                    if due is not None:
                        wait = due - self._clock.now()
                        if wait <= 0:
                            budget.dry = None  # that row has fallen due meanwhile
                        timeout = min(timeout, max(0.0, wait))
            except DatabaseUnavailable:
                pass  # storage logged the change once; delivery resumes when writes do
            except Exception:
                log.exception("claim_failed")
            if timeout > 0:
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    budget.dry = None  # a retry may have fallen due
            else:
                await asyncio.sleep(0)  # never a turn of this loop without yielding

    def _wanted(self) -> int:
        return self._budget.wanted(bool(self._slots.queues), self._clock.now())

    def _claimed_rows(self, claimed: Claimed, spec: Claim) -> None:
        budget, slots, held = self._budget, self._slots, self._claimed
        for d in claimed.rows:
            held[d.id] = d
            budget.took(d)
            slots.enqueue(d)
        budget.saw(claimed, spec)

    async def _fill(self) -> int:
        """Claim due rows while there is room; returns how many were claimed."""
        total = 0
        while not self._stopping:
            room = self._budget.room()
            if room <= 0:
                break
            spec = self._budget.spec(room, self._clock.now())
            claimed = await self._storage.claim_due(spec)
            self._claimed_rows(claimed, spec)
            total += len(claimed.rows)
            if claimed.exhausted:
                break
        return total

    # -- one attempt -----------------------------------------------------------------------------

    async def _attempt(self, d: DueDelivery) -> None:
        result: AttemptResult | None = None
        try:
            if d.hook_id not in self._gone:
                # (A hook that answered 410 while this waited: recording that fails the row.)
                result, resp = await self._dispatcher.attempt(d)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("attempt_crashed", delivery_id=d.id)
        self._budget.finished(d)
        if result is None:
            # Not sent, or a bug in an attempt, which must not wedge the row: hand it back.
            self._claimed.pop(d.id, None)
            await self._storage.release_claims([d.id])
            self._budget.dry = None
        else:
            self._budget.note_finished(d.host, self._clock.now())
            self._attempt_counts[result.outcome.value] += 1
            self._metrics.attempt_seconds.observe(resp.duration_ms * 0.001)
            if resp.error is not None:
                log.info("attempt_error", delivery_id=d.id, hook_id=d.hook_id,
                         error=resp.error, detail=resp.detail)
            if result.gone:
                self._gone.add(d.hook_id)
            self._recorder.add(result)
            if result.status is DeliveryStatus.DELIVERED:
                self._metrics.latency.observe(max(0.0, result.attempt.at - d.event_created_at))
        if self._wanted():
            # Only when a claim is due: waking the loop after every attempt cost a task switch
            # per delivery for nothing.
            self._wake.set()
        self._progress.set()

    # -- recording -------------------------------------------------------------------------------

    async def _record(self, batch: list[AttemptResult]) -> None:
        """Write one batch of results (the recorder's `record`), claiming in the same
        transaction when there is room: that saves a commit and a thread hop."""
        # A retry, or an ordered hook's row recorded, may leave a row due for the claim.
        claimed = self._claimed
        if any(r.status is DeliveryStatus.PENDING
               or ((d := claimed.get(r.delivery_id)) is not None and d.ordered) for r in batch):
            self._budget.dry = None
        room = 0 if self._stopping else self._wanted()
        claim = self._budget.spec(room, self._clock.now()) if room else None
        summary = await self._storage.record_attempts(
            batch, self._clock.now(), disable_after_failures=self._cfg.disable_after_failures,
            disable_after_seconds=self._cfg.disable_after_seconds, then_claim=claim)
        # Written: nothing below may fail the batch (the recorder would write it again).
        try:
            for r in batch:
                claimed.pop(r.delivery_id, None)
                if r.gone:
                    self._gone.discard(r.hook_id)
            if summary.claimed is not None and claim is not None:
                if self._stopping:
                    # Claimed while the loop was stopping: never started, handed back by stop.
                    claimed.update((d.id, d) for d in summary.claimed.rows)
                else:
                    self._claimed_rows(summary.claimed, claim)
            if summary.published_due:
                self._budget.dry = None  # operational events made deliveries that are due now
            for status, n in summary.final.items():
                self._metrics.final.labels(status).inc(n)
            for hook_id in (*summary.disabled_hooks, *summary.removed_hooks):
                self.hook_changed(hook_id)
            for hook_id in summary.disabled_hooks:
                self._metrics.hooks_changed.labels(HookStatus.DISABLED.value).inc()
                log.warning("hook_disabled", hook_id=hook_id)
            for hook_id in summary.removed_hooks:
                self._metrics.hooks_changed.labels(HookStatus.REMOVED.value).inc()
                log.info("hook_removed", hook_id=hook_id, reason="410 Gone")
        except Exception:
            log.exception("record_followup_failed")
        self._wake.set()
        self._progress.set()
