"""The PostgreSQL backend's guarantees for several processes, at the storage verbs: two or more
PgStorage objects on one database stand for processes (each has its own pool, listener and
claim owner)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from gateway.errors import StorageError
from gateway.models import Attempt, PayloadMode, Role
from gateway.outcome import Outcome
from gateway.storage import AttemptResult, Claim, NewEvent
from gateway.storage.postgres import PgStorage
from gateway.storage.postgres.connector import SCHEMA_VERSION, migrate
from tests.conftest import wait_until

Open = Callable[..., Awaitable[PgStorage]]


@pytest.fixture
async def open_storage(pg_url: str) -> AsyncIterator[Open]:
    opened: list[PgStorage] = []

    async def make(**kw: float) -> PgStorage:
        s = PgStorage(pg_url, **kw)  # type: ignore[arg-type]
        await s.open()
        opened.append(s)
        return s

    yield make
    for s in opened:
        await s.close()


async def hook(s: PgStorage, ordered: bool = False, host: str = "a.example") -> str:
    h = await s.create_hook(account="acme", target_url=f"https://{host}/x", host=host,
                            topics=["t.x"], payload=PayloadMode.FULL, ordered=ordered,
                            description="", headers={}, secret="whsec_x", now=time.time())
    return h.id


def claim(limit: int = 100, room: int = 100) -> Claim:
    return Claim(now=time.time() + 1, limit=limit, host_room={}, default_room=room)


def ev(n: int = 0, key: str | None = None) -> NewEvent:
    return NewEvent("acme", "t.x", b'{"n": %d}' % n, None, key)


def delivered(d_id: str, hook_id: str) -> AttemptResult:
    return AttemptResult(d_id, hook_id, Attempt(time.time(), 204, None, 1.0, ""), Outcome.DELIVERED,
                         None)


async def test_a_row_is_claimed_by_one_process_at_a_time(open_storage: Open) -> None:
    a, b = await open_storage(), await open_storage()
    await hook(a)
    await a.publish([ev(i) for i in range(50)], time.time())
    got_a, got_b = await asyncio.gather(a.claim_due(claim(30)), b.claim_due(claim(30)))
    ids_a, ids_b = {d.id for d in got_a.rows}, {d.id for d in got_b.rows}
    assert not ids_a & ids_b
    assert len(ids_a | ids_b) == 50


async def test_claims_of_a_process_that_died_come_back_after_the_lease_and_not_before(
        open_storage: Open) -> None:
    dying = await open_storage(claim_lease=1.5)
    await hook(dying)
    await dying.publish([ev(i) for i in range(5)], time.time())
    assert len((await dying.claim_due(claim())).rows) == 5
    await dying.close()  # its pool and renewals end; its claims are neither released nor renewed
    starting = await open_storage()
    assert await starting.reset_claims() == 0  # a starting process resets nobody's claims
    assert (await starting.claim_due(claim())).rows == []

    async def five_back() -> bool:
        return len((await starting.claim_due(claim())).rows) == 5

    await wait_until(five_back, 10, "the dead process's five rows to come back")


async def test_a_live_process_keeps_its_claims_past_the_lease(open_storage: Open) -> None:
    alive = await open_storage(claim_lease=1.0)
    other = await open_storage()
    await hook(alive)
    await alive.publish([ev()], time.time())
    [row] = (await alive.claim_due(claim())).rows
    conn = await asyncpg.connect(alive.url)
    try:
        first_until = await conn.fetchval("SELECT claimed_until FROM deliveries WHERE id = $1",
                                          row.id)

        async def renewed_past_its_first_lease() -> bool:
            until, now = await conn.fetchrow(
                "SELECT claimed_until, EXTRACT(EPOCH FROM clock_timestamp()) FROM deliveries "
                "WHERE id = $1", row.id)
            # The first lease has run out, and the row is leased on: renewed twice or more.
            return bool(now > first_until + 1.0 and until > first_until + 1.0)

        await wait_until(renewed_past_its_first_lease, 10, "the lease renewed past its first end")
        owner = await conn.fetchval("SELECT claimed_by FROM deliveries WHERE id = $1", row.id)
    finally:
        await conn.close()
    assert owner == alive.owner
    assert (await other.claim_due(claim())).rows == []


async def test_a_process_hands_back_only_its_own_claims(open_storage: Open) -> None:
    a, b = await open_storage(), await open_storage()
    await hook(a)
    await a.publish([ev()], time.time())
    [row] = (await a.claim_due(claim())).rows
    await b.release_claims([row.id])  # not b's
    assert (await b.claim_due(claim())).rows == []
    await a.release_claims([row.id])
    assert [d.id for d in (await b.claim_due(claim())).rows] == [row.id]


async def test_an_ordered_hook_has_one_delivery_in_flight_across_processes_in_order(
        open_storage: Open) -> None:
    procs = [await open_storage() for _ in range(3)]
    hook_id = await hook(procs[0], ordered=True)
    for i in range(6):
        await procs[i % 3].publish([ev(i)], time.time())
    sent: list[int] = []
    while len(sent) < 6:
        claims = await asyncio.gather(*(p.claim_due(claim()) for p in procs))
        rows = [(p, d) for p, c in zip(procs, claims, strict=True) for d in c.rows]
        assert len(rows) == 1, f"{len(rows)} of an ordered hook's deliveries in flight"
        p, d = rows[0]
        sent.append(d.sequence)
        await p.record_attempts([delivered(d.id, hook_id)], time.time(),
                                disable_after_failures=20, disable_after_seconds=1)
    assert sent == [1, 2, 3, 4, 5, 6]


async def test_sequences_stay_gap_free_with_publishers_in_several_processes(
        open_storage: Open) -> None:
    procs = [await open_storage() for _ in range(3)]
    await hook(procs[0])
    await asyncio.gather(*(procs[i % 3].publish([ev(i), ev(i)], time.time()) for i in range(60)))
    rows = (await procs[0].claim_due(claim(500, room=500))).rows
    assert sorted(d.sequence for d in rows) == list(range(1, 121))


async def test_an_idempotency_key_replays_across_processes(open_storage: Open) -> None:
    a, b = await open_storage(), await open_storage()
    await hook(a)
    first, second = await asyncio.gather(a.publish([ev(1, "k")], time.time()),
                                         b.publish([ev(1, "k")], time.time()))
    assert first[0].id == second[0].id
    assert sorted([first[0].replayed, second[0].replayed]) == [False, True]


async def test_a_hook_created_in_one_process_routes_the_next_publish_in_another(
        open_storage: Open) -> None:
    a, b = await open_storage(), await open_storage()
    await hook(a, host="first.example")
    assert (await b.publish([ev()], time.time()))[0].deliveries == 1  # b's index now holds one
    await hook(a, host="second.example")
    assert (await b.publish([ev()], time.time()))[0].deliveries == 2


async def test_a_revoked_key_is_dropped_from_every_process_memory(open_storage: Open) -> None:
    a, b = await open_storage(), await open_storage()
    key = await a.create_key(Role.PUBLISHER, None, b"h" * 32, "abcd", time.time())
    assert await b.key_by_hash(b"h" * 32) is not None
    assert b.cached_key(b"h" * 32) is not None
    await a.revoke_key(key.id, time.time())
    await wait_until(lambda: b.cached_key(b"h" * 32) is None, 5, "b to drop the key")
    assert await b.key_by_hash(b"h" * 32) is None


async def test_a_publish_in_one_process_wakes_the_others(open_storage: Open) -> None:
    a, b = await open_storage(), await open_storage()
    woken = asyncio.Event()
    b.set_waker(woken.set)
    await hook(a)
    await a.publish([ev()], time.time())
    async with asyncio.timeout(5):
        await woken.wait()


async def test_migrations_run_once_when_processes_start_at_once(pg_empty_url: str) -> None:
    url = pg_empty_url
    versions = await asyncio.gather(*(migrate(url) for _ in range(4)))
    assert versions == [SCHEMA_VERSION] * 4
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT COUNT(*) FROM schema_migrations") == SCHEMA_VERSION
    finally:
        await conn.close()


async def test_a_database_newer_than_the_gateway_is_refused(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", SCHEMA_VERSION + 1)
        with pytest.raises(StorageError, match="newer than this gateway"):
            await migrate(pg_url)
    finally:
        await conn.execute("DELETE FROM schema_migrations WHERE version > $1", SCHEMA_VERSION)
        await conn.close()


async def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StorageError) as err:
        await migrate("postgresql://gateway:s3cret@127.0.0.1:1/none")
    assert "cannot connect" in str(err.value) and "s3cret" not in str(err.value)
