"""Replay and recovery of a hook on PostgreSQL: its deliveries since a time back to pending, in
batches (as SQLite's storage/recovery.py). The test event is not there yet and answers 501
(never a 500, never a silent no-op): it is an operational event, and PostgreSQL does not publish
those (SQLite does, inside record_attempts)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from gateway.errors import NotSupported
from gateway.models import DeliveryStatus, HookStatus, first_id_at
from gateway.storage.postgres.connector import Q
from gateway.storage.postgres.memory import PgMemory
from gateway.storage.recovery import RECOVER_BATCH
from gateway.storage.values import Published


class RecoveryStore:
    def __init__(self, memory: PgMemory) -> None:
        self._mem = memory
        self._db = memory.db

    async def recover_deliveries(self, hook_id: str, *, since: float, until: float | None,
                                 statuses: Sequence[DeliveryStatus], now: float,
                                 after_batch: Callable[[int], None] | None = None,
                                 batch: int | None = None) -> int:
        """The hook's deliveries created in [since, until) with one of the statuses become
        pending with a fresh set of retries, oldest first, in transactions of `batch` rows
        (RECOVER_BATCH), each committed before the next; after_batch(n) runs after each
        commit. How many were recovered."""
        size = batch or RECOVER_BATCH
        wanted = sorted(s.value for s in statuses)
        lowest = first_id_at("dlv", since)  # ids begin with their millisecond: the index seek
        upper = math.inf if until is None else until
        total, after = 0, ""
        while True:
            async with self._db.tx() as c:
                hook = await c.fetchrow(Q["hook_route"], hook_id)
                if hook is None:  # deleted meanwhile
                    return total
                ids = [r[0] for r in await c.fetch(Q["recover_select"], hook_id,
                                                   max(after, lowest), since, upper, wanted, size)]
                if not ids:
                    return total
                held = int(hook[1] != HookStatus.ACTIVE.value)
                await c.execute(Q["recover_update"], now, now, held, ids)
                if not held:
                    await self._mem.announce(c, "due")
            total += len(ids)
            if after_batch is not None:
                after_batch(len(ids))
            if len(ids) < size:
                return total
            after = ids[-1]

    async def publish_test_event(self, hook_id: str, message: str, now: float
                                 ) -> Published | None:
        raise NotSupported("test events are not available on PostgreSQL yet")
