"""API keys and the accounts they name; keys found by hash are kept in memory per process."""

from __future__ import annotations

import contextlib
import hmac
import os
import sqlite3
import threading
import time

from gateway.errors import StorageError
from gateway.models import ApiKey, Role, new_id
from gateway.storage import rows
from gateway.storage.connector import SqliteConnector
from gateway.storage.queries import Q

KEYS_MAX = 10000  # keys kept in memory (only keys that exist: random tokens cannot fill it)


class KeyStore:
    def __init__(self, db: SqliteConnector) -> None:
        self._db = db
        # Keys found by hash, valid while the key-change marker file is unchanged (see
        # key_by_hash).
        self._keys: dict[bytes, ApiKey] = {}
        self._keys_seen: tuple[int, int, int] | None = None
        self._marker = None if db.path == ":memory:" else f"{db.path}-keys"

    async def create_key(self, role: Role, account: str | None, key_hash: bytes, last4: str,
                         now: float) -> ApiKey:
        key_id = new_id("key", now)

        def tx(c: sqlite3.Connection) -> None:
            if account is not None:
                c.execute(Q["account_ensure"], (account, now))
            c.execute(Q["key_insert"], (key_id, key_hash, role.value, account, last4, now))

        await self._db.tx(tx)
        # No marker change: memory holds only keys found, so a new one is looked up anyway
        # (and once committed, nothing may fail: the caller must get the key it made).
        return ApiKey(key_id, role, account, now, None, last4)

    async def list_keys(self) -> list[ApiKey]:
        return [rows.key(r) for r in await self._db.read(Q["key_list"])]

    async def revoke_key(self, key_id: str, now: float) -> ApiKey | None:
        def tx(c: sqlite3.Connection) -> ApiKey | None:
            c.execute(Q["key_revoke"], (now, key_id))
            row = c.execute(Q["key_by_id"], (key_id,)).fetchone()
            return rows.key(row) if row else None

        rec = await self._db.tx(tx)
        self._changed()
        return rec

    def _changed(self) -> None:
        """Tell every process on this database that keys changed: the marker file is replaced
        (a new inode, so the change shows even within one tick of the file-time clock). Called
        after the commit, so a process that sees the new marker reads the new keys."""
        self._keys.clear()
        if self._marker is None:
            return
        tmp = f"{self._marker}.{os.getpid()}.{threading.get_ident()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                os.write(fd, f"{time.time_ns()}\n".encode())
            finally:
                os.close(fd)
            os.replace(tmp, self._marker)
        except OSError as exc:
            # Without the marker, other processes would keep a revoked key: fail loudly (the
            # revocation is stored; revoking again, once the disk takes writes, rewrites it).
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            unavailable = self._db.mark_unwritable(exc)
            if unavailable is not None:
                raise unavailable from None
            raise StorageError(f"cannot write {self._marker}: {exc.strerror}") from None

    def _stamp(self) -> tuple[int, int, int] | None:
        if self._marker is None:
            return None
        try:
            st = os.stat(self._marker)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def cached_key(self, key_hash: bytes) -> ApiKey | None:
        """The key, if this process holds it and the marker file has not changed since: the
        request path's check, without a coroutine. None: ask fetch_key."""
        stamp = self._stamp()
        if stamp != self._keys_seen:
            self._keys.clear()
            self._keys_seen = stamp
            return None
        return self._keys.get(key_hash)

    async def key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        """Every request looks its key up. A key once found is kept in memory until the marker
        file changes: a stat instead of a query (which waits on the write-ahead log's index
        while a large commit is running). `gateway keys create|revoke` and the keys API replace
        the marker after their commit, so a revoked key is refused from the next request on,
        in this process and any other on the same database."""
        hit = self.cached_key(key_hash)
        return hit if hit is not None else await self.fetch_key(key_hash)

    async def fetch_key(self, key_hash: bytes) -> ApiKey | None:
        """The key from the database, kept if no change landed meanwhile; what key_by_hash
        does once cached_key, just called, had nothing."""
        stamp = self._keys_seen
        found = self._db.probe(Q["key_by_hash"], (key_hash,))
        if found is None:
            found = await self._db.read(Q["key_by_hash"], (key_hash,))
        for row in found:
            if hmac.compare_digest(row["hash"], key_hash):
                key = rows.key(row)
                # Read before a change that landed meanwhile: use it this once, do not keep it.
                if self._stamp() == stamp and len(self._keys) < KEYS_MAX:
                    self._keys[key_hash] = key
                return key
        return None
