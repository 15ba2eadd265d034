"""A hook's health: the failure streak kept from attempts, disabling after persistent failure,
removal on 410, and what pausing and re-activating do to waiting deliveries.

The batch table records attempts through Storage.record_attempts, the verb the delivery loop
uses, because several attempts to one hook recorded together is a case the loop makes only by
timing; the rest goes through HTTP and the delivery engine on a manual clock. Each case here
was added because a one-line mutant of the health rule survived the rest of the suite
(tools/mutate.py --module health)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.models import Attempt
from gateway.outcome import Outcome
from gateway.storage import AttemptResult, RecordSummary
from tests.conftest import Gateway, Receiver
from tests.test_delivery import deliveries, get_json, script

StartGateway = Callable[..., Awaitable[Gateway]]

# One letter an attempt: F a failure with retries left, X a failure with none, D delivered,
# G gone (410).
OUTCOMES = {"F": Outcome.RETRY, "X": Outcome.FAILED, "D": Outcome.DELIVERED, "G": Outcome.GONE}
CODES = {"F": 500, "X": 500, "D": 200, "G": 410}
PRIOR_AT = 1000.0  # a failure recorded before the batch
BATCH_AT = 2000.0  # the batch's i-th attempt is at BATCH_AT + i


async def _hook_with_deliveries(gw: Gateway, receiver: Receiver, n: int) -> tuple[str, list[str]]:
    hook = await gw.hook(receiver)
    for i in range(n):
        await gw.publish(data={"i": i})
    ids = [d["id"] for d in await deliveries(gw, hook["id"])]
    assert len(ids) == n
    return hook["id"], ids


def _results(hook_id: str, ids: list[str], pattern: str, start: float) -> list[AttemptResult]:
    return [AttemptResult(d, hook_id, Attempt(start + i, CODES[c], None, 1.0, ""), OUTCOMES[c],
                          start + i + 3600 if c == "F" else None)
            for i, (d, c) in enumerate(zip(ids, pattern, strict=True))]


async def _record(gw: Gateway, results: list[AttemptResult], now: float, *, failures: int = 100,
                  seconds: float = 0) -> RecordSummary:
    return await gw.storage.record_attempts(results, now, disable_after_failures=failures,
                                            disable_after_seconds=seconds)


async def _run_batch(gw: Gateway, receiver: Receiver, prior: str, batch: str, **limits: Any
                     ) -> tuple[str, RecordSummary]:
    hook_id, ids = await _hook_with_deliveries(gw, receiver, len(prior) + len(batch))
    if prior:
        await _record(gw, _results(hook_id, ids[:len(prior)], prior, PRIOR_AT), PRIOR_AT)
    summary = await _record(gw, _results(hook_id, ids[len(prior):], batch, BATCH_AT),
                            BATCH_AT + len(batch), **limits)
    return hook_id, summary


# (failures before, the batch, the streak after, when it began: None, PRIOR_AT or BATCH_AT + i)
STREAKS = [
    ("", "F", 1, BATCH_AT),
    ("", "FF", 2, BATCH_AT),
    ("F", "FF", 3, PRIOR_AT),
    ("F", "X", 2, PRIOR_AT),  # a delivery that used up its retries counts too
    ("F", "XF", 3, PRIOR_AT),
    ("F", "D", 0, None),
    ("F", "FD", 0, None),
    ("F", "DF", 1, BATCH_AT + 1),  # a success first in the batch ends the old streak
    ("F", "DFF", 2, BATCH_AT + 1),
    ("F", "FDFF", 2, BATCH_AT + 2),
    ("F", "FDFDFF", 2, BATCH_AT + 4),  # the streak starts after the last success
    ("F", "DDX", 1, BATCH_AT + 2),
    ("FF", "FFDXF", 2, BATCH_AT + 3),
]


@pytest.mark.parametrize(("prior", "batch", "count", "since"), STREAKS)
async def test_the_streak_after_a_batch(start_gateway: StartGateway, receiver: Receiver,
                                        prior: str, batch: str, count: int,
                                        since: float | None) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook_id, summary = await _run_batch(gw, receiver, prior, batch)
    hook = await gw.storage.get_hook(hook_id)
    assert hook is not None
    assert (hook.consecutive_failures, hook.failing_since) == (count, since)
    assert summary.disabled_hooks == summary.removed_hooks == []
    got = await get_json(gw, f"/v1/hooks/{hook_id}")
    assert (got["status"], got["consecutive_failures"]) == ("active", count)


# (failures before, the batch, disable_after_failures, disable_after_seconds, status after).
# The batch is recorded at BATCH_AT + len(batch); the streaks here all began at PRIOR_AT.
LIMITS = [
    ("F", "FF", 3, 0, "disabled"),
    ("F", "FF", 4, 0, "active"),
    ("F", "FF", 3, BATCH_AT + 2 - PRIOR_AT, "disabled"),  # exactly the span: disabled
    ("F", "FF", 3, BATCH_AT + 2 - PRIOR_AT + 1, "active"),
    ("F", "XX", 3, 0, "disabled"),
    ("", "F", 1, 0, "disabled"),
    ("F", "DFF", 3, 0, "active"),
]


@pytest.mark.parametrize(("prior", "batch", "failures", "seconds", "status"), LIMITS)
async def test_disabling_after_persistent_failure(start_gateway: StartGateway, receiver: Receiver,
                                                  prior: str, batch: str, failures: int,
                                                  seconds: float, status: str) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook_id, summary = await _run_batch(gw, receiver, prior, batch, failures=failures,
                                        seconds=seconds)
    got = await get_json(gw, f"/v1/hooks/{hook_id}")
    assert got["status"] == status
    assert summary.disabled_hooks == ([hook_id] if status == "disabled" else [])
    # A disabled hook's retries wait: none is due, however late it gets.
    due = await gw.storage.due_backlog(BATCH_AT + 10**6)
    assert due == (0 if status == "disabled" else (prior + batch).count("F"))


async def test_a_paused_hook_is_not_disabled(start_gateway: StartGateway,
                                             receiver: Receiver) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    hook_id, ids = await _hook_with_deliveries(gw, receiver, 3)
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook_id}", gw.subscriber,
                                    json={"status": "paused"})
    assert status == 200, body
    summary = await _record(gw, _results(hook_id, ids, "FFF", BATCH_AT), BATCH_AT + 3,
                            failures=1, seconds=0)
    assert summary.disabled_hooks == []
    got = await get_json(gw, f"/v1/hooks/{hook_id}")
    assert (got["status"], got["consecutive_failures"]) == ("paused", 3)


@pytest.mark.parametrize("batch", ["FG", "GF", "DGD", "G", "XGF"])
async def test_a_410_anywhere_in_a_batch_removes_the_hook(start_gateway: StartGateway,
                                                           receiver: Receiver, batch: str) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    # One more delivery than the batch: it was waiting, and fails with the hook.
    hook_id, ids = await _hook_with_deliveries(gw, receiver, len(batch) + 1)
    summary = await _record(gw, _results(hook_id, ids[1:], batch, BATCH_AT), BATCH_AT + 9,
                            failures=1, seconds=0)
    assert summary.removed_hooks == [hook_id]
    assert summary.disabled_hooks == []
    # Every delivery but the delivered ones ends failed: those of the batch and the waiting one.
    assert summary.final.get("failed", 0) == len(batch) - batch.count("D") + 1
    assert summary.final.get("delivered", 0) == batch.count("D")
    got = await get_json(gw, f"/v1/hooks/{hook_id}")
    assert got["status"] == "removed"
    statuses = {d["id"]: d["status"] for d in await deliveries(gw, hook_id)}
    assert statuses[ids[0]] == "failed"
    for d, c in zip(ids[1:], batch, strict=True):
        assert statuses[d] == ("delivered" if c == "D" else "failed"), (d, c)
    # Removing it again (a later batch) changes nothing and reports nothing.
    again = await _record(gw, _results(hook_id, ids[1:2], "G", BATCH_AT + 20), BATCH_AT + 30)
    assert again.removed_hooks == []


# -- through HTTP and the delivery engine ------------------------------------------------------


def _gateway(start_gateway: StartGateway, failures: int, seconds: float) -> Awaitable[Gateway]:
    return start_gateway(run_delivery_loop=False, delivery={
        "disable_after_failures": failures, "disable_after_seconds": seconds,
        "retry_schedule_seconds": (3600, 3600), "retry_jitter": 0})


async def test_a_success_clears_when_the_streak_began(start_gateway: StartGateway,
                                                      receiver: Receiver) -> None:
    """Two failures disable the hook once they span ten minutes. A failure, a success, and ten
    minutes later two more failures a second apart: a streak of two spanning one second."""
    gw = await _gateway(start_gateway, 2, 600)
    hook = await gw.hook(receiver)
    clock: Any = gw.clock
    for answer, wait in ((500, 10), (204, 700), (500, 1), (500, 0)):
        receiver.respond = script(default=answer)
        await gw.publish()
        await gw.engine.run_until_idle()
        stored = await gw.storage.get_hook(hook["id"])
        assert stored is not None
        if answer == 204:
            assert (stored.consecutive_failures, stored.failing_since) == (0, None)
        clock.advance(wait)
    got = await get_json(gw, f"/v1/hooks/{hook['id']}")
    assert (got["status"], got["consecutive_failures"]) == ("active", 2)
    stored = await gw.storage.get_hook(hook["id"])
    assert stored is not None and stored.failing_since == pytest.approx(clock.now() - 1)


async def test_reactivation_resets_the_streak_and_retries_what_waited_now(
        start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await _gateway(start_gateway, 3, 0)
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    for _ in range(3):
        await gw.publish()
    await gw.engine.run_until_idle()
    got = await get_json(gw, f"/v1/hooks/{hook['id']}")
    assert (got["status"], got["consecutive_failures"]) == ("disabled", 3)
    assert len(receiver.deliveries) == 3

    receiver.respond = script(default=204)
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                    json={"status": "active"})
    assert status == 200, body
    assert (body["status"], body["consecutive_failures"]) == ("active", 0)
    stored = await gw.storage.get_hook(hook["id"])
    assert stored is not None and stored.failing_since is None
    # Their retries were an hour away; re-activation brings them to now, without the clock moving.
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 6
    assert len(await deliveries(gw, hook["id"], "&status=delivered")) == 3


async def test_resuming_a_paused_hook_resets_its_streak_but_keeps_the_schedule(
        start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await _gateway(start_gateway, 100, 0)
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    await gw.publish()
    await gw.engine.run_until_idle()
    for status_ in ("paused", "active"):
        status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                        json={"status": status_})
        assert status == 200, body
    assert body["consecutive_failures"] == 0
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 1  # the retry is still an hour away
    [d] = await deliveries(gw, hook["id"])
    assert (d["status"], d["attempts"]) == ("pending", 1)


async def test_pausing_holds_a_delivery_already_waiting_for_its_retry(
        start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await _gateway(start_gateway, 100, 0)
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    await gw.publish()
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 1
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                    json={"status": "paused"})
    assert status == 200, body
    clock: Any = gw.clock
    clock.advance(2 * 3600)
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 1
    [d] = await deliveries(gw, hook["id"])
    assert (d["status"], d["attempts"]) == ("pending", 1)
    receiver.respond = script(default=204)
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                    json={"status": "active"})
    assert status == 200, body
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 2
    [d] = await deliveries(gw, hook["id"])
    assert d["status"] == "delivered"


async def test_disabling_holds_what_waits(start_gateway: StartGateway,
                                          receiver: Receiver) -> None:
    gw = await _gateway(start_gateway, 2, 0)
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    await gw.publish()
    await gw.publish()
    await gw.engine.run_until_idle()
    assert (await get_json(gw, f"/v1/hooks/{hook['id']}"))["status"] == "disabled"
    clock: Any = gw.clock
    clock.advance(10 * 3600)
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 2
    assert [d["status"] for d in await deliveries(gw, hook["id"])] == ["pending", "pending"]


async def test_patching_an_active_hook_to_active_changes_nothing(start_gateway: StartGateway,
                                                                 receiver: Receiver) -> None:
    gw = await _gateway(start_gateway, 100, 0)
    hook = await gw.hook(receiver)
    receiver.respond = script(default=500)
    await gw.publish()
    await gw.engine.run_until_idle()
    before = await gw.storage.get_hook(hook["id"])
    assert before is not None and before.consecutive_failures == 1
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                    json={"status": "active"})
    assert status == 200, body
    assert (body["status"], body["consecutive_failures"]) == ("active", 1)
    after = await gw.storage.get_hook(hook["id"])
    assert after is not None and after.failing_since == before.failing_since
    await gw.engine.run_until_idle()
    assert len(receiver.deliveries) == 1  # its retry is still an hour away
