"""The PostgreSQL connection: an asyncpg pool, transactions, numbered migrations under an
advisory lock, and one LISTEN connection that carries wake-ups and cache invalidations between
the processes sharing the database."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import asyncpg

from gateway.errors import DatabaseUnavailable, StorageError
from gateway.logs import get_logger

log = get_logger("gateway.storage.postgres")

# What says the database cannot store anything now (a 503, not a 500): the server is gone or
# refuses connections, the disk is full, it is read-only (a standby), or shutting down.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.DiskFullError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)

CHANNEL = "gateway"
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy  # what tx() hands out
# Any constant will do, as long as every gateway uses the same one: the key of the advisory
# lock that lets one process migrate while the others starting beside it wait.
MIGRATE_LOCK = 0x6761746577617921
RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


def _load_sql() -> tuple[dict[str, str], list[tuple[int, str]]]:
    pkg = resources.files("gateway") / "sql" / "postgres"
    queries: dict[str, str] = {}
    for chunk in re.split(r"^-- name: ", (pkg / "queries.sql").read_text(), flags=re.M)[1:]:
        name, _, body = chunk.partition("\n")
        lines = [ln for ln in body.splitlines() if not ln.startswith("--")]
        queries[name.strip()] = "\n".join(lines).strip().rstrip(";")
    migrations = []
    for entry in pkg.iterdir():
        m = re.match(r"^(\d{4})_.*\.sql$", entry.name)
        if m:
            migrations.append((int(m.group(1)), entry.read_text()))
    migrations.sort()
    return queries, migrations


Q, MIGRATIONS = _load_sql()
SCHEMA_VERSION = MIGRATIONS[-1][0]


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StorageError(f"cannot connect to {redact(url)}: {exc}") from None


async def migrate(url: str, max_version: int | None = None) -> int:
    """Bring the schema up to date; returns the version it is at. Safe when several processes
    start at once: they take turns on an advisory lock, and each migration is one transaction
    that records its version, so the second one in finds nothing left to do."""
    conn = await _connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                               "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL"
                               " DEFAULT now())")
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            if current > SCHEMA_VERSION:
                raise StorageError(
                    f"database {redact(url)} has schema version {current}, newer than this "
                    f"gateway understands ({SCHEMA_VERSION}); upgrade the gateway")
            for version, script in MIGRATIONS:
                if version <= current or (max_version is not None and version > max_version):
                    continue
                async with conn.transaction():
                    await conn.execute(script)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                current = version
            return int(current)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK)
    finally:
        await conn.close()


class PgConnector:
    """A pool for statements and transactions, and a listener for the other processes' news.

    `on_notice(payload)` is called for every notification on the channel, this process's own
    included; `on_lost()` when the listener connection drops (notifications may have been
    missed: caches must stop trusting themselves until `on_notice("*")` after the reconnect)."""

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 10) -> None:
        self.url = url
        self._min, self._max = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._on_notice: Callable[[str], None] = lambda payload: None
        self._on_lost: Callable[[], None] = lambda: None
        self._reconnect: asyncio.Task[None] | None = None
        self._closing = False
        self.listening = False
        self.writable = True  # False from a write that could not reach the disk until one does

    async def open(self, on_notice: Callable[[str], None], on_lost: Callable[[], None]) -> None:
        self._on_notice, self._on_lost = on_notice, on_lost
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=self._min, max_size=self._max)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"cannot connect to {redact(self.url)}: {exc}") from None
        await self._listen()

    async def close(self) -> None:
        self._closing = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        self._listener = None
        if self._pool is not None:
            await self._pool.close()
        self._pool = None

    # -- the listener ------------------------------------------------------------------------

    async def _listen(self) -> None:
        conn = await _connect(self.url)
        await conn.add_listener(CHANNEL, self._notified)
        conn.add_termination_listener(self._terminated)
        self._listener = conn
        self.listening = True

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        self._on_notice(str(payload))

    def _terminated(self, conn: Any) -> None:
        self.listening = False
        self._listener = None
        self._on_lost()
        if not self._closing:
            self._reconnect = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        attempt = 0
        while not self._closing:
            await asyncio.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
            attempt += 1
            try:
                await self._listen()
            except StorageError as exc:
                log.warning("listen_reconnect_failed", error=str(exc))
                continue
            # Whatever was announced while nobody listened: assume everything changed.
            self._on_notice("*")
            return

    # -- statements --------------------------------------------------------------------------

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("storage is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[Conn]:
        """One transaction on a connection of the pool: committed when the block ends, rolled
        back if it raises. A database that cannot store anything raises DatabaseUnavailable
        (nothing of the transaction is kept)."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn
        except UNAVAILABLE as exc:
            self.writable = False
            raise DatabaseUnavailable(type(exc).__name__) from None
        self.writable = True

    # Rows as Any: a Record reads by position and by name, as gateway.storage.rows expects.
    async def fetch(self, name: str, *args: Any) -> list[Any]:
        return await self.pool.fetch(Q[name], *args)

    async def fetchrow(self, name: str, *args: Any) -> Any:
        return await self.pool.fetchrow(Q[name], *args)

    async def fetchval(self, name: str, *args: Any) -> Any:
        return await self.pool.fetchval(Q[name], *args)

    async def execute(self, name: str, *args: Any) -> str:
        return await self.pool.execute(Q[name], *args)


async def notify(conn: Conn, payload: str) -> None:
    """Announce `payload` to every process, on the commit of conn's transaction (a rolled-back
    change announces nothing)."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


def rowcount(status: str) -> int:
    """The row count of a command status such as 'UPDATE 3'."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0
