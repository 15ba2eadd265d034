"""Hooks on PostgreSQL: every change bumps the account's hooks_version, which publishing in
every process checks before it routes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from gateway.errors import NotSupported
from gateway.models import Hook, HookStatus, PayloadMode, new_id
from gateway.storage import rows
from gateway.storage.postgres.connector import Q
from gateway.storage.postgres.memory import PgMemory


def _hook(r: Any) -> Hook:  # asyncpg's Record reads by name, as rows.hook expects
    return rows.hook(r)


class HookStore:
    def __init__(self, memory: PgMemory) -> None:
        self._mem = memory
        self._db = memory.db

    async def create_hook(self, *, account: str, target_url: str, host: str, topics: Sequence[str],
                          payload: PayloadMode, ordered: bool, description: str,
                          headers: dict[str, str], secret: str, now: float,
                          hook_id: str | None = None) -> Hook:
        if account == "*":
            # Routing reads one account's hooks by its hooks_version: a hook of every account
            # would need every account's version bumped. Refused rather than never routed.
            raise NotSupported("hooks of every account are not available on PostgreSQL yet")
        hid = hook_id or new_id("hook", now)
        async with self._db.tx() as c:
            await c.execute(Q["accounts_ensure"], [account], now)
            await c.execute(Q["hook_insert"], hid, account, target_url, host,
                            orjson.dumps(list(topics)).decode(), payload.value, int(ordered),
                            description, orjson.dumps(headers).decode(), secret, now, now)
            await self._mem.hooks_changed(c, account)
            row = await c.fetchrow(Q["hook_get"], hid)
        return _hook(row)

    async def get_hook(self, hook_id: str) -> Hook | None:
        row = await self._db.fetchrow("hook_get", hook_id)
        return _hook(row) if row else None

    async def list_hooks(self, account: str | None, limit: int,
                         after: str = "") -> tuple[list[Hook], str | None]:
        if account is None:
            rows = await self._db.fetch("hook_list_all", after, limit + 1)
        else:
            rows = await self._db.fetch("hook_list_account", account, after, limit + 1)
        hooks = [_hook(r) for r in rows[:limit]]
        return hooks, (hooks[-1].id if len(rows) > limit else None)

    async def hook_counts(self) -> dict[str, int]:
        """Hooks by status (deleted ones left out), for the metrics."""
        return {r[0]: int(r[1]) for r in await self._db.fetch("hooks_by_status")}

    async def update_hook(self, hook_id: str, changes: dict[str, Any], now: float) -> Hook | None:
        """Apply validated changes. A status change moves the hook's waiting deliveries with it."""
        def col(name: str) -> Any:
            v = changes.get(name)
            if v is None:
                return None
            if name in ("topics", "headers"):
                return orjson.dumps(list(v) if name == "topics" else v).decode()
            if name == "ordered":
                return int(v)
            if name == "payload":
                return PayloadMode(v).value
            return v

        settings = [col(n) for n in ("target_url", "host", "topics", "payload", "ordered",
                                     "description", "headers")]
        new_status: HookStatus | None = changes.get("status")
        async with self._db.tx() as c:
            row = await c.fetchrow(Q["hook_get_locked"], hook_id)
            if row is None:
                return None
            if any(v is not None for v in settings):
                await c.execute(Q["hook_update"], *settings, now, hook_id)
            old = HookStatus(row["status"])
            if new_status is not None and new_status is not old:
                await c.execute(Q["hook_set_status"], new_status.value, now, hook_id)
                if new_status is HookStatus.ACTIVE:
                    await c.execute(Q["hook_success"], [hook_id])
                    if old is HookStatus.DISABLED:
                        await c.execute(Q["hook_resume_deliveries"], now, now, hook_id)
                    else:
                        await c.execute(Q["hook_set_held"], 0, hook_id)
                    await self._mem.announce(c, "due")
                else:
                    await c.execute(Q["hook_set_held"], 1, hook_id)
            await self._mem.hooks_changed(c, row["account"])
            out = await c.fetchrow(Q["hook_get"], hook_id)
        return _hook(out)

    async def delete_hook(self, hook_id: str, now: float) -> bool:
        async with self._db.tx() as c:
            row = await c.fetchrow(Q["hook_get_locked"], hook_id)
            if row is None:
                return False
            await c.execute(Q["hook_delete"], now, now, hook_id)
            await c.execute(Q["hook_cancel_deliveries"], now, hook_id)
            await self._mem.hooks_changed(c, row["account"])
        return True

    async def rotate_secret(self, hook_id: str, secret: str, old_expires_at: float,
                            now: float) -> Hook | None:
        # Claims read the secret with each row (never kept in memory): nothing to invalidate.
        async with self._db.tx() as c:
            await c.execute(Q["hook_rotate"], old_expires_at, secret, now, hook_id)
            row = await c.fetchrow(Q["hook_get"], hook_id)
        return _hook(row) if row else None
