"""Hooks and the topic catalog, and what publishing and claims keep in memory of the hooks."""

from __future__ import annotations

import sqlite3
from collections import ChainMap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from gateway.models import Hook, HookStatus, PayloadMode, Topic, new_id
from gateway.routing import Route, RouteIndex
from gateway.storage import rows
from gateway.storage.connector import SqliteConnector, execute_rows
from gateway.storage.queries import Q
from gateway.storage.rows import HookConfig

HOOK_CFG_MAX = 1000  # hooks whose delivery config claims keep in memory (~800 bytes each)
# The account of an admin hook that receives the events of every account (API.md).
STAR_ACCOUNT = "*"


class HookMemory:
    """Each account's routing index (publishing) and each hook's delivery config (claims).
    Read and dropped only inside writer transactions, so publishing never routes with a stale
    view of the hooks, nor a claim sends with a stale secret or URL."""

    def __init__(self) -> None:
        self.index: dict[str, RouteIndex] = {}
        self.cfg: dict[str, HookConfig] = {}

    def forget(self, account: str) -> None:
        # Hooks change rarely: every hook's delivery config is read again.
        if account == STAR_ACCOUNT:  # its hooks are in every account's index
            self.index.clear()
        else:
            self.index.pop(account, None)
        self.cfg.clear()

    def index_for(self, c: sqlite3.Connection, account: str) -> RouteIndex:
        idx = self.index.get(account)
        if idx is None:
            idx = RouteIndex()
            for row in c.execute(Q["hook_index_account"], (account,)):
                idx.add(Route(row[0], row[2] != HookStatus.ACTIVE.value, row[3], row[4]),
                        orjson.loads(row[1]))
            self.index[account] = idx
        return idx

    def configs(self, c: sqlite3.Connection, hook_ids: set[str]) -> Mapping[str, HookConfig]:
        """What the claim's hooks need, from memory or read now (and kept, up to the bound)."""
        cfgs = self.cfg
        missing = [h for h in hook_ids if h not in cfgs]
        if not missing:
            return cfgs
        fetched = dict(map(rows.hook_config,
                           c.execute(Q["hook_delivery_config"], (orjson.dumps(missing).decode(),))))
        if len(cfgs) + len(fetched) > HOOK_CFG_MAX:
            # Deliveries across more hooks than memory keeps (a backlog over 100,000 of them):
            # these are read for this claim only, as the join did, and memory stays bounded.
            return ChainMap(fetched, cfgs)
        cfgs.update(fetched)
        return cfgs

    @property
    def configs_held(self) -> int:
        return len(self.cfg)


class TopicStore:
    def __init__(self, db: SqliteConnector) -> None:
        self._db = db
        self._topics: frozenset[str] | None = None

    async def put_topics(self, topics: Iterable[tuple[str, str]], now: float) -> list[bool]:
        """Create or update topics; for each, whether it was new."""
        items = list(topics)

        def tx(c: sqlite3.Connection) -> list[bool]:
            created = []
            for name, description in items:
                created.append(c.execute(Q["topic_exists"], (name,)).fetchone() is None)
                c.execute(Q["topic_upsert"], (name, description, now, now))
            return created

        out = await self._db.tx(tx)
        self._topics = None
        return out

    async def list_topics(self) -> list[Topic]:
        return [rows.topic(r) for r in await self._db.read(Q["topic_list"])]

    def known_topics(self) -> frozenset[str] | None:
        """The topic names if they are in memory (no coroutine); None: await topic_names()."""
        return self._topics

    async def topic_names(self) -> frozenset[str]:
        if self._topics is None:
            self._topics = frozenset(t.name for t in await self.list_topics())
        return self._topics


class HookStore:
    def __init__(self, db: SqliteConnector, memory: HookMemory) -> None:
        self._db = db
        self._mem = memory

    async def create_hook(self, *, account: str, target_url: str, host: str, topics: Sequence[str],
                          payload: PayloadMode, ordered: bool, description: str,
                          headers: dict[str, str], secret: str, now: float,
                          hook_id: str | None = None) -> Hook:
        hid = hook_id or new_id("hook", now)

        def tx(c: sqlite3.Connection) -> Hook:
            c.execute(Q["account_ensure"], (account, now))
            c.execute(Q["hook_insert"], (
                hid, account, target_url, host, orjson.dumps(list(topics)).decode(),
                payload.value, int(ordered), description, orjson.dumps(headers).decode(),
                secret, now, now,
            ))
            self._mem.forget(account)
            return rows.hook(c.execute(Q["hook_get"], (hid,)).fetchone())

        return await self._db.tx(tx)

    async def get_hook(self, hook_id: str) -> Hook | None:
        found = await self._db.read(Q["hook_get"], (hook_id,))
        return rows.hook(found[0]) if found else None

    async def list_hooks(self, account: str | None, limit: int,
                         after: str = "") -> tuple[list[Hook], str | None]:
        if account is None:
            found = await self._db.read(Q["hook_list_all"], (after, limit + 1))
        else:
            found = await self._db.read(Q["hook_list_account"], (account, after, limit + 1))
        hooks = [rows.hook(r) for r in found[:limit]]
        return hooks, (hooks[-1].id if len(found) > limit else None)

    async def hook_counts(self) -> dict[str, int]:
        """Hooks by status (deleted ones left out), for the metrics."""
        return {r[0]: int(r[1]) for r in await self._db.read(Q["hooks_by_status"])}

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

        def tx(c: sqlite3.Connection) -> Hook | None:
            row = c.execute(Q["hook_get"], (hook_id,)).fetchone()
            if row is None:
                return None
            if any(v is not None for v in settings):
                c.execute(Q["hook_update"], (*settings, now, hook_id))
            old = HookStatus(row["status"])
            if new_status is not None and new_status is not old:
                c.execute(Q["hook_set_status"], (new_status.value, now, hook_id))
                if new_status is HookStatus.ACTIVE:
                    execute_rows(c, "hook_success", [(hook_id,)])
                    if old is HookStatus.DISABLED:
                        c.execute(Q["hook_resume_deliveries"], (now, now, hook_id))
                    else:
                        c.execute(Q["hook_set_held"], (0, hook_id))
                else:
                    c.execute(Q["hook_set_held"], (1, hook_id))
            self._mem.forget(row["account"])
            return rows.hook(c.execute(Q["hook_get"], (hook_id,)).fetchone())

        return await self._db.tx(tx)

    async def delete_hook(self, hook_id: str, now: float) -> bool:
        """The hook goes at once (its secrets wiped); its waiting deliveries are cancelled,
        and the pruner removes its rows later."""
        def tx(c: sqlite3.Connection) -> bool:
            row = c.execute(Q["hook_get"], (hook_id,)).fetchone()
            if row is None:
                return False
            c.execute(Q["hook_delete"], (now, now, hook_id))
            c.execute(Q["hook_cancel_deliveries"], (now, hook_id))
            self._mem.forget(row["account"])
            return True

        return await self._db.tx(tx)

    async def rotate_secret(self, hook_id: str, secret: str, old_expires_at: float,
                            now: float) -> Hook | None:
        def tx(c: sqlite3.Connection) -> Hook | None:
            c.execute(Q["hook_rotate"], (old_expires_at, secret, now, hook_id))
            self._mem.cfg.pop(hook_id, None)
            row = c.execute(Q["hook_get"], (hook_id,)).fetchone()
            return rows.hook(row) if row else None

        return await self._db.tx(tx)
