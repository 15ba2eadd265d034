"""Aggregate reads behind the portal's charts and operator pages on PostgreSQL (as SQLite's
storage/views.py), from the pool."""

from __future__ import annotations

from gateway.models import Hook
from gateway.storage import rows
from gateway.storage.postgres.connector import PgConnector


class ViewStore:
    def __init__(self, db: PgConnector) -> None:
        self._db = db

    async def hook_attempts_by_bucket(self, hook_ids: list[str], start: float, step: float,
                                      lowest_delivery: str) -> list[tuple[str, int, int, int]]:
        """(hook id, bucket, delivered, failed): the hooks' attempts since `start` in buckets
        of `step` seconds, of deliveries whose id is at least `lowest_delivery`."""
        if not hook_ids:
            return []
        return [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in await self._db.fetch(
            "portal_hook_health", start, step, hook_ids, lowest_delivery)]

    async def last_failures(self, hook_ids: list[str], lowest_delivery: str
                            ) -> dict[str, tuple[float, int | None, str | None]]:
        """Each hook's latest failed attempt: (at, status code, error)."""
        if not hook_ids:
            return {}
        return {r[0]: (r[1], r[2], r[3]) for r in await self._db.fetch(
            "portal_hook_last_error", hook_ids, lowest_delivery)}

    async def attempts_by_bucket(self, start: float, step: float,
                                 recent: int) -> list[tuple[int, int, int]]:
        """(bucket, delivered, failed) of every hook's attempts since `start`, among the
        latest `recent` attempts."""
        return [(int(r[0]), int(r[1]), int(r[2])) for r in await self._db.fetch(
            "portal_attempts_per_bucket", start, step, recent)]

    async def backlog_by_host(self, now: float, limit: int) -> list[tuple[str, int, int]]:
        """(host, waiting, due by now) for the callback hosts with the most waiting."""
        return [(r[0], int(r[1]), int(r[2]))
                for r in await self._db.fetch("portal_backlog_by_host", now, limit)]

    async def troubled_hooks(self, limit: int) -> list[Hook]:
        """Hooks disabled, removed, or failing now, the longest failing first."""
        return [rows.hook(r) for r in await self._db.fetch("portal_troubled_hooks", limit)]

    async def account_summaries(self, limit: int) -> list[tuple[str, int]]:
        """(account, hooks) for every account, by name."""
        return [(r[0], int(r[1])) for r in await self._db.fetch("portal_accounts", limit)]
