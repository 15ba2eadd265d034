"""The connector drives aiosqlite below its public API; these fail loudly when a release of
aiosqlite changes what it relies on (pyproject pins the range it was checked with)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import aiosqlite

from gateway.storage import Storage


async def test_aiosqlite_still_has_what_the_connector_uses(tmp_path: Path) -> None:
    conn = await aiosqlite.connect(str(tmp_path / "a.db"), isolation_level=None,
                                   check_same_thread=False)
    try:
        # _conn: the sqlite3 connection itself, used inline on the event loop.
        assert isinstance(conn._conn, sqlite3.Connection)
        # _running and _connection: whether queued work will still run.
        assert conn._running is True and conn._connection is conn._conn
        # _execute: queue a function on aiosqlite's own thread, in order, and await its result.
        order: list[int] = []

        def step(i: int) -> str:
            order.append(i)
            return threading.current_thread().name

        names = await asyncio.gather(*(conn._execute(step, i) for i in range(5)))
        assert order == list(range(5))
        assert all(n != threading.current_thread().name for n in names)
        assert len(set(names)) == 1
    finally:
        await conn.close()
    assert not (conn._running and conn._connection is not None)


async def test_a_write_after_close_is_refused_not_lost_in_the_queue(tmp_path: Path) -> None:
    """run() on a closed connector raises at once (it would otherwise wait forever)."""
    storage = Storage(str(tmp_path / "g.db"))
    await storage.open()
    await storage.close()
    try:
        await storage.put_topics([("a.b", "")], 0.0)
    except Exception as exc:
        assert "not open" in str(exc)
    else:
        raise AssertionError("a write on a closed storage succeeded")


async def test_writes_run_inline_and_in_the_thread_alike(tmp_path: Path) -> None:
    """The same write through either path stores the same thing."""
    for inline in (True, False):
        storage = Storage(str(tmp_path / f"{inline}.db"), inline=inline)
        await storage.open()
        try:
            await storage.put_topics([("a.b", "x")], 1.0)
            await storage.reset_claims()  # relaxed: inline when allowed
            # (Beside the operational topics every catalog holds.)
            assert [t.name for t in await storage.list_topics()
                    if not t.name.startswith("gateway.")] == ["a.b"]
        finally:
            await storage.close()
