"""Retention: what the pruner deletes and what it keeps, on a real SQLite file; pending never."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.api.common import PRUNER
from gateway.clock import ManualClock
from gateway.models import _B32, Attempt, HookStatus, PayloadMode, new_monotonic_id, new_secret
from gateway.outcome import Outcome
from gateway.storage import AttemptResult, Claim, NewEvent, Storage
from tests.conftest import Gateway, Receiver, wait_until

StartGateway = Callable[..., Awaitable[Gateway]]

KEEP = 3600.0


def ahead() -> float:
    """A start time later than every id made so far in this process. Ids sort by time and the
    pruner finds old rows by them; ids are monotonic, so after a test whose clock ran ahead
    they carry that time, not the wall clock's."""
    last = new_monotonic_id("x", time.time())[2:]
    n = 0
    for ch in last:
        n = n * 32 + _B32.index(ch)
    return max(time.time(), (n >> 80) / 1000) + 10


def ev(i: int) -> NewEvent:
    return NewEvent(account="acme", topic="contact.created", data_json=b'{"i":%d}' % i,
                    resource_url=None, idempotency_key=None)


async def hook(storage: Storage, host: str, now: float, topics: tuple[str, ...] = ("contact.*",)
               ) -> str:
    h = await storage.create_hook(
        account="acme", target_url=f"https://{host}/h", host=host, topics=list(topics),
        payload=PayloadMode.FULL, ordered=False, description="", headers={},
        secret=new_secret(), now=now)
    return h.id


async def settle(storage: Storage, now: float, outcome_by_host: dict[str, Outcome]) -> None:
    """Claim every due delivery and record one attempt each, by its host's outcome."""
    got = await storage.claim_due(Claim(now=now, limit=1000, host_room={}, default_room=1000))
    results = [AttemptResult(d.id, d.hook_id, Attempt(now, 200, None, 1.0, "ok"),
                             outcome_by_host[d.host], now + 100 * KEEP if
                             outcome_by_host[d.host] is Outcome.RETRY else None)
               for d in got.rows if d.host in outcome_by_host]
    await storage.record_attempts(results, now, disable_after_failures=1000,
                                  disable_after_seconds=1e9)
    await storage.release_claims([d.id for d in got.rows if d.host not in outcome_by_host])


def table(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


async def prune_all(storage: Storage, now: float, batch: int) -> dict[str, int]:
    """A whole pass, in steps of `batch`: the totals."""
    total = {"deliveries": 0, "attempts": 0, "events": 0, "hooks": 0, "secrets": 0}
    for _ in range(1000):
        step = await storage.prune(now, KEEP, batch)
        for k in total:
            total[k] += getattr(step, k)
        if not step.more:
            return total
    raise AssertionError("the pass did not end")


async def make_history(storage: Storage, t0: float) -> dict[str, Any]:
    """Old events (at t0) to four hooks: one delivers, one keeps retrying (pending), one fails
    for good, one is deleted later; an old event nobody subscribed to; and recent events (at
    t0 + 2 KEEP) that all deliver."""
    await storage.put_topics([("contact.created", ""), ("billing.paid", "")], t0)
    hooks = {h: await hook(storage, h, t0) for h in
             ("ok.example", "retry.example", "dead.example", "deleted.example")}
    old = [p.id for p in await storage.publish([ev(i) for i in range(7)], t0)]
    lonely = (await storage.publish([NewEvent("acme", "billing.paid", b"{}", None, None)], t0))[0]
    assert lonely.deliveries == 0
    await settle(storage, t0 + 1, {"ok.example": Outcome.DELIVERED,
                                   "retry.example": Outcome.RETRY,
                                   "dead.example": Outcome.FAILED,
                                   "deleted.example": Outcome.DELIVERED})
    later = t0 + 2 * KEEP
    # Recent: the deleted hook's rows go however new they are; the others stay.
    recent = [p.id for p in await storage.publish([ev(100 + i) for i in range(3)], later)]
    await settle(storage, later + 1, {"ok.example": Outcome.DELIVERED,
                                      "retry.example": Outcome.DELIVERED,
                                      "dead.example": Outcome.DELIVERED,
                                      "deleted.example": Outcome.DELIVERED})
    assert await storage.delete_hook(hooks["deleted.example"], later + 2)
    return {"hooks": hooks, "old": old, "lonely": lonely.id, "recent": recent, "now": later + 3}


async def test_what_goes_and_what_stays(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open()
    try:
        h = await make_history(storage, ahead())
        hooks, now = h["hooks"], h["now"]
        before = dict(table(path, "SELECT status, COUNT(*) FROM deliveries GROUP BY status"))
        assert before == {"delivered": 7 + 7 + 12, "pending": 7, "failed": 7}

        total = await prune_all(storage, now, batch=3)  # many small steps

        left = table(path, "SELECT hook_id, status, COUNT(*) FROM deliveries "
                           "GROUP BY hook_id, status")
        by_host = {host: {st: n for hid, st, n in left if hid == hooks[host]} for host in hooks}
        # Old and final: gone. Pending: kept, however old. Recent and final: kept.
        assert by_host["ok.example"] == {"delivered": 3}
        assert by_host["dead.example"] == {"delivered": 3}
        assert by_host["retry.example"] == {"pending": 7, "delivered": 3}
        # The deleted hook: every row of it, and the hook itself.
        assert by_host["deleted.example"] == {}
        gone = hooks["deleted.example"]
        assert table(path, f"SELECT COUNT(*) FROM hooks WHERE id = '{gone}'") == [(0,)]
        # Events: the old ones still have a pending delivery (retry.example) and stay; the
        # old one with no deliveries goes; the recent ones stay.
        events = {r[0] for r in table(path, "SELECT id FROM events")}
        assert events == set(h["old"]) | set(h["recent"])
        assert await storage.get_event(h["lonely"]) is None
        # Attempts only of deliveries that are left.
        assert table(path, "SELECT COUNT(*) FROM attempts WHERE delivery_id NOT IN "
                           "(SELECT id FROM deliveries)") == [(0,)]
        # (Events: the lonely one, and the gateway.delivery.exhausted news of dead.example's 7,
        # which no hook took.)
        assert total == {"deliveries": 7 + 7 + 7 + 3, "attempts": 7 + 7 + 7 + 3, "events": 1 + 7,
                         "hooks": 1, "secrets": 0}

        # Once the retrying deliveries end, their old events go with them at the next pass.
        later = now + 100 * KEEP
        await settle(storage, later, {"retry.example": Outcome.DELIVERED})
        assert (await prune_all(storage, later + KEEP + 1, batch=500))["events"] == 7 + 3
        assert table(path, "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'") == [(0,)]
    finally:
        await storage.close()


async def test_pending_is_never_pruned_whatever_its_age(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open()
    t0 = ahead()
    try:
        await storage.put_topics([("contact.created", "")], t0)
        hid = await hook(storage, "a.example", t0)
        await storage.publish([ev(i) for i in range(20)], t0)
        await storage.update_hook(hid, {"status": HookStatus.PAUSED}, t0)
        total = await prune_all(storage, t0 + 100 * KEEP, batch=4)
        assert total["deliveries"] == total["events"] == 0
        assert table(path, "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'") == [(20,)]
        assert table(path, "SELECT COUNT(*) FROM events") == [(20,)]
    finally:
        await storage.close()


async def test_secrets_of_a_deleted_hook_go_at_once_and_an_expired_old_secret_is_cleared(
        tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    storage = Storage(str(path))
    await storage.open()
    t0 = ahead()
    try:
        await storage.put_topics([("contact.created", "")], t0)
        rotated = await hook(storage, "a.example", t0)
        deleted = await hook(storage, "b.example", t0)
        await storage.rotate_secret(rotated, new_secret(), t0 + 60, t0)
        await storage.rotate_secret(deleted, new_secret(), t0 + 60, t0)
        await storage.publish([ev(1)], t0)  # (b.example's delivery keeps its row a while)
        await storage.delete_hook(deleted, t0 + 1)
        assert table(path, f"SELECT secret, old_secret FROM hooks WHERE id = '{deleted}'") == [
            ("", None)]
        # Within the rotation window the old secret stays (receivers may still check it).
        await prune_all(storage, t0 + 30, batch=100)
        assert table(path, f"SELECT old_secret IS NOT NULL FROM hooks WHERE id = '{rotated}'") == [
            (1,)]
        step = await prune_all(storage, t0 + 61, batch=100)
        assert step["secrets"] == 1
        assert table(path, f"SELECT old_secret, old_secret_expires_at FROM hooks "
                           f"WHERE id = '{rotated}'") == [(None, None)]
        got = await storage.claim_due(Claim(now=t0 + 62, limit=10, host_room={}, default_room=10))
        assert [d.secrets for d in got.rows if d.hook_id == rotated] == [
            ((await storage.get_hook(rotated)).secret,)]  # type: ignore[union-attr]
    finally:
        await storage.close()


async def test_the_app_prunes_and_a_pruned_event_answers_404(
        start_gateway: StartGateway, receiver: Receiver) -> None:
    clock = ManualClock(ahead())
    gw = await start_gateway(clock=clock, run_delivery_loop=False,
                             retention={"keep_seconds": KEEP, "prune_interval_seconds": 1})
    await gw.hook(receiver)
    first = await gw.publish()
    await gw.engine.run_until_idle()
    delivered = await gw.publish()
    await gw.engine.run_until_idle()
    assert (await gw.call("GET", f"/v1/events/{delivered['id']}", gw.admin))[0] == 200
    clock.advance(KEEP + 10)
    total = await gw.app[PRUNER].run_pass()
    assert total.events == 2 and total.deliveries == 2, total
    for e in (first, delivered):
        status, body, _ = await gw.call("GET", f"/v1/events/{e['id']}", gw.admin)
        assert status == 404, body
    status, text, _ = await gw.call("GET", "/metrics", gw.admin)
    assert status == 200
    assert 'gateway_pruned_rows_total{table="deliveries"} 2.0' in text
    assert 'gateway_pruned_rows_total{table="events"} 2.0' in text
    assert 'gateway_database_bytes{file="db"}' in text
    assert "gateway_database_writable 1.0" in text


async def test_the_pruner_runs_with_the_app(start_gateway: StartGateway, receiver: Receiver
                                            ) -> None:
    """Started and stopped by the app: with keep_seconds = 1, a delivered event goes by itself."""
    clock = ManualClock(ahead())
    gw = await start_gateway(clock=clock,
                             retention={"keep_seconds": 1, "prune_interval_seconds": 0.1})
    await gw.hook(receiver)
    out = await gw.publish()
    await receiver.wait_for(1)
    clock.advance(5)

    async def gone() -> bool:
        return (await gw.call("GET", f"/v1/events/{out['id']}", gw.admin))[0] == 404

    await wait_until(gone, 15, "the delivered event to be pruned")
    assert gw.app[PRUNER].passes > 0
