"""Replay and recovery of a hook on PostgreSQL: not there yet. Both verbs answer 501 (never a
500, never a silent no-op) until they are written: recovery needs deliveries.retry_from (SQLite's
sql/0006) honoured by the claims, and the test event needs the operational events, which are
published inside record_attempts on SQLite only."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.errors import NotSupported
from gateway.models import DeliveryStatus
from gateway.storage.values import Published


class RecoveryStore:
    async def recover_deliveries(self, hook_id: str, *, since: float, until: float | None,
                                 statuses: Sequence[DeliveryStatus], now: float,
                                 after_batch: Callable[[int], None] | None = None,
                                 batch: int | None = None) -> int:
        raise NotSupported("recovering a hook's deliveries is not available on PostgreSQL yet")

    async def publish_test_event(self, hook_id: str, message: str, now: float
                                 ) -> Published | None:
        raise NotSupported("test events are not available on PostgreSQL yet")
