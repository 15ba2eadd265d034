"""The delivery loop: claim due deliveries, run attempts under global and per-host bounds,
record outcomes in batches, and shut down in stages."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

from gateway.clock import Clock
from gateway.config import DeliveryConfig
from gateway.dispatch import Dispatcher
from gateway.errors import DatabaseUnavailable
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.models import DeliveryStatus, DueDelivery, HookStatus
from gateway.storage import AttemptResult, Claim, Claimed

if TYPE_CHECKING:
    from gateway.storage.backend import Backend

log = get_logger("gateway.delivery")

# Rows claimed ahead of free slots, per host and overall: the next attempt to a host starts the
# moment one ends, without a round trip to the database in between.
PREFETCH = 2
# A host that answers fast earns more rows ahead: what it finished in the last RATE_WINDOW
# seconds, scaled to LOOKAHEAD seconds of work. A host that answers slowly or not at all keeps
# PREFETCH x its slots, so it cannot hold rows that healthy hosts could be sending.
RATE_WINDOW = 0.5
LOOKAHEAD = 0.2
# Finished attempts are recorded in batches: the recorder waits up to RECORD_WINDOW seconds for
# RECORD_BATCH of them while attempts are in flight, since each commit has a fixed cost (WAL
# frames for every page it touched) that a batch of one pays in full.
RECORD_BATCH = 32
RECORD_WINDOW = 0.002
PURGE_EVERY = 3600.0


class DeliveryEngine:
    def __init__(self, storage: Backend, dispatcher: Dispatcher, cfg: DeliveryConfig,
                 metrics: Metrics, clock: Clock) -> None:
        self._storage = storage
        self._dispatcher = dispatcher
        self._cfg = cfg
        self._metrics = metrics
        self._clock = clock
        self._base_host_cap = cfg.max_in_flight_per_host * PREFETCH
        self._claim_cap = max(cfg.max_in_flight * PREFETCH, cfg.claim_batch_size)
        self._min_claim = max(1, min(cfg.claim_batch_size, self._claim_cap // 4))
        self._attempt_counts: Counter[str] = Counter()
        metrics.watch_engine(self)
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._record_wake = asyncio.Event()
        self._record_full = asyncio.Event()
        self._queues: dict[str, deque[DueDelivery]] = {}
        # Every row this process holds claimed in the database, until its attempt is recorded
        # or it is handed back.
        self._claimed: dict[str, DueDelivery] = {}
        # Of those, the rows not attempted yet (queued or in flight), per host: what the claim
        # bounds count. A finished row waiting to be recorded no longer takes room.
        self._unfinished: Counter[str] = Counter()
        self._unfinished_total = 0
        # host → (window start, finished in this window, finished in the previous one)
        self._host_rate: dict[str, tuple[float, int, int]] = {}
        self._rate_bound = 1000
        # Set when a claim saw every due row: the hosts that held rows then (any of them may
        # have been at its bound). Until one has room again, or something new may be due (a
        # wake, a retry, an ordered hook moving on, a timer), another claim would only scan
        # the rows of full hosts again.
        self._dry: frozenset[str] | None = None
        self._next_due: tuple[float | None] | None = None  # when dry: (next row due), once read
        self._dry_since = 0.0  # the `now` of the claim that found the loop dry
        self._dry_epoch = 0  # counts claims, so a next-due answer read across one is dropped
        self._host_running: Counter[str] = Counter()
        self._running = 0
        self._attempts: set[asyncio.Task[None]] = set()
        self._results: list[AttemptResult] = []
        self._recording = False
        self._recorder_done = False
        self._purged_at = float("-inf")
        self._reset_due = False  # claims of an earlier run not handed back yet (see start)
        self._stopping = False
        self._stop_task: asyncio.Task[None] | None = None
        self._gone: set[str] = set()  # hooks that answered 410, until that is recorded
        self._loop_task: asyncio.Task[None] | None = None
        self._recorder_task: asyncio.Task[None] | None = None

    # -- public --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def wake(self) -> None:
        """New work may be due (a publish, a retry, a resumed hook)."""
        self._dry = None
        self._wake.set()

    async def start(self, *, background: bool = True) -> None:
        try:
            handed_back = await self._storage.reset_claims()
        except DatabaseUnavailable:
            # Started on a database that cannot write: the loop hands them back once it can.
            self._reset_due = True
        else:
            if handed_back:
                log.info("claims_handed_back", count=handed_back)
        self._recorder_task = asyncio.create_task(self._recorder(), name="gateway-recorder")
        if background:
            self._loop_task = asyncio.create_task(self._loop(), name="gateway-delivery")

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Deliver everything due now, wait for every attempt to be recorded, then return
        (tests: pair with a manual clock to step through retry schedules)."""
        async with asyncio.timeout(timeout):
            while True:
                self._progress.clear()
                claimed = await self._fill()
                if not claimed and not self._claimed and not self._results and not self._recording:
                    return
                await self._progress.wait()

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
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        queued = [d for q in self._queues.values() for d in q]
        self._queues.clear()
        finished_in_grace = len(self._attempts)
        if self._attempts:
            _, pending = await asyncio.wait(self._attempts, timeout=self._cfg.shutdown_grace_seconds)
            finished_in_grace -= len(pending)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._recorder_task is not None:
            # Not cancelled: a cancelled flush could commit in the database thread and then be
            # retried, writing its attempts twice. Told to finish, it drains and returns.
            self._recorder_done = True
            self._record_wake.set()
            await asyncio.gather(self._recorder_task, return_exceptions=True)
        unfinished = list(self._claimed)
        try:
            await self._storage.release_claims(unfinished)
        except DatabaseUnavailable:
            unfinished = []  # they stay claimed: the next start hands them back
        log.info("delivery_stopped", finished_in_grace=finished_in_grace, queued=len(queued),
                 handed_back=len(unfinished))

    # -- claiming ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            timeout = self._cfg.poll_interval_seconds
            try:
                now = self._clock.now()
                if self._reset_due:
                    await self._storage.reset_claims()
                    self._reset_due = False
                if now - self._purged_at >= PURGE_EVERY:
                    # Idempotency keys outlive their window only until the next sweep.
                    self._purged_at = now
                    await self._storage.purge_idempotency(now)
                if self._wanted():
                    await self._fill()
                if self._dry is not None:
                    # Every due row was seen: sleep until the next one falls due. A row already
                    # due yet not taken waits on a bound (a full host, an ordered hook's
                    # earlier event) that a wake-up frees, so it does not count.
                    if self._next_due is None:
                        # After the moment that claim looked: a row that fell due since then
                        # was not among what it saw, so it ends the dry spell at once.
                        epoch = self._dry_epoch
                        found = await self._storage.next_due_at(self._dry_since)
                        if epoch == self._dry_epoch:
                            self._next_due = (found,)
                    # (A claim made meanwhile, by the recorder, made that answer stale.)
                    due = self._next_due[0] if self._next_due is not None else self._clock.now()
                    if due is not None:
                        wait = due - self._clock.now()
                        if wait <= 0:
                            self._dry = None  # that row has fallen due meanwhile
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
                    self._dry = None  # a retry may have fallen due
            else:
                await asyncio.sleep(0)  # never a turn of this loop without yielding

    def _wanted(self) -> int:
        """How many rows to claim now, or 0. Claim when the prefetched rows run dry, or when
        enough room has opened to make a batch (one claim per finished attempt would cost a
        transaction per delivery), and not while the last claim saw every due row and no host
        it left at its bound has freed half its room."""
        room = min(self._claim_room(), self._cfg.claim_batch_size)
        if room <= 0 or (self._queues and room < self._min_claim):
            return 0
        if self._dry is not None and not any(map(self._has_freed_room, self._dry)):
            return 0
        return room

    def _has_freed_room(self, host: str) -> bool:
        cap = self._host_cap(host, self._clock.now())
        return cap - self._unfinished.get(host, 0) >= max(1, min(self._min_claim, cap // 2))

    def _is_ordered(self, delivery_id: str) -> bool:
        d = self._claimed.get(delivery_id)
        return d is not None and d.ordered

    def _claimed_rows(self, claimed: Claimed, spec: Claim) -> None:
        self._accept(claimed.rows)
        # The hosts that may have held rows back: full when the claim was made, or holding
        # rows now (a host's room can run out part-way through a claim).
        self._dry = frozenset((*spec.full_hosts, *self._unfinished)) if claimed.exhausted else None
        self._dry_since = spec.now
        self._dry_epoch += 1
        self._next_due = None

    def _claim_room(self) -> int:
        return self._claim_cap - self._unfinished_total

    def _host_cap(self, host: str, now: float) -> int:
        rate = self._host_rate.get(host)
        if rate is None:
            return self._base_host_cap
        start, _, previous = rate
        if now - start >= 2 * RATE_WINDOW:
            previous = 0  # nothing finished for a whole window: the earned rows are gone
        earned = int(previous * (LOOKAHEAD / RATE_WINDOW))
        return max(self._base_host_cap, min(self._claim_cap, earned))

    def _note_finished(self, host: str) -> None:
        now = self._clock.now()
        start, current, previous = self._host_rate.get(host, (now, 0, 0))
        if now - start >= RATE_WINDOW:
            previous = current if now - start < 2 * RATE_WINDOW else 0
            start, current = now, 0
        self._host_rate[host] = (start, current + 1, previous)
        if len(self._host_rate) > self._rate_bound:
            # Many hosts once: forget the idle ones rather than grow without bound, and let the
            # table double before looking again, so busy hosts do not make this run per attempt.
            self._host_rate = {h: r for h, r in self._host_rate.items() if h in self._unfinished}
            self._rate_bound = max(1000, 2 * len(self._host_rate))

    def _claim_spec(self, room: int) -> Claim:
        """A snapshot of the room left, overall and per host."""
        now = self._clock.now()
        host_room = {h: cap for h in self._host_rate
                     if (cap := self._host_cap(h, now)) != self._base_host_cap}
        for h, n in self._unfinished.items():
            host_room[h] = host_room.get(h, self._base_host_cap) - n
        return Claim(now=now, limit=room, host_room=host_room, default_room=self._base_host_cap)

    def _accept(self, batch: list[DueDelivery]) -> None:
        for d in batch:
            self._claimed[d.id] = d
            self._unfinished[d.host] += 1
            self._unfinished_total += 1
            self._queues.setdefault(d.host, deque()).append(d)
            self._pump(d.host)

    def _finished(self, d: DueDelivery) -> None:
        """The row is out of the queue and not in flight: it no longer counts against the
        claim bounds (it stays claimed until recorded or handed back)."""
        self._unfinished_total -= 1
        self._unfinished[d.host] -= 1
        if self._unfinished[d.host] <= 0:
            del self._unfinished[d.host]

    async def _fill(self) -> int:
        """Claim due rows while there is room; returns how many were claimed."""
        total = 0
        while not self._stopping:
            room = min(self._claim_room(), self._cfg.claim_batch_size)
            if room <= 0:
                break
            spec = self._claim_spec(room)
            claimed = await self._storage.claim_due(spec)
            self._claimed_rows(claimed, spec)
            total += len(claimed.rows)
            if claimed.exhausted:
                break
        return total

    # -- running attempts ----------------------------------------------------------------------

    def _pump(self, host: str) -> None:
        """Start workers for a host while it has queued rows and both bounds allow."""
        q = self._queues.get(host)
        while (q and self._host_running[host] < min(len(q), self._cfg.max_in_flight_per_host)
               and self._running < self._cfg.max_in_flight and not self._stopping):
            self._running += 1
            self._host_running[host] += 1
            task = asyncio.create_task(self._worker(host))
            self._attempts.add(task)
            task.add_done_callback(self._attempts.discard)

    async def _worker(self, host: str) -> None:
        """One slot of a host: attempts its queued rows one after another. A worker per slot
        rather than a task per attempt, which would cost a task and its callbacks each time."""
        try:
            while not self._stopping:
                q = self._queues.get(host)
                if not q:
                    break
                d = q.popleft()
                if not q:
                    del self._queues[host]
                await self._attempt(d)
                if (self._running >= self._cfg.max_in_flight and len(self._queues) > 1
                        and self._another_host_waits(host)):
                    # Every slot is taken and another host waits for one: pass this one on, so
                    # a host with a deep queue cannot keep the global slots to itself.
                    break
        finally:
            self._running -= 1
            self._host_running[host] -= 1
            if not self._host_running[host]:
                del self._host_running[host]
            if not self._stopping:
                for other in list(self._queues):
                    if self._running >= self._cfg.max_in_flight:
                        break
                    if other != host:
                        self._pump(other)
                self._pump(host)

    def _another_host_waits(self, host: str) -> bool:
        """Whether a host other than this one has queued rows and a free slot of its own. A
        host at its own bound (a slow one, say) cannot take the slot, so handing it over would
        only cost a new worker per attempt. Looks at a bounded number of hosts."""
        per_host = self._cfg.max_in_flight_per_host
        for i, other in enumerate(self._queues):
            if i >= 64:
                return True  # many hosts wait: assume one can take it, as before
            if other != host and self._host_running.get(other, 0) < per_host:
                return True
        return False

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
        self._finished(d)
        if result is None:
            # Not sent, or a bug in an attempt, which must not wedge the row: hand it back.
            self._claimed.pop(d.id, None)
            await self._storage.release_claims([d.id])
            self._dry = None
        else:
            self._note_finished(d.host)
            self._attempt_counts[result.outcome.value] += 1
            self._metrics.attempt_seconds.observe(resp.duration_ms * 0.001)
            if resp.error is not None:
                log.info("attempt_error", delivery_id=d.id, hook_id=d.hook_id,
                         error=resp.error, detail=resp.detail)
            if result.gone:
                self._gone.add(d.hook_id)
            self._results.append(result)
            self._record_wake.set()
            if len(self._results) >= RECORD_BATCH:
                self._record_full.set()
            if result.status is DeliveryStatus.DELIVERED:
                self._metrics.latency.observe(max(0.0, result.attempt.at - d.event_created_at))
        if self._wanted():
            # Only when a claim is due: waking the loop after every attempt cost a task switch
            # per delivery for nothing.
            self._wake.set()
        self._progress.set()

    def hook_changed(self, hook_id: str) -> None:
        """A hook was paused, deleted or changed: rows of it waiting in memory for a slot are
        handed back, so they go out (or not) by the hook's new state. Attempts already in
        flight finish. Every change to a hook goes through this process, so checking here
        replaces a database read before each attempt."""
        dropped: list[str] = []
        for host, q in list(self._queues.items()):
            keep = deque(d for d in q if d.hook_id != hook_id)
            if len(keep) != len(q):
                dropped.extend(d.id for d in q if d.hook_id == hook_id)
                if keep:
                    self._queues[host] = keep
                else:
                    del self._queues[host]
        for delivery_id in dropped:
            d = self._claimed.pop(delivery_id, None)
            if d is not None:
                self._finished(d)
        self._dry = None
        if dropped:
            task = asyncio.create_task(self._storage.release_claims(dropped))
            self._attempts.add(task)
            task.add_done_callback(self._attempts.discard)
        self._wake.set()

    @property
    def attempt_counts(self) -> Mapping[str, int]:
        return self._attempt_counts

    @property
    def in_flight_by_host(self) -> Mapping[str, int]:
        return self._host_running

    # -- recording -----------------------------------------------------------------------------

    async def _recorder(self) -> None:
        failures = 0
        while True:
            await self._record_wake.wait()
            if len(self._results) < RECORD_BATCH and self._running and not self._recorder_done:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RECORD_WINDOW):
                        await self._record_full.wait()
            self._record_wake.clear()
            self._record_full.clear()
            try:
                await self._flush_results()
                failures = 0
            except Exception as exc:
                failures += 1
                if not isinstance(exc, DatabaseUnavailable):  # (logged once by storage)
                    log.exception("record_failed", failures=failures)
                if self._recorder_done and failures >= 3:
                    return
                # The results are kept; back off a little before the database is tried again.
                await asyncio.sleep(min(0.05 * 2**failures, 2.0))
                self._record_wake.set()
                continue
            if self._recorder_done and not self._results:
                return

    async def _flush_results(self) -> None:
        while self._results:
            batch = self._results
            self._results = []
            self._recording = True
            # A retry, or an ordered hook's row recorded, may leave a row due for the claim.
            if any(r.status is DeliveryStatus.PENDING or self._is_ordered(r.delivery_id)
                   for r in batch):
                self._dry = None
            # Claiming in the same transaction saves a commit and a thread hop.
            room = 0 if self._stopping else self._wanted()
            claim = self._claim_spec(room) if room else None
            try:
                summary = await self._storage.record_attempts(
                    batch, self._clock.now(),
                    disable_after_failures=self._cfg.disable_after_failures,
                    disable_after_seconds=self._cfg.disable_after_seconds,
                    then_claim=claim)
            except BaseException:
                self._results = batch + self._results
                raise
            finally:
                self._recording = False
            for r in batch:
                self._claimed.pop(r.delivery_id, None)
                if r.gone:
                    self._gone.discard(r.hook_id)
            if summary.claimed is not None and claim is not None:
                if self._stopping:
                    # Claimed while the loop was stopping: never started, handed back below.
                    self._claimed.update((d.id, d) for d in summary.claimed.rows)
                else:
                    self._claimed_rows(summary.claimed, claim)
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
            self._wake.set()
            self._progress.set()
