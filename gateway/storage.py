"""The only module that touches the database: SQLite through aiosqlite, behind domain verbs."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import os
import re
import sqlite3
import threading
import time
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiosqlite
import orjson

from gateway.errors import StorageError
from gateway.logs import get_logger
from gateway.models import (
    ApiKey,
    Attempt,
    Delivery,
    DeliveryStatus,
    DueDelivery,
    Event,
    Hook,
    HookStatus,
    PayloadMode,
    Role,
    Topic,
    first_id_at,
    iso,
    new_id,
    new_monotonic_ids,
)
from gateway.outcome import Outcome
from gateway.routing import pattern_prefix, prefix_matches

T = TypeVar("T")
# The account of an admin hook that receives the events of every account (API.md).
STAR_ACCOUNT = "*"
log = get_logger("gateway.storage")


class _LockHeld(Exception):
    """Another connection holds the write lock: an inline transaction goes to the thread."""


BUSY_TIMEOUT_MS = 5000
CHECKPOINT_EVERY = 100  # commits between WAL checkpoints (SQLite's automatic one: 1000 pages)
# ...or rows published since the last one, whichever comes first: a commit of a large batch
# adds megabytes to the WAL, and 100 of them grew it to 230 MB, whose checkpoint then held
# the writer for a second. 50,000 rows are ~20 MB of WAL.
CHECKPOINT_ROWS = 50000
# Publishing runs its statements on the event loop (see _tx_split). A commit takes whole
# requests up to GROUP_EVENTS events, and one with more rows (events and deliveries) than
# INLINE_ROWS, a wide fan-out, leaves its inserts to the database thread: slower there, but the
# loop is never held for much more than 0.1 s (16,000 rows on the loop: 93-101 ms measured).
GROUP_EVENTS = 4096
HOOK_CFG_MAX = 1000  # hooks whose delivery config claims keep in memory (~800 bytes each)
INLINE_ROWS = 16384


def _load_sql() -> tuple[dict[str, str], list[tuple[int, str]]]:
    pkg = resources.files("gateway") / "sql"
    queries: dict[str, str] = {}
    text = (pkg / "queries.sql").read_text()
    for chunk in re.split(r"^-- name: ", text, flags=re.M)[1:]:
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


# sqlite3 binds int, float, str and bytearray directly; any other value (bytes, None) first
# goes through its adapter protocol, which, finding no adapter, tries two attributes that do not
# exist: 3,300 instructions a value (callgrind), 7 % of publishing an event in a batch, for
# its data and its empty resource_url. Registered adapters are found by one dict lookup; these
# two are C callables that hand the value back unchanged.
sqlite3.register_adapter(bytes, bytes)
sqlite3.register_adapter(type(None), {}.get)  # type: ignore[arg-type]

Q, MIGRATIONS = _load_sql()
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _of_one_host(sql: str) -> str:
    """claim_candidates for one host with room, on the index by host (see _candidates_by_host):
    the same columns and filters, its parameters in the same places (now, host, limit)."""
    for old, new in (("INDEXED BY deliveries_due\n", "INDEXED BY deliveries_due_by_host\n"),
                     ("d.host NOT IN (SELECT value FROM json_each(?))", "d.host = ?")):
        assert sql.count(old) == 1, f"claim_candidates no longer holds {old!r}"
        sql = sql.replace(old, new)
    return sql


Q["claim_candidates_of_host"] = _of_one_host(Q["claim_candidates"])

# The claim as one row holding a JSON array, for when it runs in the database's thread: there a
# statement step per row would hand the GIL between that thread and the busy event loop once
# per row. On the loop itself the plain rows are cheaper (no JSON built and parsed again).
_CLAIM_COLUMNS = 12


def _claim_json(sql: str) -> str:
    return (
        "WITH claim(" + ", ".join(f"c{i}" for i in range(_CLAIM_COLUMNS)) + ") AS ("
        + sql + ") SELECT json_group_array(json_array("
        # (c9, the event's data, is a BLOB, which JSON cannot hold: as text it is the JSON itself.)
        + ", ".join("CAST(c9 AS TEXT)" if i == 9 else f"c{i}" for i in range(_CLAIM_COLUMNS))
        + ")) FROM claim"
    )


_CLAIM_JSON = {name: _claim_json(Q[name])
               for name in ("claim_candidates", "claim_candidates_of_host")}
# Due rows of hosts at their bound that a claim in time order may walk past before it goes
# host by host instead: walking past one costs ~0.3 µs, going by host a few index seeks a host.
CLAIM_WALL = 1000

# A batch statement's one VALUES row, `(?, ?, …)`, repeated to carry many rows in one statement.
_VALUES_ROW = re.compile(r"VALUES\s*(\([?,\s]*\))")
# Rows per statement, largest first; only sizes within the parameter limit are used (32,766 since
# SQLite 3.32, 999 before).
_CHUNKS = (1024, 256, 64, 16, 4, 1)


@lru_cache(maxsize=64)
def _rows_sql(name: str, rows: int) -> str:
    sql = Q[name]
    m = _VALUES_ROW.search(sql)
    assert m is not None, f"{name} has no VALUES (?, …) row"
    return sql[:m.start(1)] + ", ".join([m.group(1)] * rows) + sql[m.end(1):]


def _execute_rows(c: sqlite3.Connection, name: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Run the named statement once per chunk of rows, not once per row: sqlite3 gives up and
    retakes the GIL on every statement step, so executemany over a batch would hand the GIL
    between the database thread and the busy event loop once per row (a wait of up to the
    5 ms switch interval each time). A multi-row VALUES costs one step per 1,024 rows and, unlike
    a JSON array unpacked in SQL, no parsing: 30 → 17 µs per published event with its delivery."""
    i, n = 0, len(rows)
    if not n:
        return
    most = c.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(rows[0])
    for size in _CHUNKS:
        if n - i < size or size > most:
            continue
        sql = _rows_sql(name, size)
        while n - i >= size:
            c.execute(sql, list(chain.from_iterable(rows[i:i + size])))
            i += size


class NewEvent(NamedTuple):  # made per published event: cheaper than a frozen dataclass
    account: str
    topic: str
    data_json: bytes
    resource_url: str | None
    idempotency_key: str | None


class Published(NamedTuple):  # made per published event: cheaper than a frozen dataclass
    id: str
    deliveries: int
    replayed: bool = False
    # Of the deliveries, those not held by a paused hook: the delivery loop has work only if
    # some publish made any (not part of the API's answer).
    due: int = 0

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "deliveries": self.deliveries}


class AttemptResult(NamedTuple):  # made per attempt: cheaper than a frozen dataclass
    """One finished attempt, as the delivery loop hands it to storage."""

    delivery_id: str
    hook_id: str
    attempt: Attempt
    outcome: Outcome
    next_attempt_at: float | None  # when the outcome is RETRY

    @property
    def status(self) -> DeliveryStatus:
        """The delivery's status after this attempt."""
        return self.outcome.status

    @property
    def hook_failed(self) -> bool:
        """Counts toward disabling the hook."""
        return self.outcome is not Outcome.DELIVERED

    @property
    def gone(self) -> bool:
        """The target answered 410: unsubscribe the hook."""
        return self.outcome is Outcome.GONE


@dataclass(frozen=True, slots=True)
class Claim:
    """What the delivery loop asks for: up to `limit` rows due by `now`; for each callback host
    at most host_room[host] (default_room for a host not listed); none for full_hosts."""

    now: float
    limit: int
    host_room: dict[str, int]
    default_room: int

    @property
    def full_hosts(self) -> tuple[str, ...]:
        return tuple(h for h, n in self.host_room.items() if n <= 0)


@dataclass(frozen=True, slots=True)
class Claimed:
    """Rows claimed; `exhausted`: every due row was seen, so whatever was left behind waits on a
    full host (or an ordered hook's earlier row) and claiming again before one frees is wasted."""

    rows: list[DueDelivery]
    exhausted: bool


@dataclass(slots=True)
class RecordSummary:
    claimed: Claimed | None = None
    disabled_hooks: list[str] = field(default_factory=list)
    removed_hooks: list[str] = field(default_factory=list)
    final: dict[str, int] = field(default_factory=dict)  # final status → count
    published_due: int = 0  # due deliveries of the operational events published


class _HookCfg(NamedTuple):
    """What a delivery needs of its hook, kept in memory between hook changes."""

    target_url: str
    payload: PayloadMode
    headers: dict[str, str]
    secret: str
    old_secret: str | None
    old_secret_expires_at: float | None
    ordered: bool


class _Route(NamedTuple):
    """A hook as publishing sees it: what a new delivery row needs from its hook."""

    hook_id: str
    held: bool  # not active: the row waits without being scanned
    host: str
    account: str  # the hook's: the event's, or "*" for an admin hook of every account


@dataclass(slots=True)
class _HookIndex:
    """Per-account topic routing for publishing, kept in memory: fan-out without a query per event."""

    exact: dict[str, list[_Route]] = field(default_factory=dict)
    prefixes: list[tuple[str, _Route]] = field(default_factory=list)
    memo: dict[str, list[_Route]] = field(default_factory=dict)
    due_memo: dict[str, int] = field(default_factory=dict)

    def add(self, route: _Route, patterns: Iterable[str]) -> None:
        seen: set[str] = set()
        for p in patterns:
            if p in seen:
                continue
            seen.add(p)
            prefix = pattern_prefix(p)
            if prefix is not None:
                self.prefixes.append((prefix, route))
            else:
                self.exact.setdefault(p, []).append(route)

    def match(self, topic: str) -> list[_Route]:
        hit = self.memo.get(topic)
        if hit is None:
            found = {r.hook_id: r for r in self.exact.get(topic, ())}
            for prefix, route in self.prefixes:
                if prefix_matches(prefix, topic):
                    found[route.hook_id] = route
            hit = self.memo[topic] = list(found.values())
        return hit

    def due(self, topic: str) -> int:
        """Of match(topic), the hooks whose deliveries are not held."""
        n = self.due_memo.get(topic)
        if n is None:
            n = self.due_memo[topic] = sum(not r.held for r in self.match(topic))
        return n


RECOVER_BATCH = 1000  # deliveries per transaction of a recovery (a few ms of the writer each)
TEST_TOPIC = "gateway.test"
EXHAUSTED_TOPIC = "gateway.delivery.exhausted"
DISABLED_TOPIC = "gateway.hook.disabled"
REMOVED_TOPIC = "gateway.hook.removed"


class OperationalEvent(NamedTuple):
    """An event the gateway publishes about one of its hooks (API.md, "Operational events")."""

    account: str  # the hook's
    topic: str
    data: dict[str, Any]
    about: str  # the hook it is about: never delivered to it...
    only: _Route | None = None  # ...unless it goes to that hook alone (gateway.test)


def _hook_from_row(row: sqlite3.Row) -> Hook:
    return Hook(
        id=row["id"],
        account=row["account"],
        target_url=row["target_url"],
        host=row["host"],
        topics=tuple(orjson.loads(row["topics"])),
        payload=PayloadMode(row["payload"]),
        ordered=bool(row["ordered"]),
        description=row["description"],
        headers=orjson.loads(row["headers"]),
        status=HookStatus(row["status"]),
        secret=row["secret"],
        old_secret=row["old_secret"],
        old_secret_expires_at=row["old_secret_expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        consecutive_failures=row["consecutive_failures"],
        failing_since=row["failing_since"],
    )


def _key_from_row(row: Sequence[Any]) -> ApiKey:
    return ApiKey(
        id=row[0], role=Role(row[1]), account=row[2], created_at=row[3], revoked_at=row[4],
        last4=row[5],
    )


def _delivery_from_row(row: Sequence[Any]) -> Delivery:
    return Delivery(
        id=row[0], event_id=row[1], hook_id=row[2], account=row[3], topic=row[4],
        status=DeliveryStatus(row[5]), attempts=row[6], next_attempt_at=row[7],
        last_status_code=row[8], created_at=row[9], updated_at=row[10],
    )


_PAYLOAD = {m.value: m for m in PayloadMode}


class Storage:
    """SQLite in WAL mode: one writer connection whose work runs as whole transactions in
    aiosqlite's thread, and one reader connection, so reads never wait behind a write."""

    def __init__(self, path: str, *, synchronous: str = "full", idempotency_ttl: float = 86400):
        self.path = path
        self._synchronous = synchronous
        self._idem_ttl = idempotency_ttl
        self._w: aiosqlite.Connection | None = None
        self._probe: sqlite3.Connection | None = None
        self._r: aiosqlite.Connection | None = None
        self._topics: frozenset[str] | None = None
        self._hook_index: dict[str, _HookIndex] = {}
        # Hook id → what its deliveries need, for claims. Like the index, read and dropped only
        # inside writer transactions, so a claim never sees a hook older than its own snapshot.
        self._hook_cfg: dict[str, _HookCfg] = {}
        self._loop_thread = 0  # the event loop's thread: writer transactions there run inline
        self._pending: list[tuple[list[NewEvent], float, asyncio.Future[list[Published]]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Publishing transactions committed: fewer than publish calls when group commit works.
        self.publish_commits = 0
        # Claiming transactions run: an idle or blocked delivery loop must not keep adding to it.
        self.claim_transactions = 0
        self.claims_by_host = 0  # claims that went host by host past a wall of full hosts' rows
        # Work handed to the writer's thread and not finished there yet (counted down in that
        # thread, so a cancelled caller cannot make it look idle while it still runs).
        self._in_thread = 0
        self._in_thread_lock = threading.Lock()
        self._commits_since_checkpoint = 0
        self._rows_since_checkpoint = 0
        self._checkpointing: asyncio.Task[None] | None = None
        self._ckpt: sqlite3.Connection | None = None  # checkpoints, off the writer's thread
        # Keys found by hash, valid while the key-change marker file is unchanged (see
        # key_by_hash). Only keys that exist are kept, so random tokens cannot fill it.
        self._keys: dict[bytes, ApiKey] = {}
        self._keys_seen: tuple[int, int, int] | None = None
        self._keys_marker = None if path == ":memory:" else f"{path}-keys"

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self, *, max_version: int | None = None) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._loop_thread = threading.get_ident()
        try:
            # Used from the event loop too (see _tx), never at the same time as its thread.
            self._w = await aiosqlite.connect(self.path, isolation_level=None,
                                              check_same_thread=False)
            await self._run(self._prepare_writer)
            await self._run(lambda c: self._migrate(c, max_version))
            self._r = await aiosqlite.connect(self.path, isolation_level=None)
            self._r.row_factory = sqlite3.Row
            await self._r.execute("PRAGMA busy_timeout = 5000")
            await self._r.execute("PRAGMA query_only = 1")
            # Every request looks its key up: an index seek of a few microseconds, cheaper
            # made here on the event loop than the thread hop it would take on self._r. WAL
            # readers do not wait for writers, so this does not block behind a commit.
            self._probe = sqlite3.connect(self.path, isolation_level=None)
            self._probe.row_factory = sqlite3.Row
            self._probe.execute("PRAGMA busy_timeout = 100")
            self._probe.execute("PRAGMA query_only = 1")
            if self.path != ":memory:":
                # Used by one checkpoint at a time, in a worker thread (see _maybe_checkpoint).
                self._ckpt = sqlite3.connect(self.path, isolation_level=None,
                                             check_same_thread=False)
                self._ckpt.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
        except BaseException as exc:
            # An open connection's thread would keep the process alive after the error.
            await self.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"cannot open database {self.path}: {exc}") from None
            raise

    async def close(self) -> None:
        for task in (self._flusher, self._checkpointing):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        for conn in (self._r, self._w):
            if conn is not None:
                await conn.close()
        self._r = self._w = None
        for side in (self._probe, self._ckpt):
            if side is not None:
                side.close()
        self._probe = self._ckpt = None

    def _prepare_writer(self, c: sqlite3.Connection) -> None:
        c.row_factory = sqlite3.Row
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal" and self.path != ":memory:":
            raise StorageError(f"cannot use WAL journal mode on {self.path} (got {mode})")
        c.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        c.execute("PRAGMA foreign_keys = ON")
        # Checkpoints run in the writer's thread (_maybe_checkpoint), never in a commit that
        # happens to run on the event loop, where copying pages and syncing would stall it.
        c.execute("PRAGMA wal_autocheckpoint = 0")

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
        return await self._run(lambda c: int(c.execute("PRAGMA user_version").fetchone()[0]))

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
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
            if not self._running(conn):
                # Never queued (the connection is closed): call() will not count it down.
                with self._in_thread_lock:
                    self._in_thread -= 1
            raise
        return out

    @staticmethod
    def _running(conn: aiosqlite.Connection) -> bool:
        return bool(conn._running and conn._connection is not None)

    @staticmethod
    def _begin(c: sqlite3.Connection, inline: bool) -> None:
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
            c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

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
    def _finish(c: sqlite3.Connection, tail: Callable[[sqlite3.Connection], None] | None) -> None:
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

    def _count_rows(self, rows: int) -> None:
        self._rows_since_checkpoint += rows
        if self._rows_since_checkpoint >= CHECKPOINT_ROWS:
            self._maybe_checkpoint()

    def _inline_ok(self) -> bool:
        return self._w is not None and self._in_thread == 0

    async def _tx(self, fn: Callable[[sqlite3.Connection], T], *, relaxed: bool = False) -> T:
        """Run fn as one write transaction. `relaxed` is for the delivery loop's bookkeeping
        (claims, attempt records): losing its last commits to a power cut only means a
        delivery is sent again, which at-least-once allows, so it skips the commit's fsync.
        Publishing and the API's writes keep the configured level: their answer promises
        the data is on disk. NORMAL still syncs checkpoints, so it never endangers data that
        an earlier FULL commit made durable."""
        relax = relaxed and self._synchronous == "full"

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
        if relaxed and self._inline_ok():
            # Right here on the event loop while the writer's thread is idle: a claim or a
            # batch of attempt records is a millisecond or two of SQLite, and handing it to
            # the thread cost more (a hop each way, and the GIL passed back and forth while
            # the loop is busy sending). Relaxed commits do not sync.
            assert self._w is not None
            with contextlib.suppress(_LockHeld):
                return run(self._w._conn, inline=True)
        return await self._run(run)

    async def _tx_split(self, fn: Callable[[sqlite3.Connection],
                                           tuple[T, Callable[[sqlite3.Connection], None] | None]]
                        ) -> T:
        """A durable write transaction in two parts. fn runs on the event loop when the
        writer's thread is idle and returns (result, tail); the tail and the COMMIT, with its
        fsync, run in the thread. Each statement run in the thread gives the GIL up and must
        win it back from a busy loop, which takes up to the switch interval (5 ms by default;
        `gateway serve` sets 1 ms): with 5 ms, a publish of a few events spent 4 ms of its
        12 ms commit round waiting so. Here the thread takes the GIL back only once or twice,
        and the large inserts (the tail), where SQLite works for long without the GIL, still
        overlap with the loop. Data is visible to other connections only once COMMIT has
        synced, as with a commit made all in the thread. fn must be bounded (it blocks the
        loop): publishing is, by request size."""
        def whole(c: sqlite3.Connection) -> T:
            self._begin(c, False)
            out, tail = self._body(c, fn)
            self._finish(c, tail)
            return out

        self._count_commit()
        if self._inline_ok():
            assert self._w is not None
            c = self._w._conn
            try:
                self._begin(c, True)
            except _LockHeld:
                return await self._run(whole)
            out, tail = self._body(c, fn)
            await self._run(lambda c: self._finish(c, tail))
            return out
        return await self._run(whole)

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
                await self._run(lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())
            except Exception as exc:  # the next one will try again; nothing is lost meanwhile
                log.warning("checkpoint_failed", error=str(exc))

        self._checkpointing = asyncio.get_running_loop().create_task(checkpoint())

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        assert self._r is not None, "storage is not open"
        return list(await self._r.execute_fetchall(sql, params))

    async def ping(self) -> bool:
        rows = await self._read("SELECT 1")
        return bool(rows and rows[0][0] == 1)

    # -- accounts and keys ---------------------------------------------------------------------

    async def create_key(self, role: Role, account: str | None, key_hash: bytes, last4: str,
                         now: float) -> ApiKey:
        key_id = new_id("key", now)

        def tx(c: sqlite3.Connection) -> None:
            if account is not None:
                c.execute(Q["account_ensure"], (account, now))
            c.execute(Q["key_insert"], (key_id, key_hash, role.value, account, last4, now))

        await self._tx(tx)
        self._keys_changed()
        return ApiKey(key_id, role, account, now, None, last4)

    async def list_keys(self) -> list[ApiKey]:
        return [_key_from_row(r) for r in await self._read(Q["key_list"])]

    async def revoke_key(self, key_id: str, now: float) -> ApiKey | None:
        def tx(c: sqlite3.Connection) -> ApiKey | None:
            c.execute(Q["key_revoke"], (now, key_id))
            row = c.execute(Q["key_by_id"], (key_id,)).fetchone()
            return _key_from_row(row) if row else None

        rec = await self._tx(tx)
        self._keys_changed()
        return rec

    def _keys_changed(self) -> None:
        """Tell every process on this database that keys changed: the marker file is replaced
        (a new inode, so the change shows even within one tick of the file-time clock). Called
        after the commit, so a process that sees the new marker reads the new keys."""
        self._keys.clear()
        if self._keys_marker is None:
            return
        tmp = f"{self._keys_marker}.{os.getpid()}.{threading.get_ident()}"
        try:
            with open(tmp, "w") as f:
                f.write(f"{time.time_ns()}\n")
            os.replace(tmp, self._keys_marker)
        except OSError as exc:
            # Without the marker, other processes would keep a revoked key: fail loudly.
            raise StorageError(f"cannot write {self._keys_marker}: {exc.strerror}") from None

    def _keys_stamp(self) -> tuple[int, int, int] | None:
        if self._keys_marker is None:
            return None
        try:
            st = os.stat(self._keys_marker)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def cached_key(self, key_hash: bytes) -> ApiKey | None:
        """The key, if this process holds it and the marker file has not changed since: the
        request path's check, without a coroutine. None: ask fetch_key."""
        stamp = self._keys_stamp()
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
        try:
            assert self._probe is not None, "storage is not open"
            rows: list[sqlite3.Row] = self._probe.execute(Q["key_by_hash"], (key_hash,)).fetchall()
        except sqlite3.OperationalError:
            rows = await self._read(Q["key_by_hash"], (key_hash,))
        for row in rows:
            if hmac.compare_digest(row["hash"], key_hash):
                key = _key_from_row(row)
                # Read before a change that landed meanwhile: use it this once, do not keep it.
                if self._keys_stamp() == stamp and len(self._keys) < 10000:
                    self._keys[key_hash] = key
                return key
        return None

    # -- topics --------------------------------------------------------------------------------

    async def put_topics(self, topics: Iterable[tuple[str, str]], now: float) -> list[bool]:
        """Create or update topics; for each, whether it was new."""
        items = list(topics)

        def tx(c: sqlite3.Connection) -> list[bool]:
            created = []
            for name, description in items:
                created.append(c.execute(Q["topic_exists"], (name,)).fetchone() is None)
                c.execute(Q["topic_upsert"], (name, description, now, now))
            return created

        out = await self._tx(tx)
        self._topics = None
        return out

    async def list_topics(self) -> list[Topic]:
        return [Topic(r[0], r[1]) for r in await self._read(Q["topic_list"])]

    def known_topics(self) -> frozenset[str] | None:
        """The topic names if they are in memory (no coroutine); None: await topic_names()."""
        return self._topics

    async def topic_names(self) -> frozenset[str]:
        if self._topics is None:
            self._topics = frozenset(t.name for t in await self.list_topics())
        return self._topics

    # -- hooks ---------------------------------------------------------------------------------

    def _forget_hooks(self, account: str) -> None:
        # Only ever called inside a writer transaction, like every read of the index, so
        # publishing never routes with a stale view of the hooks, nor claims with a stale
        # secret or URL. Hooks change rarely: every hook's delivery config is read again.
        if account == STAR_ACCOUNT:  # its hooks are in every account's index
            self._hook_index.clear()
        else:
            self._hook_index.pop(account, None)
        self._hook_cfg.clear()

    def _index_for(self, c: sqlite3.Connection, account: str) -> _HookIndex:
        idx = self._hook_index.get(account)
        if idx is None:
            idx = _HookIndex()
            for row in c.execute(Q["hook_index_account"], (account,)):
                idx.add(_Route(row[0], row[2] != HookStatus.ACTIVE.value, row[3], row[4]),
                        orjson.loads(row[1]))
            self._hook_index[account] = idx
        return idx

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
            self._forget_hooks(account)
            return _hook_from_row(c.execute(Q["hook_get"], (hid,)).fetchone())

        return await self._tx(tx)

    async def get_hook(self, hook_id: str) -> Hook | None:
        rows = await self._read(Q["hook_get"], (hook_id,))
        return _hook_from_row(rows[0]) if rows else None

    async def list_hooks(self, account: str | None, limit: int,
                         after: str = "") -> tuple[list[Hook], str | None]:
        if account is None:
            rows = await self._read(Q["hook_list_all"], (after, limit + 1))
        else:
            rows = await self._read(Q["hook_list_account"], (account, after, limit + 1))
        hooks = [_hook_from_row(r) for r in rows[:limit]]
        return hooks, (hooks[-1].id if len(rows) > limit else None)

    async def update_hook(self, hook_id: str, changes: dict[str, Any], now: float) -> Hook | None:
        """Apply validated changes. A status change moves the hook's waiting deliveries with it."""
        cols = {k: v for k, v in changes.items() if k != "status"}
        sets: list[str] = []
        params: list[Any] = []
        for k, v in cols.items():
            if k in ("topics", "headers"):
                v = orjson.dumps(v).decode()
            elif k == "ordered":
                v = int(v)
            elif k == "payload":
                v = PayloadMode(v).value
            sets.append(f"{k} = ?")
            params.append(v)
        new_status: HookStatus | None = changes.get("status")

        def tx(c: sqlite3.Connection) -> Hook | None:
            row = c.execute(Q["hook_get"], (hook_id,)).fetchone()
            if row is None:
                return None
            if sets:
                c.execute(
                    f"UPDATE hooks SET {', '.join(sets)}, updated_at = ? WHERE id = ?",
                    (*params, now, hook_id),
                )
            old = HookStatus(row["status"])
            if new_status is not None and new_status is not old:
                c.execute(Q["hook_set_status"], (new_status.value, now, hook_id))
                if new_status is HookStatus.ACTIVE:
                    _execute_rows(c, "hook_success", [(hook_id,)])
                    if old is HookStatus.DISABLED:
                        c.execute(Q["hook_resume_deliveries"], (now, now, hook_id))
                    else:
                        c.execute(Q["hook_set_held"], (0, hook_id))
                else:
                    c.execute(Q["hook_set_held"], (1, hook_id))
            self._forget_hooks(row["account"])
            return _hook_from_row(c.execute(Q["hook_get"], (hook_id,)).fetchone())

        return await self._tx(tx)

    async def delete_hook(self, hook_id: str, now: float) -> bool:
        def tx(c: sqlite3.Connection) -> bool:
            row = c.execute(Q["hook_get"], (hook_id,)).fetchone()
            if row is None:
                return False
            c.execute(Q["hook_delete"], (now, now, hook_id))
            c.execute(Q["hook_cancel_deliveries"], (now, hook_id))
            self._forget_hooks(row["account"])
            return True

        return await self._tx(tx)

    async def rotate_secret(self, hook_id: str, secret: str, old_expires_at: float,
                            now: float) -> Hook | None:
        def tx(c: sqlite3.Connection) -> Hook | None:
            c.execute(Q["hook_rotate"], (old_expires_at, secret, now, hook_id))
            self._hook_cfg.pop(hook_id, None)
            row = c.execute(Q["hook_get"], (hook_id,)).fetchone()
            return _hook_from_row(row) if row else None

        return await self._tx(tx)

    # -- publishing ----------------------------------------------------------------------------

    async def publish(self, events: list[NewEvent], now: float) -> list[Published]:
        """Store events and their deliveries atomically; durable when this returns.

        Calls that arrive while a commit is running wait and share the next one (group commit):
        under load many requests cost one transaction and one fsync, not one each."""
        fut: asyncio.Future[list[Published]] = asyncio.get_running_loop().create_future()
        self._pending.append((events, now, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_publishes())
        return await fut

    async def _flush_publishes(self) -> None:
        while self._pending:
            # One commit takes whole requests up to GROUP_EVENTS events (at least one request),
            # so a commit's statements on the loop stay short; the rest go in the next.
            take, events = 0, 0
            for events_, _, _ in self._pending:
                if take and events + len(events_) > GROUP_EVENTS:
                    break
                take += 1
                events += len(events_)
            batch = self._pending[:take]
            del self._pending[:take]
            try:
                results = await self._tx_split(partial(self._publish_tx, batch=batch))
                self.publish_commits += 1
                # Counted here, on the loop: _publish_tx may run in the database thread.
                self._count_rows(sum(len(ps) + sum(p.deliveries for p in ps) for ps in results))
            except Exception as exc:
                # One bad request must not sink its neighbours: retry each on its own.
                if len(batch) == 1:
                    if not batch[0][2].done():
                        batch[0][2].set_exception(exc)
                    continue
                for item in batch:
                    try:
                        alone = await self._tx_split(partial(self._publish_tx, batch=[item]))
                        self.publish_commits += 1
                        if not item[2].done():
                            item[2].set_result(alone[0])
                    except Exception as one_exc:
                        if not item[2].done():
                            item[2].set_exception(one_exc)
                continue
            for (_, _, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    def _publish_tx(self, c: sqlite3.Connection, batch: list[tuple[list[NewEvent], float, Any]]
                    ) -> tuple[list[list[Published]], Callable[[sqlite3.Connection], None] | None]:
        seqs: dict[str, int] = {}
        fresh_keys: dict[tuple[str, str], Published] = {}
        ev_rows: list[tuple[Any, ...]] = []
        dl_rows: list[tuple[Any, ...]] = []
        idem_rows: list[tuple[Any, ...]] = []
        results: list[list[Published]] = []
        # Ids for every event and every match, made in two runs (replays leave gaps, harmless).
        flat = [ev for events, _, _ in batch for ev in events]
        indexes = [self._index_for(c, ev.account) for ev in flat]
        fanout = [index.match(ev.topic) for index, ev in zip(indexes, flat, strict=True)]
        latest = max(now for _, now, _ in batch)
        eids = iter(new_monotonic_ids("evt", len(fanout), latest))
        dids = iter(new_monotonic_ids("dlv", sum(map(len, fanout)), latest))
        matched = iter(zip(indexes, fanout, strict=True))
        for events, now, _ in batch:
            out: list[Published] = []
            for ev in events:
                index, matches = next(matched)
                if ev.idempotency_key is not None:
                    k = (ev.account, ev.idempotency_key)
                    prior = fresh_keys.get(k)
                    if prior is None:
                        row = c.execute(Q["idempotency_get"],
                                        (ev.account, ev.idempotency_key, now - self._idem_ttl)).fetchone()
                        if row is not None:
                            d = orjson.loads(row[0])
                            prior = Published(d["id"], d["deliveries"], replayed=True)
                    if prior is not None:
                        out.append(Published(prior.id, prior.deliveries, replayed=True))
                        continue
                seq = seqs.get(ev.account)
                if seq is None:
                    c.execute(Q["account_ensure"], (ev.account, now))
                    seq = c.execute(Q["sequence_get"], (ev.account,)).fetchone()[0]
                seq += 1
                seqs[ev.account] = seq
                eid = next(eids)
                ev_rows.append((eid, ev.account, ev.topic, seq, ev.data_json, ev.resource_url, now))
                for hook_id, held, host, hook_account in matches:
                    dl_rows.append((next(dids), eid, hook_id, hook_account, ev.topic, seq,
                                    int(held), now, now, now, host))
                pub = Published(eid, len(matches), False, index.due(ev.topic))
                if ev.idempotency_key is not None:
                    fresh_keys[(ev.account, ev.idempotency_key)] = pub
                    idem_rows.append((ev.account, ev.idempotency_key, orjson.dumps(pub.public()), now))
                out.append(pub)
            results.append(out)
        def insert(c: sqlite3.Connection) -> None:
            for name, rows in (("event_insert", ev_rows), ("delivery_insert", dl_rows),
                               ("idempotency_put", idem_rows)):
                _execute_rows(c, name, rows)
            c.executemany(Q["sequence_set"], [(s, a) for a, s in seqs.items()])

        if len(ev_rows) + len(dl_rows) < INLINE_ROWS:
            insert(c)
            return results, None
        return results, insert

    async def get_event(self, event_id: str) -> tuple[Event, dict[str, int]] | None:
        rows = await self._read(Q["event_get"], (event_id,))
        if not rows:
            return None
        r = rows[0]
        event = Event(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6])
        counts = {row[0]: row[1]
                  for row in await self._read(Q["event_delivery_counts"], (event_id, event_id))}
        return event, counts

    async def purge_idempotency(self, now: float) -> None:
        await self._tx(lambda c: c.execute(Q["idempotency_purge"], (now - self._idem_ttl,)))

    # -- deliveries ----------------------------------------------------------------------------

    async def get_delivery(self, delivery_id: str) -> tuple[Delivery, list[Attempt]] | None:
        rows = await self._read(Q["delivery_get"], (delivery_id,))
        if not rows:
            return None
        attempts = [Attempt(r[0], r[1], r[2], r[3], r[4])
                    for r in await self._read(Q["delivery_attempts"], (delivery_id,))]
        return _delivery_from_row(rows[0]), attempts

    async def list_deliveries(self, hook_id: str, status: DeliveryStatus | None, limit: int,
                              before: str | None) -> tuple[list[Delivery], str | None]:
        st = status.value if status else None
        rows = await self._read(Q["delivery_list"], (hook_id, before or "~", st, st, limit + 1))
        items = [_delivery_from_row(r) for r in rows[:limit]]
        return items, (items[-1].id if len(rows) > limit else None)

    async def retry_delivery(self, delivery_id: str, now: float) -> Delivery | None:
        def tx(c: sqlite3.Connection) -> Delivery | None:
            c.execute(Q["delivery_retry"], (now, now, delivery_id))
            row = c.execute(Q["delivery_get"], (delivery_id,)).fetchone()
            return _delivery_from_row(row) if row else None

        return await self._tx(tx)

    async def reset_claims(self) -> int:
        return await self._tx(lambda c: c.execute(Q["claims_reset"]).rowcount, relaxed=True)

    async def release_claims(self, ids: Sequence[str]) -> None:
        if ids:
            await self._tx(lambda c: c.executemany(Q["claims_release"], [(i,) for i in ids]), relaxed=True)

    def _hook_cfgs(self, c: sqlite3.Connection, hook_ids: set[str]) -> Mapping[str, _HookCfg]:
        """What the claim's hooks need, from memory or read now (and kept, up to the bound)."""
        cfgs = self._hook_cfg
        missing = [h for h in hook_ids if h not in cfgs]
        if not missing:
            return cfgs
        fetched = {
            r[0]: _HookCfg(r[1], _PAYLOAD[r[2]], orjson.loads(r[3]), r[4], r[5], r[6], bool(r[7]))
            for r in c.execute(Q["hook_delivery_config"], (orjson.dumps(missing).decode(),))}
        if len(cfgs) + len(fetched) > HOOK_CFG_MAX:
            # Deliveries across more hooks than memory keeps (a backlog over 100,000 of them):
            # these are read for this claim only, as the join did, and memory stays bounded.
            return ChainMap(fetched, cfgs)
        cfgs.update(fetched)
        return cfgs

    def _candidates(self, c: sqlite3.Connection, name: str, params: tuple[Any, ...]) -> list[Any]:
        if threading.get_ident() == self._loop_thread:
            return c.execute(Q[name], params).fetchall()
        return orjson.loads(c.execute(_CLAIM_JSON[name], params).fetchone()[0])  # type: ignore[no-any-return]

    def _behind_wall(self, c: sqlite3.Connection, full_hosts: Sequence[str], now: float) -> bool:
        """Whether the hosts at their bound hold CLAIM_WALL or more due rows between them."""
        left = CLAIM_WALL
        for host in full_hosts:
            left -= c.execute(Q["due_of_host"], (host, now, left)).fetchone()[0]
            if left <= 0:
                return True
        return False

    def _candidates_by_host(self, c: sqlite3.Connection, claim: Claim,
                            full_hosts: Sequence[str]) -> list[Any]:
        """The claim host by host, hosts with the oldest due row first: none of the full hosts'
        rows is read, however many there are. Costs an index seek or two for every host with
        rows in the due index, which is why it is kept for when a wall stands in the way."""
        now, limit = claim.now, claim.limit
        skip = set(full_hosts)
        hosts = sorted(((first, host) for host, first in c.execute(Q["due_hosts"])
                        if first <= now and host not in skip))
        rows: list[Any] = []
        for _, host in hosts:
            want = min(limit - len(rows), claim.host_room.get(host, claim.default_room))
            if want > 0:
                rows += self._candidates(c, "claim_candidates_of_host", (now, host, want))
            if len(rows) >= limit:
                break
        return rows

    def _claim_tx(self, c: sqlite3.Connection, claim: Claim) -> Claimed:
        now, limit = claim.now, claim.limit
        full_hosts = sorted(claim.full_hosts)
        rows: list[Any]
        if full_hosts and self._behind_wall(c, full_hosts, now):
            rows = self._candidates_by_host(c, claim, full_hosts)
            self.claims_by_host += 1
        else:
            rows = self._candidates(c, "claim_candidates",
                                    (now, orjson.dumps(full_hosts).decode(), limit))
        # (The claim's join with hooks and this read are one transaction: every row's hook is
        # there.)
        cfgs = self._hook_cfgs(c, {r[2] for r in rows})
        taken: list[DueDelivery] = []
        room: dict[str, int] = {}
        # Rows of a host with less room than the limit are passed over here, not in SQL.
        for r in rows:
            host = r[8]
            left = room.get(host)
            if left is None:
                left = claim.host_room.get(host, claim.default_room)
            if left <= 0:
                room[host] = 0
                continue
            room[host] = left - 1
            h = cfgs[r[2]]
            expires = h.old_secret_expires_at
            secrets = (h.secret, h.old_secret) if h.old_secret and expires and now < expires \
                else (h.secret,)
            data = r[9]
            taken.append(DueDelivery(
                id=r[0], event_id=r[1], hook_id=r[2], account=r[3], topic=r[4],
                sequence=r[5], attempts=r[6], manual=bool(r[7]), target_url=h.target_url,
                host=host, payload=h.payload, headers=h.headers, secrets=secrets,
                data_json=data if data.__class__ is bytes else data.encode(),  # (JSON: text)
                resource_url=r[10], event_created_at=r[11] / 1e6, ordered=h.ordered,
            ))
            if len(taken) >= limit:
                break
        if taken:
            _execute_rows(c, "claim_mark", [(d.id,) for d in taken])
        self.claim_transactions += 1
        return Claimed(taken, exhausted=len(rows) < limit)

    async def claim_due(self, claim: Claim) -> Claimed:
        """Claim up to claim.limit due deliveries, at most the room left for each host."""
        return await self._tx(lambda c: self._claim_tx(c, claim), relaxed=True)

    async def next_due_at(self, after: float) -> float | None:
        """When the next unclaimed row falls due, strictly after `after`."""
        rows = await self._read(Q["next_due"], (after,))
        return rows[0][0] if rows else None

    async def due_backlog(self, now: float) -> int:
        rows = await self._read(Q["due_backlog"], (now,))
        return int(rows[0][0])

    async def record_attempts(self, results: Sequence[AttemptResult], now: float, *,
                              disable_after_failures: int, disable_after_seconds: float,
                              then_claim: Claim | None = None) -> RecordSummary:
        """Append attempts, move each delivery on, and keep each hook's failure streak; then,
        in the same transaction, claim the next rows (one commit and one thread hop where a
        busy loop would otherwise spend two)."""
        summary = RecordSummary()

        def tx(c: sqlite3.Connection) -> None:
            _execute_rows(c, "attempt_insert", [
                (r.delivery_id, r.attempt.at, r.attempt.status_code, r.attempt.error,
                 r.attempt.duration_ms, r.attempt.response_excerpt) for r in results])
            _execute_rows(c, "delivery_record", [
                (r.delivery_id, r.attempt.status_code,
                 r.next_attempt_at if r.next_attempt_at is not None else now,
                 r.status.value, now) for r in results])
            exhausted: list[AttemptResult] = []
            for r in results:
                if r.status is not DeliveryStatus.PENDING:
                    summary.final[r.status.value] = summary.final.get(r.status.value, 0) + 1
                    if r.outcome is Outcome.FAILED:
                        exhausted.append(r)
            ops = self._exhausted(c, exhausted) if exhausted else []
            streaks: dict[str, list[AttemptResult]] = {}
            for r in results:
                streaks.setdefault(r.hook_id, []).append(r)
            ok: list[tuple[str]] = []  # hooks whose streak ends in a success: one statement
            for hook_id, rs in streaks.items():
                if any(r.gone for r in rs):
                    st = c.execute(Q["hook_failure_state"], (hook_id,)).fetchone()
                    if st is not None and st["status"] != HookStatus.REMOVED.value:
                        c.execute(Q["hook_set_status"], (HookStatus.REMOVED.value, now, hook_id))
                        n = c.execute(Q["hook_fail_deliveries"], (now, hook_id)).rowcount
                        summary.final["failed"] = summary.final.get("failed", 0) + n
                        summary.removed_hooks.append(hook_id)
                        self._forget_hooks(st["account"])
                        ops.append(OperationalEvent(st["account"], REMOVED_TOPIC, {
                            "hook_id": hook_id, "target_url": st["target_url"]}, hook_id))
                    continue
                last_ok = max((i for i, r in enumerate(rs) if not r.hook_failed), default=-1)
                fails = rs[last_ok + 1:]
                if not fails:
                    ok.append((hook_id,))
                    continue
                st = c.execute(Q["hook_failure_state"], (hook_id,)).fetchone()
                if st is None:
                    continue
                if last_ok >= 0:
                    count, since = len(fails), fails[0].attempt.at
                else:
                    count = st["consecutive_failures"] + len(fails)
                    since = st["failing_since"] if st["failing_since"] is not None \
                        else fails[0].attempt.at
                c.execute(Q["hook_failures"], (count, since, hook_id))
                if (st["status"] == HookStatus.ACTIVE.value and count >= disable_after_failures
                        and now - since >= disable_after_seconds):
                    c.execute(Q["hook_set_status"], (HookStatus.DISABLED.value, now, hook_id))
                    c.execute(Q["hook_set_held"], (1, hook_id))
                    summary.disabled_hooks.append(hook_id)
                    self._forget_hooks(st["account"])
                    ops.append(OperationalEvent(st["account"], DISABLED_TOPIC, {
                        "hook_id": hook_id, "target_url": st["target_url"],
                        "failing_since": iso(since), "failures": count}, hook_id))
            _execute_rows(c, "hook_success", ok)
            if ops:
                # In this transaction: the change and the news of it commit together.
                summary.published_due += sum(p.due for p in self._publish_operational(c, ops, now))

        def record_then_claim(c: sqlite3.Connection) -> None:
            tx(c)
            if then_claim is not None:
                summary.claimed = self._claim_tx(c, then_claim)

        await self._tx(record_then_claim, relaxed=True)
        return summary

    # == Portal sessions, browsing, recovery and operational events (issue 16) ================
    # Kept together so that the storage split can move them into its stores.

    async def create_portal_session(self, token_hash: bytes, account: str, expires_at: float,
                                    now: float) -> None:
        """Store a portal sign-in link's token, by its hash only, for one account."""
        def tx(c: sqlite3.Connection) -> None:
            c.execute(Q["account_ensure"], (account, now))
            c.execute(Q["portal_session_insert"], (token_hash, account, expires_at, now))

        await self._tx(tx)

    async def portal_session(self, token_hash: bytes) -> tuple[str, float] | None:
        """(account, expires_at) of the portal session with this token hash, expired or not;
        None when there is none. The caller compares expires_at with its clock."""
        for row in await self._read(Q["portal_session_get"], (token_hash,)):
            if hmac.compare_digest(row[0], token_hash):
                return row[1], row[2]
        return None

    async def delete_portal_session(self, token_hash: bytes) -> None:
        await self._tx(lambda c: c.execute(Q["portal_session_delete"], (token_hash,)))

    async def purge_portal_sessions(self, now: float) -> int:
        """Forget the sessions that expired by now; how many."""
        return await self._tx(lambda c: c.execute(Q["portal_session_purge"], (now,)).rowcount)

    async def list_events(self, *, account: str | None, topic: str | None,
                          since: float | None, until: float | None, limit: int,
                          before: str | None) -> tuple[list[tuple[Event, dict[str, int]]],
                                                       str | None]:
        """Events newest first, created in [since, until), of one account and one topic when
        given, each with its delivery counts; and the last id when there are more."""
        lowest = first_id_at("evt", since) if since is not None else ""
        rows = await self._read(Q["event_list"], (
            before or "~", lowest, -math.inf if since is None else since,
            math.inf if until is None else until, account, account, topic, topic, limit + 1))
        events = [Event(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6]) for r in rows[:limit]]
        counts: dict[str, dict[str, int]] = {e.id: {} for e in events}
        if events:
            for eid, status, n in await self._read(
                    Q["event_list_counts"], (orjson.dumps([e.id for e in events]).decode(),)):
                counts[eid][status] = n
        return [(e, counts[e.id]) for e in events], (events[-1].id if len(rows) > limit else None)

    async def recover_deliveries(self, hook_id: str, *, since: float, until: float | None,
                                 statuses: Sequence[DeliveryStatus], now: float,
                                 after_batch: Callable[[int], None] | None = None,
                                 batch: int | None = None) -> int:
        """The hook's deliveries created in [since, until) with one of the statuses become
        pending with a fresh set of retries, oldest first, in transactions of `batch` rows
        (RECOVER_BATCH):
        a recovery of 100,000 deliveries never holds the writer (and so publishing and the
        delivery loop) for more than one batch. after_batch(n) runs after each commit."""
        size = batch or RECOVER_BATCH
        wanted = orjson.dumps(sorted(s.value for s in statuses)).decode()
        lowest = first_id_at("dlv", since)
        after = ""
        total = 0
        upper = math.inf if until is None else until

        def tx(c: sqlite3.Connection, after: str) -> tuple[int, str | None]:
            hook = c.execute(Q["hook_route"], (hook_id,)).fetchone()
            if hook is None:  # deleted meanwhile
                return 0, None
            ids = [r[0] for r in c.execute(Q["recover_select"], (
                hook_id, max(after, lowest), since, upper, wanted, size))]
            if not ids:
                return 0, None
            held = int(hook[1] != HookStatus.ACTIVE.value)
            c.execute(Q["recover_update"], (now, now, held, orjson.dumps(ids).decode()))
            return len(ids), ids[-1] if len(ids) == size else None

        while True:
            n, last = await self._tx(partial(tx, after=after))
            total += n
            if n and after_batch is not None:
                after_batch(n)
            if last is None:
                return total
            after = last

    async def publish_test_event(self, hook_id: str, message: str, now: float
                                 ) -> Published | None:
        """A gateway.test event in the hook's account for that hook alone; None when the hook
        does not exist."""
        def tx(c: sqlite3.Connection) -> Published | None:
            hook = c.execute(Q["hook_route"], (hook_id,)).fetchone()
            if hook is None:
                return None
            route = _Route(hook[0], hook[1] != HookStatus.ACTIVE.value, hook[2], hook[3])
            op = OperationalEvent(hook[3], TEST_TOPIC, {"hook_id": hook_id, "message": message},
                                  hook_id, only=route)
            return self._publish_operational(c, [op], now)[0]

        return await self._tx(tx)

    def _publish_operational(self, c: sqlite3.Connection, ops: Sequence[OperationalEvent],
                             now: float) -> list[Published]:
        """Store operational events and their deliveries inside the caller's transaction (the
        one making the change they report). Never to the hook an event is about, unless it is
        for that hook alone (a test)."""
        out: list[Published] = []
        seqs: dict[str, int] = {}
        eids = iter(new_monotonic_ids("evt", len(ops), now))
        for op in ops:
            if op.only is not None:
                routes = [op.only]
            else:
                routes = [r for r in self._index_for(c, op.account).match(op.topic)
                          if r.hook_id != op.about]
            seq = seqs.get(op.account)
            if seq is None:
                c.execute(Q["account_ensure"], (op.account, now))
                seq = c.execute(Q["sequence_get"], (op.account,)).fetchone()[0]
            seq += 1
            seqs[op.account] = seq
            eid = next(eids)
            c.execute(Q["event_insert"], (eid, op.account, op.topic, seq,
                                          orjson.dumps(op.data), None, now))
            dids = new_monotonic_ids("dlv", len(routes), now) if routes else []
            for did, r in zip(dids, routes, strict=True):
                c.execute(Q["delivery_insert"], (did, eid, r.hook_id, r.account, op.topic, seq,
                                                 int(r.held), now, now, now, r.host))
            out.append(Published(eid, len(routes), False, sum(not r.held for r in routes)))
        c.executemany(Q["sequence_set"], [(s, a) for a, s in seqs.items()])
        return out

    def _exhausted(self, c: sqlite3.Connection, results: Sequence[AttemptResult]
                   ) -> list[OperationalEvent]:
        """gateway.delivery.exhausted for each of these (FAILED) results whose delivery did
        fail for good (one cancelled meanwhile keeps that status, see delivery_record)."""
        ops = []
        for r in results:
            row = c.execute(Q["delivery_exhausted"], (r.delivery_id,)).fetchone()
            if row is None or row[7] != DeliveryStatus.FAILED.value:
                continue
            ops.append(OperationalEvent(row[6], EXHAUSTED_TOPIC, {
                "delivery_id": row[0], "hook_id": row[1], "event_id": row[2], "topic": row[3],
                "attempts": row[4], "last_status_code": row[5], "last_error": r.attempt.error,
            }, row[1]))
        return ops

