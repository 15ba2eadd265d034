"""Per-host slots: the queued rows of each callback host and the workers that attempt them,
under both bounds (max_in_flight overall, max_in_flight_per_host for one host).

A worker is one slot of one host: it attempts that host's queued rows one after another (a
task per attempt would cost a task and its callbacks each time), and hands its slot to another
host when every slot is taken and another host waits for one, so a host with a deep queue
cannot keep the global slots to itself.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable

from gateway.config import DeliveryConfig
from gateway.models import DueDelivery

# How many other hosts a worker looks at before assuming one of them can take its slot.
LOOK_AT = 64


class HostSlots:
    __slots__ = (
        "_attempt",
        "_max",
        "_per_host",
        "host_running",
        "queues",
        "running",
        "stopping",
        "tasks",
    )

    def __init__(self, cfg: DeliveryConfig,
                 attempt: Callable[[DueDelivery], Awaitable[None]]) -> None:
        self._attempt = attempt
        self._max = cfg.max_in_flight
        self._per_host = cfg.max_in_flight_per_host
        self.queues: dict[str, deque[DueDelivery]] = {}
        self.host_running: Counter[str] = Counter()
        self.running = 0
        self.stopping = False
        # Every worker, and other short tasks of the loop's (hand-backs): what a stop waits for.
        self.tasks: set[asyncio.Task[None]] = set()

    def enqueue(self, d: DueDelivery) -> None:
        self.queues.setdefault(d.host, deque()).append(d)
        self.pump(d.host)

    def track(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def pump(self, host: str) -> None:
        """Start workers for a host while it has queued rows and both bounds allow."""
        q = self.queues.get(host)
        while (q and self.host_running[host] < min(len(q), self._per_host)
               and self.running < self._max and not self.stopping):
            self.running += 1
            self.host_running[host] += 1
            self.track(asyncio.create_task(self._worker(host)))

    async def _worker(self, host: str) -> None:
        try:
            while not self.stopping:
                q = self.queues.get(host)
                if not q:
                    break
                d = q.popleft()
                if not q:
                    del self.queues[host]
                await self._attempt(d)
                if (self.running >= self._max and len(self.queues) > 1
                        and self._another_host_waits(host)):
                    break  # pass this slot on (see the module docstring)
        finally:
            self.running -= 1
            self.host_running[host] -= 1
            if not self.host_running[host]:
                del self.host_running[host]
            if not self.stopping:
                for other in list(self.queues):
                    if self.running >= self._max:
                        break
                    if other != host:
                        self.pump(other)
                self.pump(host)

    def _another_host_waits(self, host: str) -> bool:
        """Whether a host other than this one has queued rows and a free slot of its own. A
        host at its own bound (a slow one, say) cannot take the slot, so handing it over would
        only cost a new worker per attempt. Looks at a bounded number of hosts."""
        for i, other in enumerate(self.queues):
            if i >= LOOK_AT:
                return True  # many hosts wait: assume one can take it
            if other != host and self.host_running.get(other, 0) < self._per_host:
                return True
        return False

    def drop_hook(self, hook_id: str) -> list[DueDelivery]:
        """Take a hook's queued rows out (not those in flight); returns them."""
        dropped: list[DueDelivery] = []
        for host, q in list(self.queues.items()):
            keep = deque(d for d in q if d.hook_id != hook_id)
            if len(keep) != len(q):
                dropped.extend(d for d in q if d.hook_id == hook_id)
                if keep:
                    self.queues[host] = keep
                else:
                    del self.queues[host]
        return dropped

    def drain(self) -> list[DueDelivery]:
        """Every queued row, taken out (a stop)."""
        queued = [d for q in self.queues.values() for d in q]
        self.queues.clear()
        return queued
