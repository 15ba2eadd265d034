"""Portal sessions on PostgreSQL: the sign-in links an admin makes for an account, kept by token
hash (as SQLite's storage/portal.py)."""

from __future__ import annotations

import hmac

from gateway.storage.postgres.connector import PgConnector, Q, rowcount


class PortalStore:
    def __init__(self, db: PgConnector) -> None:
        self._db = db

    async def create_portal_session(self, token_hash: bytes, account: str, expires_at: float,
                                    now: float) -> None:
        """Store a portal sign-in link's token, by its hash only, for one account."""
        async with self._db.tx() as c:
            await c.execute(Q["accounts_ensure"], [account], now)
            await c.execute(Q["portal_session_insert"], token_hash, account, expires_at, now)

    async def portal_session(self, token_hash: bytes) -> tuple[str, float] | None:
        """(account, expires_at) of the portal session with this token hash, expired or not;
        None when there is none. The caller compares expires_at with its clock."""
        row = await self._db.fetchrow("portal_session_get", token_hash)
        if row is not None and hmac.compare_digest(bytes(row[0]), token_hash):
            return str(row[1]), float(row[2])
        return None

    async def delete_portal_session(self, token_hash: bytes) -> None:
        async with self._db.tx() as c:
            await c.execute(Q["portal_session_delete"], token_hash)

    async def purge_portal_sessions(self, now: float) -> int:
        """Forget the sessions that expired by now; how many."""
        async with self._db.tx() as c:
            return rowcount(await c.execute(Q["portal_session_purge"], now))
