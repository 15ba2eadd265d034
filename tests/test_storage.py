"""Storage: numbered migrations on an existing database, a newer schema refused, WAL mode."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import generate_key, hash_key
from gateway.errors import StorageError
from gateway.models import HookStatus, PayloadMode, Role, new_secret
from gateway.storage import SCHEMA_VERSION, NewEvent, Storage

BUSY_TIMEOUT_S = 5.0  # Storage's default busy_timeout


async def make_v1_database(path: Path) -> tuple[str, str]:
    """A database as the first release left it: schema 1 with an account, a key and a hook."""
    storage = Storage(str(path), synchronous="normal")
    await storage.open(max_version=1)
    try:
        assert await storage.schema_version() == 1
        now = time.time()
        key = generate_key()
        await storage.create_key(Role.SUBSCRIBER, "acme", hash_key(key), key[-4:], now)
        await storage.put_topics([("contact.created", "made")], now)
        hook = await storage.create_hook(
            account="acme", target_url="https://example.com/h", host="example.com",
            topics=["contact.created"], payload=PayloadMode.SKINNY, ordered=True,
            description="old", headers={"X-A": "1"}, secret=new_secret(), now=now)
    finally:
        await storage.close()
    return hook.id, key


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_schema_version_is_the_last_migration(tmp_path: Path) -> None:
    assert SCHEMA_VERSION >= 2
    storage = Storage(str(tmp_path / "g.db"))
    await storage.open()
    try:
        assert await storage.schema_version() == SCHEMA_VERSION
    finally:
        await storage.close()


async def test_migrating_an_existing_database_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    hook_id, key = await make_v1_database(path)
    assert "hooks" in tables(path)
    assert "deliveries" not in tables(path)

    storage = Storage(str(path))
    await storage.open()
    try:
        assert await storage.schema_version() == SCHEMA_VERSION
        hook = await storage.get_hook(hook_id)
        assert hook is not None
        assert (hook.account, hook.target_url, hook.topics, hook.payload, hook.ordered,
                hook.description, hook.headers, hook.status) == (
            "acme", "https://example.com/h", ("contact.created",), PayloadMode.SKINNY, True,
            "old", {"X-A": "1"}, HookStatus.ACTIVE)
        found = await storage.key_by_hash(hash_key(key))
        assert found is not None and found.account == "acme"
        # ...and the operational topics are added to the catalog.
        assert await storage.topic_names() == frozenset({
            "contact.created", "gateway.hook.disabled", "gateway.hook.removed",
            "gateway.delivery.exhausted", "gateway.test"})
    finally:
        await storage.close()
    assert {"events", "deliveries", "attempts", "idempotency", "portal_sessions"} <= tables(path)


async def test_reopening_a_current_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    hook_id, _ = await make_v1_database(path)
    for _ in range(2):
        storage = Storage(str(path))
        await storage.open()
        try:
            assert await storage.schema_version() == SCHEMA_VERSION
            assert await storage.get_hook(hook_id) is not None
        finally:
            await storage.close()


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    storage = Storage(str(path))
    with pytest.raises(StorageError) as info:
        await storage.open()
    await storage.close()
    message = str(info.value)
    assert str(SCHEMA_VERSION + 5) in message
    assert str(SCHEMA_VERSION) in message
    assert "newer" in message
    # Refusing does not touch it.
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5


async def test_wal_mode_is_on(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open()
    try:
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        await storage.close()


async def test_the_database_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sub" / "g.db"
    storage = Storage(str(path))
    await storage.open()
    try:
        assert await storage.ping()
    finally:
        await storage.close()
    assert path.exists()


async def assert_waits_for_the_lock(task: asyncio.Task[Any], what: str) -> None:
    """While another connection holds the write lock, `task` must wait for it without holding
    up the event loop. Not a benchmark: a loop that waited on the lock would be stuck for the
    whole busy timeout (BUSY_TIMEOUT_S); fifty turns of a free loop take microseconds."""
    started = time.monotonic()
    for _ in range(50):
        await asyncio.sleep(0)
    assert time.monotonic() - started < BUSY_TIMEOUT_S / 2
    assert not task.done(), f"{what} while another connection held the lock"


async def test_a_write_lock_held_elsewhere_never_stalls_the_event_loop(tmp_path: Path) -> None:
    """The delivery loop's transactions may run on the event loop; when another process holds
    the write lock they must wait in the database thread, with the loop still turning."""
    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(storage.release_claims(["dlv_x"]))
        await assert_waits_for_the_lock(task, "went through")
        other.execute("COMMIT")
        await asyncio.wait_for(task, 10)
        # With the lock free, the next one commits (on the loop) and leaves no transaction open.
        await storage.release_claims(["dlv_y"])
        other.execute("BEGIN IMMEDIATE")
        other.execute("COMMIT")
    finally:
        other.close()
        await storage.close()


async def test_checkpoints_keep_the_wal_from_growing(tmp_path: Path) -> None:
    """Automatic checkpoints are off on the writer; the storage runs its own in its thread, so
    the WAL is reused instead of growing with every commit."""
    from gateway.storage.connector import CHECKPOINT_EVERY

    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open()
    try:
        wal = Path(f"{path}-wal")
        big = "x" * 20000
        for i in range(6 * CHECKPOINT_EVERY):
            await storage.put_topics([(f"t.{i % 7}", big)], time.time())
        # Measured: about 3 MB with checkpoints switched off, 0.7 MB with them.
        assert wal.stat().st_size < 1.5 * 1024 * 1024  # noqa: ASYNC240
    finally:
        await storage.close()


@pytest.mark.parametrize("rows", [2000, 10**9], ids=["by-rows", "by-commits-only"])
async def test_checkpoints_follow_the_rows_published_too(tmp_path: Path, rows: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Few commits of large batches grow the WAL fast: a checkpoint also follows the rows
    published (CHECKPOINT_ROWS), not only the commit count."""
    import gateway.storage.connector as connector

    monkeypatch.setattr(connector, "CHECKPOINT_EVERY", 10**9)
    monkeypatch.setattr(connector, "CHECKPOINT_ROWS", rows)
    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open()
    try:
        now = time.time()
        await storage.put_topics([("contact.created", "")], now)
        await storage.create_hook(
            account="acme", target_url="https://a.example/h", host="a.example",
            topics=["contact.created"], payload=PayloadMode.FULL, ordered=False,
            description="", headers={}, secret=new_secret(), now=now)
        data = b'{"pad":"%s"}' % (b"x" * 200)
        for _ in range(120):  # 24,000 rows: 12 checkpoints by rows
            await storage.publish([NewEvent(account="acme", topic="contact.created",
                                            data_json=data, resource_url=None,
                                            idempotency_key=None) for _ in range(100)], now)
        wal = Path(f"{path}-wal").stat().st_size  # noqa: ASYNC240
        # Measured: 2.4 MB by rows (as after 60 batches: it does not grow), 26 MB without.
        if rows == 2000:
            assert wal < 6 * 1024 * 1024
        else:
            assert wal > 12 * 1024 * 1024  # the bound above means something
    finally:
        await storage.close()


async def test_migration_3_puts_the_hook_host_on_pending_deliveries(tmp_path: Path) -> None:
    """Deliveries written before schema 3 get their hook's host; later target changes follow."""
    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open(max_version=2)
    now = time.time()
    try:
        await storage.put_topics([("contact.created", "")], now)
        hook = await storage.create_hook(
            account="acme", target_url="https://a.example/h", host="a.example",
            topics=["contact.created"], payload=PayloadMode.FULL, ordered=False,
            description="", headers={}, secret=new_secret(), now=now)
    finally:
        await storage.close()
    with sqlite3.connect(path) as db:  # a schema-2 publish, written the way 0.1 wrote it
        db.execute("INSERT INTO events VALUES ('evt_1', 'acme', 'contact.created', 1, x'7b7d', "
                   "NULL, ?)", (now,))
        for i, status in enumerate(("pending", "delivered")):
            db.execute("INSERT INTO deliveries (id, event_id, hook_id, account, topic, sequence,"
                       " status, next_attempt_at, created_at, updated_at) VALUES "
                       "(?, 'evt_1', ?, 'acme', 'contact.created', 1, ?, ?, ?, ?)",
                       (f"dlv_{i}", hook.id, status, now, now, now))

    def hosts() -> dict[str, str]:
        with sqlite3.connect(path) as db:
            return dict(db.execute("SELECT id, host FROM deliveries").fetchall())

    await storage.open()
    try:
        assert await storage.schema_version() == SCHEMA_VERSION
        assert hosts() == {"dlv_0": "a.example", "dlv_1": ""}  # only pending rows matter
        await storage.update_hook(hook.id, {"target_url": "https://b.example/h",
                                            "host": "b.example"}, time.time())
        assert hosts() == {"dlv_0": "b.example", "dlv_1": ""}
    finally:
        await storage.close()


async def test_a_key_revoked_by_another_process_is_refused_at_once(tmp_path: Path) -> None:
    """Keys are kept in memory once found; a change made through another Storage on the same
    file (what `gateway keys revoke` is) must reach the next lookup, every time."""
    path = str(tmp_path / "g.db")
    server, cli = Storage(path), Storage(path)
    await server.open()
    await cli.open()
    try:
        for _ in range(20):  # several changes inside one tick of the file-time clock
            key = generate_key()
            rec = await cli.create_key(Role.PUBLISHER, None, hash_key(key), key[-4:], time.time())
            found = await server.key_by_hash(hash_key(key))
            assert found is not None and found.id == rec.id
            assert await server.key_by_hash(hash_key(key)) == found  # now from memory
            assert await cli.revoke_key(rec.id, time.time()) is not None
            assert await server.key_by_hash(hash_key(key)) is None
        # A marker that disappears (cleaned up by hand) also drops what was kept.
        key = generate_key()
        rec = await cli.create_key(Role.ADMIN, None, hash_key(key), key[-4:], time.time())
        assert await server.key_by_hash(hash_key(key)) is not None
        with sqlite3.connect(path) as db:
            db.execute("UPDATE api_keys SET revoked_at = 1 WHERE id = ?", (rec.id,))
        os.remove(f"{path}-keys")
        assert await server.key_by_hash(hash_key(key)) is None
    finally:
        await server.close()
        await cli.close()


async def test_a_large_batch_is_stored_whole_across_statement_chunks(tmp_path: Path) -> None:
    """Rows go to SQLite many per statement, in chunks of 1024, 256, 64, 16, 4 and 1: a batch
    of 1,365 events with two hooks (2,730 deliveries) crosses every chunk size."""
    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open()
    now = time.time()
    try:
        await storage.put_topics([("contact.created", "")], now)
        hooks = [await storage.create_hook(
            account="acme", target_url=f"https://{h}/h", host=h, topics=["contact.*"],
            payload=PayloadMode.FULL, ordered=False, description="", headers={},
            secret=new_secret(), now=now) for h in ("a.example", "b.example")]
        events = [NewEvent(account="acme", topic="contact.created", data_json=b'{"i":%d}' % i,
                           resource_url=None, idempotency_key=f"k{i}" if i % 2 else None)
                  for i in range(1365)]
        published = await storage.publish(events, now)
        with sqlite3.connect(path) as db:
            per_hook = dict(db.execute("SELECT host, COUNT(DISTINCT event_id) FROM deliveries "
                                       "GROUP BY host").fetchall())
        assert per_hook == {"a.example": 1365, "b.example": 1365}
        # A hook moved to another host: its next deliveries carry the new one (the hook index
        # publishing reads the host from is rebuilt), the waiting ones follow (migration 3).
        await storage.update_hook(hooks[1].id, {"target_url": "https://c.example/h",
                                                "host": "c.example"}, now)
        await storage.publish(events[:1], now)
    finally:
        await storage.close()
    assert [p.deliveries for p in published] == [2] * 1365
    ids = [p.id for p in published]
    assert ids == sorted(ids) and len(set(ids)) == 1365
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, sequence, data FROM events ORDER BY sequence "
                          "LIMIT 1365").fetchall()
        assert [r[0] for r in rows] == ids
        assert [r[1] for r in rows] == list(range(1, 1366))
        assert [r[2] for r in rows] == [b'{"i":%d}' % i for i in range(1365)]
        per_hook = dict(db.execute("SELECT host, COUNT(DISTINCT event_id) FROM deliveries "
                                   "GROUP BY host").fetchall())
        assert per_hook == {"a.example": 1366, "c.example": 1366}
        assert db.execute("SELECT COUNT(DISTINCT id) FROM deliveries").fetchone()[0] == 2732
        assert db.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0] == 682
        hook_of = dict(db.execute("SELECT host, hook_id FROM deliveries GROUP BY host").fetchall())
        assert hook_of == {"a.example": hooks[0].id, "c.example": hooks[1].id}


async def test_a_publish_waits_for_a_lock_held_elsewhere_without_stalling_the_loop(
        tmp_path: Path) -> None:
    """Publishing runs its statements on the event loop when it can; while another process
    holds the write lock it must wait in the database thread instead, the loop still turning,
    and go through once the lock is free."""
    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await storage.put_topics([("contact.created", "")], time.time())
        other.execute("BEGIN IMMEDIATE")
        event = NewEvent(account="acme", topic="contact.created", data_json=b'{"n":1}',
                         resource_url=None, idempotency_key=None)
        task = asyncio.create_task(storage.publish([event], time.time()))
        await assert_waits_for_the_lock(task, "published")
        other.execute("COMMIT")
        (first,) = await asyncio.wait_for(task, 10)
        # With the lock free the next one goes through on the loop and leaves nothing open.
        (second,) = await storage.publish([event], time.time())
        other.execute("BEGIN IMMEDIATE")
        other.execute("COMMIT")
        rows = other.execute("SELECT id, sequence FROM events ORDER BY sequence").fetchall()
        assert rows == [(first.id, 1), (second.id, 2)]
    finally:
        other.close()
        await storage.close()


async def test_publishes_share_commits_up_to_a_bound_and_wide_fanouts_insert_in_the_thread(
        tmp_path: Path) -> None:
    """Concurrent publishes share commits, but one commit takes at most GROUP_EVENTS events;
    a commit with more rows than INLINE_ROWS (here 18 hooks x 1,000 events) leaves its inserts
    to the database thread. Both ways store every event and delivery, in sequence order."""
    from gateway.storage.events import GROUP_EVENTS, INLINE_ROWS

    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open()
    now = time.time()
    hooks = 18
    per_call = 1000
    calls = GROUP_EVENTS // per_call + 2
    assert per_call * (hooks + 1) > INLINE_ROWS
    try:
        await storage.put_topics([("contact.created", "")], now)
        for h in range(hooks):
            await storage.create_hook(
                account="acme", target_url=f"https://h{h}.example/h", host=f"h{h}.example",
                topics=["contact.*"], payload=PayloadMode.FULL, ordered=False, description="",
                headers={}, secret=new_secret(), now=now)
        before = storage.publish_commits
        answers = await asyncio.gather(*[
            storage.publish([NewEvent(account="acme", topic="contact.created",
                                      data_json=b'{"i":%d}' % (c * per_call + i),
                                      resource_url=None, idempotency_key=None)
                             for i in range(per_call)], now)
            for c in range(calls)])
        commits = storage.publish_commits - before
    finally:
        await storage.close()
    assert 2 <= commits < calls * per_call, commits
    assert all(p.deliveries == hooks and p.due == hooks for ps in answers for p in ps)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT sequence), MIN(sequence), "
                          "MAX(sequence) FROM events").fetchone() == (
            calls * per_call, calls * per_call, 1, calls * per_call)
        # Each call's events are consecutive: a request is never split across commits.
        for ps in answers:
            seqs = [db.execute("SELECT sequence FROM events WHERE id = ?", (p.id,)).fetchone()[0]
                    for p in ps]
            assert seqs == list(range(seqs[0], seqs[0] + per_call))
        assert db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == \
            calls * per_call * hooks
        assert db.execute("SELECT COUNT(DISTINCT hook_id) FROM deliveries").fetchone()[0] == hooks


async def test_claims_and_attempt_records_in_batches_across_statement_chunks(
        tmp_path: Path) -> None:
    """Claim marks and attempt records go to SQLite many rows per statement, like publishing;
    a batch of 37 (16 + 16 + 4 + 1) must mark, record and move on every row, each its own way."""
    from gateway.models import Attempt
    from gateway.outcome import Outcome
    from gateway.storage import AttemptResult, Claim

    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open()
    now = time.time()
    n = 37
    try:
        await storage.put_topics([("contact.created", "")], now)
        await storage.create_hook(
            account="acme", target_url="https://a.example/h", host="a.example",
            topics=["contact.*"], payload=PayloadMode.FULL, ordered=False, description="",
            headers={}, secret=new_secret(), now=now)
        await storage.publish([NewEvent(account="acme", topic="contact.created",
                                        data_json=b'{"i":%d}' % i, resource_url=None,
                                        idempotency_key=None) for i in range(n)], now)
        claimed = await storage.claim_due(Claim(now=now + 1, limit=100, host_room={},
                                                default_room=100))
        assert len(claimed.rows) == n and claimed.exhausted
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT COUNT(*) FROM deliveries WHERE claimed = 1"
                              ).fetchone()[0] == n
        # Nothing left to claim while they are held.
        again = await storage.claim_due(Claim(now=now + 1, limit=100, host_room={},
                                              default_room=100))
        assert again.rows == []
        results = []
        for i, d in enumerate(claimed.rows):
            if i % 3 == 0:
                results.append(AttemptResult(d.id, d.hook_id, Attempt(now + 2, 204, None, 1.5, ""),
                                             Outcome.DELIVERED, None))
            elif i % 3 == 1:
                results.append(AttemptResult(d.id, d.hook_id,
                                             Attempt(now + 2, 500, None, 2.5, f"boom {i}"),
                                             Outcome.RETRY, now + 100 + i))
            else:
                results.append(AttemptResult(d.id, d.hook_id,
                                             Attempt(now + 2, None, "timeout", 3.5, ""),
                                             Outcome.FAILED, None))
        await storage.record_attempts(results, now + 3, disable_after_failures=1000,
                                      disable_after_seconds=1e9)
    finally:
        await storage.close()
    with sqlite3.connect(path) as db:
        rows = {r[0]: r[1:] for r in db.execute(
            "SELECT id, status, attempts, claimed, last_status_code, next_attempt_at, updated_at "
            "FROM deliveries")}
        attempts = {r[0]: r[1:] for r in db.execute(
            "SELECT delivery_id, at, status_code, error, duration_ms, response_excerpt "
            "FROM attempts")}
    assert len(rows) == n and len(attempts) == n
    for i, r in enumerate(results):
        status, count, claimed_flag, code, next_at, updated = rows[r.delivery_id]
        assert (status, count, claimed_flag, code) == (
            r.status.value, 1, 0, r.attempt.status_code), i
        assert next_at == (r.next_attempt_at if r.next_attempt_at is not None else now + 3), i
        assert updated == now + 3
        assert attempts[r.delivery_id] == (now + 2, r.attempt.status_code, r.attempt.error,
                                           r.attempt.duration_ms, r.attempt.response_excerpt), i


async def claim_in_thread(storage: Storage, claim: Any) -> Any:
    """claim_due as it runs while the writer's thread is busy: in that thread."""
    storage.connector.inline = False
    try:
        return await storage.claim_due(claim)
    finally:
        storage.connector.inline = True


async def test_a_claim_in_the_database_thread_reads_what_one_on_the_loop_reads(
        tmp_path: Path) -> None:
    """The claim runs on the event loop when the writer's thread is idle (plain rows) and in
    that thread otherwise (one JSON row): both must hand the delivery loop the same rows, with
    the hook's current URL, headers and secrets, and the event's data byte for byte."""
    from gateway.storage import Claim

    storage = Storage(str(tmp_path / "g.db"))
    await storage.open()
    now = time.time()
    data = [b'{"i":%d,"s":"caf\xc3\xa9 \\"q\\""}' % i for i in range(6)]
    try:
        await storage.put_topics([("contact.created", "")], now)
        hook = await storage.create_hook(
            account="acme", target_url="https://a.example/h", host="a.example",
            topics=["contact.*"], payload=PayloadMode.FULL, ordered=False, description="",
            headers={"X-Tenant": "t1"}, secret=new_secret(), now=now)
        await storage.publish([NewEvent(account="acme", topic="contact.created", data_json=d,
                                        resource_url=None, idempotency_key=None) for d in data],
                              now)

        def spec(limit: int) -> Claim:
            return Claim(now=now + 1, limit=limit, host_room={}, default_room=100)

        on_loop = await storage.claim_due(spec(3))
        in_thread = await claim_in_thread(storage, spec(3))
        assert [d.data_json for d in on_loop.rows + in_thread.rows] == data
        assert not on_loop.exhausted and not in_thread.exhausted
        for a, b in zip(on_loop.rows, in_thread.rows, strict=True):
            assert a._replace(id="", event_id="", sequence=0, data_json=b"") == \
                b._replace(id="", event_id="", sequence=0, data_json=b"")
        assert on_loop.rows[0].headers == {"X-Tenant": "t1"}
        assert on_loop.rows[0].target_url == "https://a.example/h"
        assert on_loop.rows[0].secrets == (hook.secret,)

        # A change to the hook reaches the next claim, on either path.
        await storage.release_claims([d.id for d in on_loop.rows + in_thread.rows])
        fresh = new_secret()
        await storage.rotate_secret(hook.id, fresh, now + 3600, now)
        await storage.update_hook(hook.id, {"target_url": "https://b.example/h",
                                            "headers": {"X-Tenant": "t2"}}, now)
        on_loop = await storage.claim_due(spec(3))
        in_thread = await claim_in_thread(storage, spec(10))
        assert in_thread.exhausted and len(on_loop.rows + in_thread.rows) == len(data)
        for d in on_loop.rows + in_thread.rows:
            assert d.target_url == "https://b.example/h"
            assert d.headers == {"X-Tenant": "t2"}
            assert d.secrets == (fresh, hook.secret)
    finally:
        await storage.close()


async def test_hook_delivery_configs_in_memory_stay_bounded(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims keep each hook's delivery config in memory; across more hooks than the bound, it
    is read again rather than kept, and every claimed row still carries its own hook's URL."""
    import gateway.storage.hooks as hooks_mod
    from gateway.storage import Claim

    monkeypatch.setattr(hooks_mod, "HOOK_CFG_MAX", 4)
    storage = Storage(str(tmp_path / "g.db"))
    await storage.open()
    now = time.time()
    try:
        await storage.put_topics([("contact.created", "")], now)
        for i in range(10):
            await storage.create_hook(
                account="acme", target_url=f"https://h{i}.example/h", host=f"h{i}.example",
                topics=["contact.created"], payload=PayloadMode.FULL, ordered=False,
                description="", headers={"X-Hook": str(i)}, secret=new_secret(), now=now)
        await storage.publish([NewEvent(account="acme", topic="contact.created",
                                        data_json=b"{}", resource_url=None,
                                        idempotency_key=None) for _ in range(3)], now)
        seen = 0
        for _ in range(10):
            got = await storage.claim_due(Claim(now=now + 1, limit=3, host_room={},
                                                default_room=100))
            for d in got.rows:
                assert d.target_url == f"https://{d.host}/h"
                assert d.headers == {"X-Hook": d.host[1:].split(".")[0]}
            seen += len(got.rows)
            assert storage.hook_configs_held <= 4
        assert seen == 30
    finally:
        await storage.close()


async def test_a_claim_past_a_wall_of_full_hosts_rows_goes_host_by_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host at its bound with many due rows at the head of the time-ordered index: a claim
    goes host by host instead of walking past them, and takes what the time-ordered claim
    would: the other hosts' due rows, oldest first, within each host's room and the limit,
    an ordered hook's lowest pending row only, the same on the loop and in the thread."""
    import gateway.storage.claims as claims_mod
    from gateway.storage import Claim

    monkeypatch.setattr(claims_mod, "CLAIM_WALL", 5)
    storage = Storage(str(tmp_path / "g.db"))
    await storage.open()
    now = time.time()
    try:
        await storage.put_topics([("contact.created", "")], now)
        for host, ordered in (("dead.example", False), ("a.example", False),
                              ("b.example", True)):
            await storage.create_hook(
                account="acme", target_url=f"https://{host}/h", host=host,
                topics=["contact.created"], payload=PayloadMode.FULL, ordered=ordered,
                description="", headers={}, secret=new_secret(), now=now)
        for i in range(8):  # each event: one row per host, in time order
            await storage.publish([NewEvent(account="acme", topic="contact.created",
                                            data_json=b'{"i":%d}' % i, resource_url=None,
                                            idempotency_key=None)], now + i / 100)

        def spec(limit: int, room: dict[str, int]) -> Claim:
            return Claim(now=now + 1, limit=limit, host_room={"dead.example": 0, **room},
                         default_room=100)

        def seen(rows: list[Any]) -> list[tuple[str, bytes]]:
            return [(d.host, d.data_json) for d in rows]

        a_rows = [("a.example", b'{"i":%d}' % i) for i in range(8)]
        # Below the wall (4 of the dead host's rows), the claim stays in time order.
        monkeypatch.setattr(claims_mod, "CLAIM_WALL", 9)
        got = await storage.claim_due(spec(100, {}))
        assert storage.claims_by_host == 0
        assert sorted(seen(got.rows)) == sorted([*a_rows, ("b.example", b'{"i":0}')])
        assert got.exhausted
        await storage.release_claims([d.id for d in got.rows])

        monkeypatch.setattr(claims_mod, "CLAIM_WALL", 5)
        got = await storage.claim_due(spec(100, {}))
        assert storage.claims_by_host == 1
        # a.example's first row is the oldest due (the dead host's is skipped): it goes first.
        assert seen(got.rows) == [*a_rows, ("b.example", b'{"i":0}')]
        assert got.exhausted
        await storage.release_claims([d.id for d in got.rows])

        got = await storage.claim_due(spec(100, {"a.example": 3}))
        assert seen(got.rows) == [*a_rows[:3], ("b.example", b'{"i":0}')]
        await storage.release_claims([d.id for d in got.rows])

        got = await storage.claim_due(spec(2, {}))
        assert seen(got.rows) == a_rows[:2] and not got.exhausted
        in_thread = await claim_in_thread(storage, spec(100, {}))
        # Now b.example's row is the oldest due.
        assert seen(in_thread.rows) == [("b.example", b'{"i":0}'), *a_rows[2:]]
        assert storage.claims_by_host == 4
        with sqlite3.connect(tmp_path / "g.db") as db:
            assert db.execute("SELECT host, COUNT(*) FROM deliveries WHERE claimed = 1 "
                              "GROUP BY host ORDER BY host").fetchall() == [
                ("a.example", 8), ("b.example", 1)]
    finally:
        await storage.close()


async def test_list_events_pages_newest_first_with_each_filter(tmp_path: Path) -> None:
    storage = Storage(str(tmp_path / "g.db"))
    await storage.open()
    t0 = 1_700_000_000.0
    try:
        await storage.put_topics([("contact.created", ""), ("contact.deleted", "")], t0)
        ids: list[tuple[str, str, str, float]] = []
        for i in range(7):
            account, topic = ("acme", "globex")[i % 2], ("contact.created", "contact.deleted")[i % 3 == 0]
            pub = await storage.publish([NewEvent(account=account, topic=topic,
                                                  data_json=b'{"i":%d}' % i, resource_url=None,
                                                  idempotency_key=None)], t0 + i)
            ids.append((pub[0].id, account, topic, t0 + i))
        newest_first = [e[0] for e in reversed(ids)]

        page, cursor = await storage.list_events(None, None, None, None, 3, None)
        assert [e.id for e in page] == newest_first[:3] and cursor == newest_first[2]
        page, cursor = await storage.list_events(None, None, None, None, 3, cursor)
        assert [e.id for e in page] == newest_first[3:6]
        page, cursor = await storage.list_events(None, None, None, None, 3, cursor)
        assert [e.id for e in page] == newest_first[6:] and cursor is None

        def want(account: str | None, topic: str | None, since: float | None,
                 until: float | None) -> list[str]:
            return [e[0] for e in reversed(ids)
                    if (account is None or e[1] == account) and (topic is None or e[2] == topic)
                    and (since is None or e[3] >= since) and (until is None or e[3] < until)]

        for args in (("acme", None, None, None), (None, "contact.deleted", None, None),
                     ("globex", "contact.created", None, None), (None, None, t0 + 2, t0 + 5),
                     ("acme", None, t0 + 1, None), (None, None, None, t0 + 1)):
            page, cursor = await storage.list_events(*args, limit=100, cursor=None)
            assert [e.id for e in page] == want(*args), args
            assert cursor is None
        page, _ = await storage.list_events("acme", None, None, None, 1, None)
        assert page[0].data_json == b'{"i":6}' and page[0].account == "acme"
    finally:
        await storage.close()
