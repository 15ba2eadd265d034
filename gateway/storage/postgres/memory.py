"""What a PostgreSQL-backed process keeps in memory, and how the other processes' news drops it.

Keys and topics are kept until a notification from whichever process changed them; while the
listener is down nothing is kept (a revocation would go unheard). Each account's routing index
carries the account's hooks_version it was read at: publishing reads that version in the
statement that locks the account, and reads the index again when it moved, so routing never
depends on a notification arriving in time. Hook secrets are never kept: a claim reads them
with its rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import orjson

from gateway.models import ApiKey, HookStatus
from gateway.routing import Route, RouteIndex
from gateway.storage.postgres.connector import Conn, PgConnector, Q, notify

KEYS_MAX = 10000  # keys kept in memory (only keys that exist: random tokens cannot fill it)


class PgMemory:
    def __init__(self, db: PgConnector) -> None:
        self.db = db
        self.owner = uuid.uuid4().hex  # this process's name on its claims and notifications
        self.keys: dict[bytes, ApiKey] = {}
        self.keys_epoch = 0  # bumped on every key change heard: a read across one is not kept
        self.topics: frozenset[str] | None = None
        self.index: dict[str, tuple[int, RouteIndex]] = {}  # account → (hooks_version, index)
        self.held: set[str] = set()  # rows this process has claimed and not recorded yet
        self.waker: Callable[[], None] = lambda: None

    @property
    def trusted(self) -> bool:
        """Whether what is kept can be used: only while every change would be heard."""
        return self.db.listening

    def notice(self, what: str) -> str:
        """The payload that says `what` changed, from this process."""
        return f"{what} {self.owner}"

    async def announce(self, c: Conn, what: str) -> None:
        """Tell every other process, on c's commit, that `what` changed ("due": new work)."""
        await notify(c, self.notice(what))

    def heard(self, payload: str) -> None:
        what, _, sender = payload.partition(" ")
        if sender == self.owner:
            # This process acted on its own change already (and a wake-up coming back late
            # would only cost a claim transaction).
            return
        if what == "due":
            self.waker()
            return
        if what in ("keys", "*"):
            self.keys.clear()
            self.keys_epoch += 1
        if what in ("topics", "*"):
            self.topics = None
        if what == "*":
            self.index.clear()
            self.waker()

    def lost(self) -> None:
        self.heard("*")

    async def index_for(self, c: Conn, account: str, version: int) -> RouteIndex:
        held = self.index.get(account)
        if held is not None and held[0] == version:
            return held[1]
        idx = RouteIndex()
        for row in await c.fetch(Q["hook_index_account"], account):
            # Only the account's own hooks: an admin hook of every account ("*") is not routed
            # on PostgreSQL yet (its changes would need every account's version bumped).
            idx.add(Route(row[0], row[2] != HookStatus.ACTIVE.value, row[3], account),
                    orjson.loads(row[1]))
        self.index[account] = (version, idx)
        return idx

    async def hooks_changed(self, c: Conn, account: str) -> None:
        """In a transaction that changes one of the account's hooks."""
        await c.execute(Q["account_hooks_changed"], account)
        self.index.pop(account, None)
