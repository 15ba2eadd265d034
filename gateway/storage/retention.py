"""Retention: what the pruner deletes, one small transaction at a time."""

from __future__ import annotations

import sqlite3

import orjson

from gateway.models import first_id_at
from gateway.storage.connector import SqliteConnector
from gateway.storage.hooks import HookMemory
from gateway.storage.queries import Q
from gateway.storage.values import PruneSummary


class RetentionStore:
    def __init__(self, db: SqliteConnector, memory: HookMemory) -> None:
        self._db = db
        self._mem = memory
        # Where this pass has got to: old rows that must stay (pending) are walked past once
        # a pass, not once a step.
        self._after_delivery = ""
        self._after_event = ""

    async def prune(self, now: float, keep_seconds: float, batch: int = 500) -> PruneSummary:
        """One step of a pruning pass: at most `batch` deliveries (with their attempts) and
        `batch` events, in one transaction run in the database thread. Final deliveries made
        and last changed more than keep_seconds ago go, and every final one of a deleted hook;
        then events made before then with no delivery left; at the end of a pass, deleted
        hooks with nothing left, old secrets past their rotation window and expired portal
        sessions. A pending delivery never goes, nor the event it belongs to. Call again while
        `more`."""
        cutoff = now - keep_seconds
        # Ids sort by the time they were made (never before created_at: they are monotonic),
        # so the primary key finds the old rows; created_at and updated_at are checked too.
        before_dlv, before_evt = first_id_at("dlv", cutoff), first_id_at("evt", cutoff)

        def tx(c: sqlite3.Connection) -> PruneSummary:
            out = PruneSummary()
            old = [r[0] for r in c.execute(Q["prune_deliveries_pick"],
                                           (self._after_delivery, before_dlv, cutoff, batch))]
            ids = set(old)
            if len(old) == batch:
                self._after_delivery = old[-1]
                out.more = True
            else:
                self._after_delivery = ""
                ids.update(r[0] for r in c.execute(Q["prune_deleted_hooks_deliveries_pick"],
                                                   (batch - len(old),)))
                out.more = len(ids) >= batch
            if ids:
                doomed = orjson.dumps(list(ids)).decode()
                out.attempts = c.execute(Q["prune_attempts"], (doomed,)).rowcount
                out.deliveries = c.execute(Q["prune_deliveries"], (doomed,)).rowcount
            events = [r[0] for r in c.execute(Q["prune_events_pick"],
                                              (self._after_event, before_evt, cutoff, batch))]
            if len(events) == batch:
                self._after_event = events[-1]
                out.more = True
            elif not out.more:
                self._after_event = ""
            if events:
                out.events = c.execute(Q["prune_events"], (orjson.dumps(events).decode(),)).rowcount
            if not out.more:
                out.hooks = c.execute(Q["prune_hooks"]).rowcount
                out.secrets = c.execute(Q["secrets_expire"], (now,)).rowcount
                c.execute(Q["portal_session_purge"], (now,))  # expired sign-in links
                if out.secrets:
                    self._mem.cfg.clear()  # (claims read the hooks' secrets from it)
            return out

        return await self._db.tx(tx, background=True)
