"""Which storage backend a config selects: SQLite by default, PostgreSQL when database.url is set."""

from __future__ import annotations

from gateway.config import Config
from gateway.errors import StorageError
from gateway.storage.backend import Backend
from gateway.storage.sqlite import Storage


def make_storage(config: Config) -> Backend:
    """The backend, not opened yet. asyncpg is imported only for PostgreSQL, so the SQLite
    default needs none of it installed."""
    db = config.database
    if not db.url:
        return Storage(db.path, synchronous=db.synchronous,
                       idempotency_ttl=config.server.idempotency_ttl_seconds,
                       busy_timeout=db.busy_timeout_seconds)
    try:
        from gateway.storage.postgres import PgStorage
    except ImportError as exc:
        raise StorageError(f"database.url needs asyncpg ({exc.name} is missing): "
                           "pip install 'gateway[postgres]'") from None
    return PgStorage(db.url, idempotency_ttl=config.server.idempotency_ttl_seconds,
                     claim_lease=config.delivery.claim_lease_seconds)


async def migrate(config: Config) -> tuple[str, int]:
    """Bring the configured database's schema up to date: (backend, schema version)."""
    storage = make_storage(config)
    await storage.open()
    try:
        return ("postgresql" if config.database.url else "sqlite"), await storage.schema_version()
    finally:
        await storage.close()
