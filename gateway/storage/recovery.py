"""Replay and recovery of a hook: its deliveries since a time back to pending, a test event."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial

import orjson

from gateway.models import DeliveryStatus, HookStatus, first_id_at
from gateway.routing import Route
from gateway.storage import operational
from gateway.storage.connector import SqliteConnector
from gateway.storage.hooks import HookMemory
from gateway.storage.queries import Q
from gateway.storage.values import Published

RECOVER_BATCH = 1000  # deliveries per transaction of a recovery (a few ms of the writer each)


class RecoveryStore:
    def __init__(self, db: SqliteConnector, memory: HookMemory) -> None:
        self._db = db
        self._mem = memory

    async def recover_deliveries(self, hook_id: str, *, since: float, until: float | None,
                                 statuses: Sequence[DeliveryStatus], now: float,
                                 after_batch: Callable[[int], None] | None = None,
                                 batch: int | None = None) -> int:
        """The hook's deliveries created in [since, until) with one of the statuses become
        pending with a fresh set of retries, oldest first, in transactions of `batch` rows
        (RECOVER_BATCH): a recovery of 100,000 deliveries never holds the writer (and so
        publishing and the delivery loop) for more than one batch. after_batch(n) runs after
        each commit. How many were recovered."""
        size = batch or RECOVER_BATCH
        wanted = orjson.dumps(sorted(s.value for s in statuses)).decode()
        # (A delivery's id begins with the millisecond it was made in: the index by hook and
        # id starts at the first id `since` allows.)
        lowest = first_id_at("dlv", since)
        upper = math.inf if until is None else until

        def tx(c: sqlite3.Connection, after: str) -> tuple[int, str | None]:
            hook = c.execute(Q["hook_route"], (hook_id,)).fetchone()
            if hook is None:  # deleted meanwhile
                return 0, None
            ids = [r[0] for r in c.execute(Q["recover_select"], (
                hook_id, max(after, lowest), since, upper, wanted, size))]
            if not ids:
                return 0, None
            held = int(hook[1] != HookStatus.ACTIVE.value)
            c.execute(Q["recover_update"], (now, now, held, orjson.dumps(ids).decode()))
            return len(ids), ids[-1] if len(ids) == size else None

        total, after = 0, ""
        while True:
            n, last = await self._db.tx(partial(tx, after=after))
            total += n
            if n and after_batch is not None:
                after_batch(n)
            if last is None:
                return total
            after = last

    async def publish_test_event(self, hook_id: str, message: str, now: float
                                 ) -> Published | None:
        """A gateway.test event in the hook's account for that hook alone; None when the hook
        does not exist."""
        def tx(c: sqlite3.Connection) -> Published | None:
            hook = c.execute(Q["hook_route"], (hook_id,)).fetchone()
            if hook is None:
                return None
            route = Route(hook[0], hook[1] != HookStatus.ACTIVE.value, hook[2], hook[3])
            op = operational.OperationalEvent(
                hook[3], operational.TEST, {"hook_id": hook_id, "message": message}, hook_id,
                only=route)
            return operational.publish(c, self._mem, [op], now)[0]

        return await self._db.tx(tx)
