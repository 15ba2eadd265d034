"""The portal's storage verbs on PostgreSQL (sessions, delivery counts, the read-only views),
against a real server, and the verbs it does not have yet answering NotSupported (501)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.errors import NotSupported
from gateway.models import Attempt, DeliveryStatus, PayloadMode
from gateway.outcome import Outcome
from gateway.storage import AttemptResult, Claim, NewEvent
from gateway.storage.postgres import PgStorage


@pytest.fixture
async def s(pg_url: str) -> AsyncIterator[PgStorage]:
    storage = PgStorage(pg_url)
    await storage.open()
    yield storage
    await storage.close()


async def hook(s: PgStorage, host: str = "a.example", account: str = "acme") -> str:
    h = await s.create_hook(account=account, target_url=f"https://{host}/x", host=host,
                            topics=["t.x"], payload=PayloadMode.FULL, ordered=False,
                            description="", headers={}, secret="whsec_x", now=time.time())
    return h.id


def ev(n: int = 0) -> NewEvent:
    return NewEvent("acme", "t.x", b'{"n": %d}' % n, None, None)


async def test_a_portal_session_is_found_by_its_hash_until_deleted_or_purged(
        s: PgStorage) -> None:
    now = time.time()
    await s.create_portal_session(b"h" * 32, "acme", now + 60, now)
    await s.create_portal_session(b"o" * 32, "acme", now - 1, now - 100)
    assert await s.portal_session(b"h" * 32) == ("acme", now + 60)
    assert await s.portal_session(b"x" * 32) is None
    assert await s.purge_portal_sessions(now) == 1
    assert await s.portal_session(b"o" * 32) is None
    await s.delete_portal_session(b"h" * 32)
    assert await s.portal_session(b"h" * 32) is None


async def test_delivery_counts_are_each_events_by_status(s: PgStorage) -> None:
    await hook(s, "a.example")
    await hook(s, "b.example")
    first, second = await s.publish([ev(1), ev(2)], time.time())
    counts = await s.delivery_counts([first.id, second.id, "evt_none"])
    assert counts == {first.id: {"pending": 2}, second.id: {"pending": 2}, "evt_none": {}}
    assert counts[first.id] == (await s.get_event(first.id) or (None, {}))[1]


async def test_the_views_count_attempts_failures_backlog_and_accounts(s: PgStorage) -> None:
    start = time.time() - 5
    good, bad = await hook(s, "good.example"), await hook(s, "bad.example")
    await hook(s, "other.example", account="zeta")
    await s.publish([ev(1)], time.time())
    now = time.time()
    rows = (await s.claim_due(Claim(now=now + 1, limit=100, host_room={},
                                    default_room=100))).rows
    results = [AttemptResult(d.id, d.hook_id,
                             Attempt(now, 204 if d.hook_id == good else 503, None, 1.0, ""),
                             Outcome.DELIVERED if d.hook_id == good else Outcome.RETRY,
                             None if d.hook_id == good else now + 600) for d in rows]
    await s.record_attempts(results, now, disable_after_failures=100,
                            disable_after_seconds=86400)

    by_hook = await s.hook_attempts_by_bucket([good, bad], start, 60, "")
    assert sorted((h, ok, failed) for h, _, ok, failed in by_hook) == sorted(
        [(good, 1, 0), (bad, 0, 1)])
    assert await s.attempts_by_bucket(start, 60, 100) == [(0, 1, 1)]
    last = await s.last_failures([good, bad], "")
    assert list(last) == [bad] and last[bad][1] == 503
    assert await s.backlog_by_host(time.time(), 10) == [("bad.example", 1, 0)]
    assert [h.id for h in await s.troubled_hooks(10)] == [bad]
    assert await s.account_summaries(10) == [("acme", 2), ("zeta", 1)]
    assert await s.hook_attempts_by_bucket([], start, 60, "") == []
    assert await s.last_failures([], "") == {}


async def test_a_recovery_makes_failed_deliveries_pending_with_fresh_retries(
        s: PgStorage) -> None:
    h = await hook(s)
    await s.publish([ev(i) for i in range(5)], time.time())
    now = time.time()
    rows = (await s.claim_due(Claim(now=now + 1, limit=100, host_room={},
                                    default_room=100))).rows
    await s.record_attempts([AttemptResult(d.id, h, Attempt(now, 500, None, 1.0, ""),
                                           Outcome.FAILED, None) for d in rows], now,
                            disable_after_failures=100, disable_after_seconds=86400)
    batches: list[int] = []
    n = await s.recover_deliveries(h, since=now - 60, until=None,
                                   statuses=[DeliveryStatus.FAILED], now=time.time(),
                                   after_batch=batches.append, batch=2)
    assert n == 5 and batches == [2, 2, 1]
    again = (await s.claim_due(Claim(now=time.time() + 1, limit=100, host_room={},
                                     default_room=100))).rows
    assert sorted(d.id for d in again) == sorted(d.id for d in rows)
    assert {d.attempts for d in again} == {0}  # the schedule starts over
    got = await s.get_delivery(again[0].id)
    assert got is not None and got[0].attempts == 1  # while every try is still counted
    assert await s.recover_deliveries(h, since=now - 60, until=None,
                                      statuses=[DeliveryStatus.FAILED], now=time.time()) == 0


async def test_what_postgresql_lacks_is_refused_as_not_supported(s: PgStorage) -> None:
    h = await hook(s)
    with pytest.raises(NotSupported) as err:
        await s.publish_test_event(h, "hello", time.time())
    assert err.value.status == 501 and "PostgreSQL" in str(err.value)
    with pytest.raises(NotSupported):
        await hook(s, account="*")


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_recover_works_and_the_test_event_answers_501_over_http_on_postgresql(
        backend: str, start_gateway: Any, receiver: Any) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook = await gw.hook(receiver)
    status, out, _ = await gw.call("POST", f"/v1/hooks/{hook['id']}/recover", gw.subscriber,
                                   json={"since": "2026-01-01T00:00:00Z"})
    assert (status, out) == (202, {"deliveries": 0})
    status, out, resp = await gw.call("POST", f"/v1/hooks/{hook['id']}/test", gw.subscriber)
    assert status == 501, out
    assert out["type"].endswith("/not-supported") and "PostgreSQL" in out["detail"]
    assert resp.content_type == "application/problem+json"
