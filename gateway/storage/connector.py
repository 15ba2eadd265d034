"""The SQLite connection and its threads: the only module that touches aiosqlite.

One writer connection, whose transactions run either inline on the event loop (while the
writer's thread is idle: cheaper for the short ones) or in aiosqlite's thread; one reader
connection (WAL: reads never wait behind a write); one probe connection read on the loop (API
keys); one checkpoint connection used from a worker thread. Stores run SQL through tx(),
tx_split() and read(), never through a connection of their own.

aiosqlite is driven below its public API here, and only here: `_execute` (queue a function on
its thread), `_conn` (the sqlite3 connection, used inline on the loop), `_running` and
`_connection` (whether queued work will still run). pyproject pins the versions that have them
and tests/test_connector.py fails when one goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.errors import DatabaseUnavailable, StorageError
from gateway.logs import get_logger
from gateway.storage.queries import MIGRATIONS, ROW_CHUNKS, SCHEMA_VERSION, rows_query

T = TypeVar("T")
Tail = Callable[[sqlite3.Connection], None]
log = get_logger("gateway.storage")

CHECKPOINT_EVERY = 100  # commits between WAL checkpoints (SQLite's automatic one: 1000 pages)
# ...or rows published since the last one, whichever comes first: a commit of a large batch
# adds megabytes to the WAL, and 100 of them grew it to 230 MB, whose checkpoint then held
# the writer for a second. 50,000 rows are ~20 MB of WAL.
CHECKPOINT_ROWS = 50000

# The database thread takes the GIL back from the busy event loop after each statement it
# runs; by default that waits up to 5 ms (the switch interval), during which the requests of
# that commit wait too. 1 ms: single-event ingest +20 %, batches +5 %, delivery unchanged
# (interleaved A/Bs, bench/README.md). tx_split() and execute_rows() keep the hand-overs
# few; this keeps each one short. Set by `gateway serve` (a process-wide setting).
SWITCH_INTERVAL = 0.001


def tune_interpreter() -> None:
    """The interpreter setting the database thread relies on (see SWITCH_INTERVAL)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


# sqlite3 binds int, float, str and bytearray directly; any other value (bytes, None) first
# goes through its adapter protocol, which, finding no adapter, tries two attributes that do not
# exist: 3,300 instructions a value (callgrind), 7 % of publishing an event in a batch, for
# its data and its empty resource_url. Registered adapters are found by one dict lookup; these
# two are C callables that hand the value back unchanged.
sqlite3.register_adapter(bytes, bytes)
sqlite3.register_adapter(type(None), {}.get)  # type: ignore[arg-type]


# SQLite's primary result codes that mean "cannot write now", not "this request is wrong":
# the request is answered 503 and the gateway recovers by itself once writes succeed again.
_UNWRITABLE = {
    5: "locked by another process",  # SQLITE_BUSY, past busy_timeout
    6: "locked",  # SQLITE_LOCKED
    8: "read-only",  # SQLITE_READONLY
    10: "input/output error",  # SQLITE_IOERR (disk full shows as this too, mid-write)
    13: "disk full",  # SQLITE_FULL
    14: "cannot open a file",  # SQLITE_CANTOPEN (e.g. the WAL, on a full disk)
}
RECOVERY_EVERY = 1.0  # seconds between tries to write again while the database cannot
# The write-ahead log is cut back to this size whenever a checkpoint lets it start over (it is
# reused from its start, but never shrinks otherwise: a burst would keep its peak for good).
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024


def unwritable_reason(exc: BaseException) -> str | None:
    """Why exc means the database cannot write now; None for any other error."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return _UNWRITABLE.get(code & 0xFF)
        text = str(exc)
        for words, reason in (("disk is full", "disk full"), ("locked", "locked"),
                              ("readonly", "read-only"), ("disk I/O", "input/output error")):
            if words in text:
                return reason
        return None
    if isinstance(exc, OSError):
        return exc.strerror or "cannot write a file"
    return None


def create_private(path: str) -> None:
    """Create the database file readable by its owner only, if it does not exist: SQLite gives
    its -wal and -shm files the database file's mode, so they are private too (SQLite itself
    would create all three 0644, less the umask)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # (SQLite's own open says why, e.g. a read-only directory)
    os.fchmod(fd, 0o600)  # whatever the umask
    os.close(fd)


class _LockHeld(Exception):
    """Another connection holds the write lock: an inline transaction goes to the thread."""


def execute_rows(c: sqlite3.Connection, name: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Run the named statement once per chunk of rows, not once per row: sqlite3 gives up and
    retakes the GIL on every statement step, so executemany over a batch would hand the GIL
    between the database thread and the busy event loop once per row (a wait of up to the
    switch interval each time). A multi-row VALUES (rows.sql) costs one step per 1,024 rows
    and, unlike a JSON array unpacked in SQL, no parsing: 30 → 17 µs per published event with
    its delivery."""
    i, n = 0, len(rows)
    if not n:
        return
    most = c.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(rows[0])
    for size in ROW_CHUNKS:
        if n - i < size or size > most:
            continue
        sql = rows_query(name, size)
        while n - i >= size:
            c.execute(sql, list(chain.from_iterable(rows[i:i + size])))
            i += size


class SqliteConnector:
    """SQLite in WAL mode: the writer's transactions as whole units of work, reads apart."""

    def __init__(self, path: str, *, synchronous: str = "full", busy_timeout: float = 5.0,
                 inline: bool = True) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = int(busy_timeout * 1000)
        # False: every write runs in the thread (tests compare the two paths).
        self.inline = inline
        self._w: aiosqlite.Connection | None = None
        self.reader: aiosqlite.Connection | None = None
        self._probe: sqlite3.Connection | None = None
        self._ckpt: sqlite3.Connection | None = None  # checkpoints, off the writer's thread
        self._loop_thread = 0  # the event loop's thread: writer transactions there run inline
        # Work handed to the writer's thread and not finished there yet (counted down in that
        # thread, so a cancelled caller cannot make it look idle while it still runs).
        self._in_thread = 0
        self._in_thread_lock = threading.Lock()
        self._commits_since_checkpoint = 0
        self._rows_since_checkpoint = 0
        self._checkpointing: asyncio.Task[None] | None = None
        # Whether writes succeed; while they do not, a task tries again every RECOVERY_EVERY.
        self.writable = True
        self.unwritable_reason = ""
        self._recovery: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self, *, max_version: int | None = None) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            create_private(self.path)
        self._loop_thread = threading.get_ident()
        try:
            # Used from the event loop too (see tx), never at the same time as its thread.
            self._w = await aiosqlite.connect(self.path, isolation_level=None,
                                              check_same_thread=False)
            await self.run(self._prepare_writer)
            await self.run(lambda c: self._migrate(c, max_version))
            self.reader = await aiosqlite.connect(self.path, isolation_level=None)
            self.reader.row_factory = sqlite3.Row
            await self.reader.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            await self.reader.execute("PRAGMA query_only = 1")
            # Every request looks its key up: an index seek of a few microseconds, cheaper
            # made here on the event loop than the thread hop it would take on the reader. WAL
            # readers do not wait for writers, so this does not block behind a commit.
            self._probe = sqlite3.connect(self.path, isolation_level=None)
            self._probe.row_factory = sqlite3.Row
            self._probe.execute("PRAGMA busy_timeout = 100")
            self._probe.execute("PRAGMA query_only = 1")
            if self.path != ":memory:":
                # Used by one checkpoint at a time, in a worker thread (see _maybe_checkpoint).
                self._ckpt = sqlite3.connect(self.path, isolation_level=None,
                                             check_same_thread=False)
                self._ckpt.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        except BaseException as exc:
            # An open connection's thread would keep the process alive after the error.
            await self.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"cannot open database {self.path}: {exc}") from None
            raise

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
            self._recovery = None
        if self._checkpointing is not None:
            await asyncio.gather(self._checkpointing, return_exceptions=True)
        for conn in (self.reader, self._w):
            if conn is not None:
                await conn.close()
        self.reader = self._w = None
        for side in (self._probe, self._ckpt):
            if side is not None:
                side.close()
        self._probe = self._ckpt = None

    @property
    def is_open(self) -> bool:
        return self._w is not None

    def _prepare_writer(self, c: sqlite3.Connection) -> None:
        c.row_factory = sqlite3.Row
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal" and self.path != ":memory:":
            raise StorageError(f"cannot use WAL journal mode on {self.path} (got {mode})")
        c.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        c.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        c.execute("PRAGMA foreign_keys = ON")
        # Checkpoints run in the writer's thread (_maybe_checkpoint), never in a commit that
        # happens to run on the event loop, where copying pages and syncing would stall it.
        c.execute("PRAGMA wal_autocheckpoint = 0")
        c.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        # What an earlier run left in the log goes into the database now, and the log is
        # cut to nothing: on a disk that was full, this is what gives its space back.
        with contextlib.suppress(sqlite3.Error):
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _migrate(self, c: sqlite3.Connection, max_version: int | None) -> None:
        current = c.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise StorageError(
                f"database {self.path} has schema version {current}, newer than this gateway "
                f"understands ({SCHEMA_VERSION}); upgrade the gateway or use another database"
            )
        for version, script in MIGRATIONS:
            if version <= current or (max_version is not None and version > max_version):
                continue
            # executescript commits first; the BEGIN inside makes each migration all-or-nothing.
            c.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")

    async def schema_version(self) -> int:
        return await self.run(lambda c: int(c.execute("PRAGMA user_version").fetchone()[0]))

    # -- running work --------------------------------------------------------------------------

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn on the writer connection in aiosqlite's thread, as one unit of work.

        aiosqlite runs queued functions one at a time on its thread, so a whole transaction
        written as one function cannot interleave with another: no asyncio lock needed, and a
        transaction costs one thread hop instead of one per statement."""
        if self._w is None:
            raise StorageError("storage is not open")
        conn = self._w

        def call() -> T:
            try:
                return fn(conn._conn)
            finally:
                with self._in_thread_lock:
                    self._in_thread -= 1

        with self._in_thread_lock:
            self._in_thread += 1
        try:
            out: T = await conn._execute(call)  # type: ignore[no-untyped-call]
        except BaseException:
            if not (conn._running and conn._connection is not None):
                # Never queued (the connection is closed): call() will not count it down.
                with self._in_thread_lock:
                    self._in_thread -= 1
            raise
        return out

    def on_loop(self) -> bool:
        """Whether the caller runs on the event loop's thread (not the database's)."""
        return threading.get_ident() == self._loop_thread

    def _begin(self, c: sqlite3.Connection, inline: bool) -> None:
        """BEGIN IMMEDIATE. Inline (on the event loop) a write lock held by another process is
        not waited for (busy_timeout 0): _LockHeld says nothing ran and the thread can wait."""
        if not inline:
            c.execute("BEGIN IMMEDIATE")
            return
        c.execute("PRAGMA busy_timeout = 0")
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise _LockHeld from None
            raise
        finally:
            c.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")

    @staticmethod
    def _body(c: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A transaction's statements: fn, rolled back if it fails."""
        try:
            return fn(c)
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    @staticmethod
    def _finish(c: sqlite3.Connection, tail: Tail | None) -> None:
        """The end of a transaction: its tail (if any), then COMMIT; ROLLBACK if either fails."""
        try:
            if tail is not None:
                tail(c)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _count_commit(self) -> None:
        self._commits_since_checkpoint += 1
        if self._commits_since_checkpoint >= CHECKPOINT_EVERY:
            self._maybe_checkpoint()

    def count_rows(self, rows: int) -> None:
        """Rows just committed: a checkpoint follows them too (see CHECKPOINT_ROWS)."""
        self._rows_since_checkpoint += rows
        if self._rows_since_checkpoint >= CHECKPOINT_ROWS:
            self._maybe_checkpoint()

    def _inline_ok(self) -> bool:
        return self.inline and self._w is not None and self._in_thread == 0

    async def tx(self, fn: Callable[[sqlite3.Connection], T], *, relaxed: bool = False,
                 background: bool = False) -> T:
        """Run fn as one write transaction. `relaxed` is for the delivery loop's bookkeeping
        (claims, attempt records): losing its last commits to a power cut only means a
        delivery is sent again, which at-least-once allows, so it skips the commit's fsync.
        Publishing and the API's writes keep the configured level: their answer promises
        the data is on disk. NORMAL still syncs checkpoints, so it never endangers data that
        an earlier FULL commit made durable. `background` (the pruner's deletes) is relaxed
        too, and always runs in the thread: it must not hold the event loop. A transaction
        that fails is rolled back whole; DatabaseUnavailable says the database cannot write."""
        relaxed = relaxed or background
        if relaxed and not self.writable:
            # The delivery loop's and the pruner's work waits while the recovery probe finds
            # out when writes succeed again: on a locked database each would otherwise wait
            # out the busy timeout in turn, in the one writer thread, ahead of the requests.
            raise DatabaseUnavailable(self.unwritable_reason)
        relax = relaxed and self.synchronous == "full"

        def run(c: sqlite3.Connection, inline: bool = False) -> T:
            if relax:
                c.execute("PRAGMA synchronous = NORMAL")
            try:
                self._begin(c, inline)
                out = self._body(c, fn)
                self._finish(c, None)
                return out
            finally:
                if relax:
                    c.execute("PRAGMA synchronous = FULL")

        self._count_commit()
        try:
            if relaxed and not background and self._inline_ok():
                # Right here on the event loop while the writer's thread is idle: a claim or a
                # batch of attempt records is a millisecond or two of SQLite, and handing it to
                # the thread cost more (a hop each way, and the GIL passed back and forth while
                # the loop is busy sending). Relaxed commits do not sync.
                assert self._w is not None
                with contextlib.suppress(_LockHeld):
                    return run(self._w._conn, inline=True)
            return await self.run(run)
        except (sqlite3.Error, OSError) as exc:
            # Nothing of it is stored (rolled back); DatabaseUnavailable if it cannot write.
            raise self._failed(exc) from None

    async def tx_split(self, fn: Callable[[sqlite3.Connection], tuple[T, Tail | None]]) -> T:
        """A durable write transaction in two parts. fn runs on the event loop when the
        writer's thread is idle and returns (result, tail); the tail and the COMMIT, with its
        fsync, run in the thread. Each statement run in the thread gives the GIL up and must
        win it back from a busy loop, which takes up to the switch interval (SWITCH_INTERVAL):
        with 5 ms, a publish of a few events spent 4 ms of its 12 ms commit round waiting so.
        Here the thread takes the GIL back only once or twice, and the large inserts (the
        tail), where SQLite works for long without the GIL, still overlap with the loop. Data
        is visible to other connections only once COMMIT has synced, as with a commit made
        all in the thread. fn must be bounded (it blocks the loop): publishing is, by request
        size."""
        def whole(c: sqlite3.Connection) -> T:
            self._begin(c, False)
            out, tail = self._body(c, fn)
            self._finish(c, tail)
            return out

        self._count_commit()
        try:
            if self._inline_ok():
                assert self._w is not None
                c = self._w._conn
                try:
                    self._begin(c, True)
                except _LockHeld:
                    return await self.run(whole)
                out, tail = self._body(c, fn)
                await self.run(lambda c: self._finish(c, tail))
                return out
            return await self.run(whole)
        except (sqlite3.Error, OSError) as exc:
            raise self._failed(exc) from None

    # -- when the database cannot write --------------------------------------------------------

    def _failed(self, exc: sqlite3.Error | OSError) -> BaseException:
        """The error a failed write transaction raises: DatabaseUnavailable (and the state
        changes, logged once) when the database cannot write; exc itself otherwise."""
        reason = unwritable_reason(exc)
        if reason is None:
            return exc
        if self.writable:
            self.writable = False
            self.unwritable_reason = reason
            log.warning("database_unwritable", reason=reason, error=str(exc),
                        database=self.path)
        if self._recovery is None or self._recovery.done():
            # In a context of its own: not the request's that failed (its ids would be on
            # the database_writable line).
            self._recovery = asyncio.get_running_loop().create_task(
                self._recover(), context=contextvars.Context())
        return DatabaseUnavailable(reason)

    def _recovered(self) -> None:
        self.writable = True
        self.unwritable_reason = ""
        log.info("database_writable", database=self.path)

    def mark_unwritable(self, exc: sqlite3.Error | OSError) -> DatabaseUnavailable | None:
        """For a write outside tx() (the key marker file): the same state change; the error to
        raise, or None when exc does not mean the database cannot write."""
        err = self._failed(exc)
        return err if isinstance(err, DatabaseUnavailable) else None

    def _probe_write(self, c: sqlite3.Connection) -> None:
        """Checkpoint what the log holds back into the database and cut the log to nothing
        (on a disk that was full, that is what frees space), then write one page: the
        schema version, set to what it is."""
        with contextlib.suppress(sqlite3.Error):
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        c.execute("BEGIN IMMEDIATE")
        try:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            c.execute(f"PRAGMA user_version = {int(version)}")
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    async def _recover(self) -> None:
        """While writes fail, try one every RECOVERY_EVERY; the first that succeeds ends it.
        Only this probe says the database is writable again (a claim that happens to fit in
        the log's free pages while publishes do not would make the state flap)."""
        while not self.writable:
            await asyncio.sleep(RECOVERY_EVERY)
            if self._w is None:
                return
            try:
                await self.run(self._probe_write)
            except (sqlite3.Error, OSError) as exc:
                reason = unwritable_reason(exc)
                if reason is not None:
                    self.unwritable_reason = reason
                continue
            if not self.writable:
                self._recovered()

    def _maybe_checkpoint(self) -> None:
        """Move the WAL's pages into the database now and then (automatic checkpoints are
        off, see _prepare_writer). Most of the copying runs on a connection of its own in a
        worker thread, while the writer goes on committing; then a second pass in the writer's
        thread copies what was committed meanwhile. Only a checkpoint that has copied every
        frame lets the next write start the WAL over from its beginning, and one racing a busy
        writer never gets there on its own (the WAL grew past 2.8 MB where the writer's own
        checkpoints kept it under 0.7 MB); run entirely in the writer's thread, it held every
        commit and claim for as long as the copy took (a second, at 230 MB of batches)."""
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        self._commits_since_checkpoint = self._rows_since_checkpoint = 0
        side = self._ckpt

        async def checkpoint() -> None:
            try:
                if side is not None:
                    await asyncio.to_thread(
                        lambda: side.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())
                await self.run(lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())
            except Exception as exc:  # the next one will try again; nothing is lost meanwhile
                log.warning("checkpoint_failed", error=str(exc))

        self._checkpointing = asyncio.get_running_loop().create_task(checkpoint())

    # -- reading -------------------------------------------------------------------------------

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows from the reader connection (in its thread)."""
        if self.reader is None:
            raise StorageError("storage is not open")
        return list(await self.reader.execute_fetchall(sql, params))

    def probe(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row] | None:
        """Rows read right here on the event loop, for a lookup of a few microseconds; None
        when the database cannot answer at once (then read() waits for it)."""
        if self._probe is None:
            raise StorageError("storage is not open")
        try:
            return self._probe.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return None

    async def ping(self) -> bool:
        rows = await self.read("SELECT 1")
        return bool(rows and rows[0][0] == 1)
