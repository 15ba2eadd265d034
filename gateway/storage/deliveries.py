"""Deliveries as the API reads and retries them."""

from __future__ import annotations

import sqlite3

from gateway.models import Attempt, Delivery, DeliveryStatus
from gateway.storage import rows
from gateway.storage.connector import SqliteConnector
from gateway.storage.queries import Q


class DeliveryStore:
    def __init__(self, db: SqliteConnector) -> None:
        self._db = db

    async def get_delivery(self, delivery_id: str) -> tuple[Delivery, list[Attempt]] | None:
        found = await self._db.read(Q["delivery_get"], (delivery_id,))
        if not found:
            return None
        attempts = [rows.attempt(r) for r in await self._db.read(Q["delivery_attempts"],
                                                                 (delivery_id,))]
        return rows.delivery(found[0]), attempts

    async def list_deliveries(self, hook_id: str, status: DeliveryStatus | None, limit: int,
                              before: str | None) -> tuple[list[Delivery], str | None]:
        st = status.value if status else None
        found = await self._db.read(Q["delivery_list"], (hook_id, before or "~", st, st, limit + 1))
        items = [rows.delivery(r) for r in found[:limit]]
        return items, (items[-1].id if len(found) > limit else None)

    async def pending_count(self) -> int:
        """Deliveries still pending, due or not, for the metrics."""
        found = await self._db.read(Q["pending_count"])
        return int(found[0][0])

    async def retry_delivery(self, delivery_id: str, now: float) -> Delivery | None:
        def tx(c: sqlite3.Connection) -> Delivery | None:
            c.execute(Q["delivery_retry"], (now, now, delivery_id))
            row = c.execute(Q["delivery_get"], (delivery_id,)).fetchone()
            return rows.delivery(row) if row else None

        return await self._db.tx(tx)
