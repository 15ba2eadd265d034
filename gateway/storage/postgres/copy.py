"""Moving an existing SQLite database into an empty PostgreSQL one: every row of every table, in
one transaction (all or nothing), with COPY. The SQLite file is only read."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import asyncpg

from gateway.errors import StorageError
from gateway.storage.postgres.connector import migrate, redact
from gateway.storage.queries import SCHEMA_VERSION as SQLITE_SCHEMA

# table → (its columns in SQLite, as read; the PostgreSQL columns they go to). A claim does not
# survive the move (the gateway is stopped for it): every delivery arrives unclaimed.
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "accounts": ("name, created_at, last_sequence", ("name", "created_at", "last_sequence")),
    "api_keys": ("id, hash, role, account, last4, created_at, revoked_at",
                 ("id", "hash", "role", "account", "last4", "created_at", "revoked_at")),
    "topics": ("name, description, created_at, updated_at",
               ("name", "description", "created_at", "updated_at")),
    "hooks": ("id, account, target_url, host, topics, payload, ordered, description, headers, "
              "status, secret, old_secret, old_secret_expires_at, created_at, updated_at, "
              "deleted_at, consecutive_failures, failing_since",
              ("id", "account", "target_url", "host", "topics", "payload", "ordered",
               "description", "headers", "status", "secret", "old_secret",
               "old_secret_expires_at", "created_at", "updated_at", "deleted_at",
               "consecutive_failures", "failing_since")),
    "events": ("id, account, topic, sequence, data, resource_url, created_at",
               ("id", "account", "topic", "sequence", "data", "resource_url", "created_at")),
    "idempotency": ("account, key, response, created_at",
                    ("account", "key", "response", "created_at")),
    "deliveries": ("id, event_id, hook_id, account, topic, sequence, status, held, manual, "
                   "attempts, next_attempt_at, last_status_code, created_at, updated_at, host",
                   ("id", "event_id", "hook_id", "account", "topic", "sequence", "status", "held",
                    "manual", "attempts", "next_attempt_at", "last_status_code", "created_at",
                    "updated_at", "host")),
    # In the order they were written (the log of a delivery is read in that order).
    "attempts": ("delivery_id, at, status_code, error, duration_ms, response_excerpt",
                 ("delivery_id", "at", "status_code", "error", "duration_ms",
                  "response_excerpt")),
}
CHUNK = 10000


def _rows(db: sqlite3.Connection, table: str, columns: str) -> Iterator[list[tuple[Any, ...]]]:
    order = " ORDER BY rowid" if table == "attempts" else ""
    cur = db.execute(f"SELECT {columns} FROM {table}{order}")
    while chunk := cur.fetchmany(CHUNK):
        yield [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in chunk]


async def copy_sqlite(path: str, url: str) -> dict[str, int]:
    """Copy the SQLite database at path into the (migrated, empty) PostgreSQL one at url; the
    rows copied per table. Stop the gateway first: the copy is of the file as it is."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read {path}: {exc}") from None
    if version != SQLITE_SCHEMA:
        raise StorageError(f"{path} has schema version {version}; open it once with this "
                           f"gateway (gateway migrate) to bring it to {SQLITE_SCHEMA} first")
    await migrate(url)
    conn = await asyncpg.connect(url)
    copied: dict[str, int] = {}
    try:
        async with conn.transaction():
            for table in TABLES:
                if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                    raise StorageError(f"{redact(url)} is not empty ({table} has rows): the copy "
                                       "goes into a new database only")
            for table, (columns, targets) in TABLES.items():
                n = 0
                for chunk in _rows(db, table, columns):
                    await conn.copy_records_to_table(table, records=chunk, columns=list(targets))
                    n += len(chunk)
                copied[table] = n
    finally:
        await conn.close()
        db.close()
    return copied
