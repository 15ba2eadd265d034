"""Portal sessions: the sign-in links an admin makes for an account, kept by token hash."""

from __future__ import annotations

import hmac
import sqlite3

from gateway.storage.connector import SqliteConnector
from gateway.storage.queries import Q


class PortalStore:
    def __init__(self, db: SqliteConnector) -> None:
        self._db = db

    async def create_portal_session(self, token_hash: bytes, account: str, expires_at: float,
                                    now: float) -> None:
        """Store a portal sign-in link's token, by its hash only, for one account."""
        def tx(c: sqlite3.Connection) -> None:
            c.execute(Q["account_ensure"], (account, now))
            c.execute(Q["portal_session_insert"], (token_hash, account, expires_at, now))

        await self._db.tx(tx)

    async def portal_session(self, token_hash: bytes) -> tuple[str, float] | None:
        """(account, expires_at) of the portal session with this token hash, expired or not;
        None when there is none. The caller compares expires_at with its clock."""
        for row in await self._db.read(Q["portal_session_get"], (token_hash,)):
            if hmac.compare_digest(row[0], token_hash):
                return row[1], row[2]
        return None

    async def delete_portal_session(self, token_hash: bytes) -> None:
        await self._db.tx(lambda c: c.execute(Q["portal_session_delete"], (token_hash,)))

    async def purge_portal_sessions(self, now: float) -> int:
        """Forget the sessions that expired by now; how many."""
        return await self._db.tx(
            lambda c: c.execute(Q["portal_session_purge"], (now,)).rowcount)
