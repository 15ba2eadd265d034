"""Operational events (API.md): what the gateway publishes about its hooks, stored inside the
transaction that makes the change they report, so the change and the news of it commit
together or not at all."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from gateway.models import DeliveryStatus, new_monotonic_ids
from gateway.routing import Route
from gateway.storage.hooks import HookMemory
from gateway.storage.queries import Q
from gateway.storage.values import AttemptResult, Published

TEST = "gateway.test"
EXHAUSTED = "gateway.delivery.exhausted"
DISABLED = "gateway.hook.disabled"
REMOVED = "gateway.hook.removed"


class OperationalEvent(NamedTuple):
    """An event the gateway publishes about one of its hooks, in that hook's account."""

    account: str
    topic: str
    data: dict[str, Any]
    about: str  # the hook it is about: never delivered to it...
    only: Route | None = None  # ...unless it goes to that hook alone (gateway.test)


def publish(c: sqlite3.Connection, memory: HookMemory, ops: Sequence[OperationalEvent],
            now: float) -> list[Published]:
    """Store the events and their deliveries in the caller's transaction: routed like any event
    (gateway.routing), but never to the hook an event is about."""
    out: list[Published] = []
    seqs: dict[str, int] = {}
    eids = iter(new_monotonic_ids("evt", len(ops), now))
    for op in ops:
        if op.only is not None:
            routes = [op.only]
        else:
            routes = [r for r in memory.index_for(c, op.account).match(op.topic)
                      if r.hook_id != op.about]
        seq = seqs.get(op.account)
        if seq is None:
            c.execute(Q["account_ensure"], (op.account, now))
            seq = c.execute(Q["sequence_get"], (op.account,)).fetchone()[0]
        seq += 1
        seqs[op.account] = seq
        eid = next(eids)
        c.execute(Q["event_insert"], (eid, op.account, op.topic, seq, orjson.dumps(op.data),
                                      None, now))
        dids = new_monotonic_ids("dlv", len(routes), now) if routes else []
        for did, r in zip(dids, routes, strict=True):
            c.execute(Q["delivery_insert"], (did, eid, r.hook_id, r.account, op.topic, seq,
                                             int(r.held), now, now, now, r.host))
        out.append(Published(eid, len(routes), False, sum(not r.held for r in routes)))
    c.executemany(Q["sequence_set"], [(s, a) for a, s in seqs.items()])
    return out


def exhausted(c: sqlite3.Connection, results: Sequence[AttemptResult]
              ) -> list[OperationalEvent]:
    """gateway.delivery.exhausted for each of these results (outcome FAILED, just recorded)
    whose delivery did fail for good: one cancelled meanwhile keeps that status (see
    delivery_record)."""
    ops = []
    for r in results:
        row = c.execute(Q["delivery_exhausted"], (r.delivery_id,)).fetchone()
        if row is None or row[7] != DeliveryStatus.FAILED.value:
            continue
        ops.append(OperationalEvent(row[6], EXHAUSTED, {
            "delivery_id": row[0], "hook_id": row[1], "event_id": row[2], "topic": row[3],
            "attempts": row[4], "last_status_code": row[5], "last_error": r.attempt.error,
        }, row[1]))
    return ops
