"""API keys and topics on PostgreSQL, kept in memory until another process says they changed."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from gateway.models import ApiKey, Role, Topic, new_id
from gateway.storage import rows
from gateway.storage.postgres.connector import Q
from gateway.storage.postgres.memory import KEYS_MAX, PgMemory


def _key(r: Any) -> ApiKey:  # asyncpg's Record reads by position, as rows.key expects
    return rows.key(r)


class KeyStore:
    def __init__(self, memory: PgMemory) -> None:
        self._mem = memory
        self._db = memory.db

    async def create_key(self, role: Role, account: str | None, key_hash: bytes, last4: str,
                         now: float) -> ApiKey:
        key_id = new_id("key", now)
        async with self._db.tx() as c:
            if account is not None:
                await c.execute(Q["accounts_ensure"], [account], now)
            await c.execute(Q["key_insert"], key_id, key_hash, role.value, account, last4, now)
        # Nothing to announce: memory holds only keys found, so a new one is looked up anyway.
        return ApiKey(key_id, role, account, now, None, last4)

    async def list_keys(self) -> list[ApiKey]:
        return [_key(r) for r in await self._db.fetch("key_list")]

    async def revoke_key(self, key_id: str, now: float) -> ApiKey | None:
        async with self._db.tx() as c:
            await c.execute(Q["key_revoke"], now, key_id)
            row = await c.fetchrow(Q["key_by_id"], key_id)
            await self._mem.announce(c, "keys")
        self._mem.heard("keys")  # this process at once
        return _key(row) if row else None

    def cached_key(self, key_hash: bytes) -> ApiKey | None:
        """The key if this process holds it; None: ask fetch_key."""
        return self._mem.keys.get(key_hash) if self._mem.trusted else None

    async def key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        hit = self.cached_key(key_hash)
        return hit if hit is not None else await self.fetch_key(key_hash)

    async def fetch_key(self, key_hash: bytes) -> ApiKey | None:
        mem = self._mem
        epoch = mem.keys_epoch
        for row in await self._db.fetch("key_by_hash", key_hash):
            if hmac.compare_digest(bytes(row["hash"]), key_hash):
                key = _key(row)
                # Read across a change heard meanwhile: used this once, not kept.
                if epoch == mem.keys_epoch and mem.trusted and len(mem.keys) < KEYS_MAX:
                    mem.keys[key_hash] = key
                return key
        return None


class TopicStore:
    def __init__(self, memory: PgMemory) -> None:
        self._mem = memory
        self._db = memory.db

    async def put_topics(self, topics: Iterable[tuple[str, str]], now: float) -> list[bool]:
        """Create or update topics; for each, whether it was new."""
        items = list(topics)
        async with self._db.tx() as c:
            created = [bool(await c.fetchval(Q["topic_upsert"], name, description, now))
                       for name, description in items]
            await self._mem.announce(c, "topics")
        self._mem.topics = None
        return created

    async def list_topics(self) -> list[Topic]:
        return [rows.topic(r) for r in await self._db.fetch("topic_list")]

    def known_topics(self) -> frozenset[str] | None:
        return self._mem.topics if self._mem.trusted else None

    async def topic_names(self) -> frozenset[str]:
        known = self.known_topics()
        if known is not None:
            return known
        names = frozenset(t.name for t in await self.list_topics())
        if self._mem.trusted:
            self._mem.topics = names
        return names
