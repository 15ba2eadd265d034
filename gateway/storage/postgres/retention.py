"""Retention on PostgreSQL: what the pruner deletes, one small transaction at a time. Every
process runs a pruner; each deletes what it picks, and two picking the same rows only delete
them once."""

from __future__ import annotations

from gateway.models import first_id_at
from gateway.storage.postgres.connector import Q, rowcount
from gateway.storage.postgres.memory import PgMemory
from gateway.storage.values import PruneSummary


class RetentionStore:
    def __init__(self, memory: PgMemory) -> None:
        self._db = memory.db
        self._after_delivery = ""
        self._after_event = ""

    async def prune(self, now: float, keep_seconds: float, batch: int = 500) -> PruneSummary:
        """One step of a pruning pass (see gateway.storage.retention, whose rules these are):
        final deliveries older than keep_seconds with their attempts, every final one of a
        deleted hook, events with no delivery left, deleted hooks with nothing left, expired
        old secrets. A pending delivery never goes, nor its event. Call again while `more`."""
        cutoff = now - keep_seconds
        before_dlv, before_evt = first_id_at("dlv", cutoff), first_id_at("evt", cutoff)
        out = PruneSummary()
        async with self._db.tx() as c:
            old = [r[0] for r in await c.fetch(Q["prune_deliveries_pick"], self._after_delivery,
                                               before_dlv, cutoff, batch)]
            ids = set(old)
            if len(old) == batch:
                self._after_delivery = old[-1]
                out.more = True
            else:
                self._after_delivery = ""
                ids.update(r[0] for r in await c.fetch(Q["prune_deleted_hooks_deliveries_pick"],
                                                       batch - len(old)))
                out.more = len(ids) >= batch
            if ids:
                doomed = sorted(ids)
                out.attempts = rowcount(await c.execute(Q["prune_attempts"], doomed))
                out.deliveries = rowcount(await c.execute(Q["prune_deliveries"], doomed))
            events = [r[0] for r in await c.fetch(Q["prune_events_pick"], self._after_event,
                                                  before_evt, cutoff, batch)]
            if len(events) == batch:
                self._after_event = events[-1]
                out.more = True
            elif not out.more:
                self._after_event = ""
            if events:
                out.events = rowcount(await c.execute(Q["prune_events"], events))
            if not out.more:
                out.hooks = rowcount(await c.execute(Q["prune_hooks"]))
                out.secrets = rowcount(await c.execute(Q["secrets_expire"], now))
        return out
