"""Row to model, one function per model: the only place that knows a query's columns."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson

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
)

_PAYLOAD = {m.value: m for m in PayloadMode}


def hook(row: sqlite3.Row) -> Hook:
    """A row of `SELECT * FROM hooks`."""
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


def key(row: Sequence[Any]) -> ApiKey:
    """key_list, key_by_id, key_by_hash."""
    return ApiKey(id=row[0], role=Role(row[1]), account=row[2], created_at=row[3],
                  revoked_at=row[4], last4=row[5])


def topic(row: Sequence[Any]) -> Topic:
    return Topic(row[0], row[1])


def event(row: Sequence[Any]) -> Event:
    """event_get, event_list."""
    return Event(row[0], row[1], row[2], row[3], bytes(row[4]), row[5], row[6])


def delivery(row: Sequence[Any]) -> Delivery:
    """delivery_get, delivery_list."""
    return Delivery(
        id=row[0], event_id=row[1], hook_id=row[2], account=row[3], topic=row[4],
        status=DeliveryStatus(row[5]), attempts=row[6], next_attempt_at=row[7],
        last_status_code=row[8], created_at=row[9], updated_at=row[10],
    )


def attempt(row: Sequence[Any]) -> Attempt:
    """delivery_attempts."""
    return Attempt(row[0], row[1], row[2], row[3], row[4])


class HookConfig(NamedTuple):
    """What a delivery needs of its hook, kept in memory between hook changes."""

    target_url: str
    payload: PayloadMode
    headers: dict[str, str]
    secret: str
    old_secret: str | None
    old_secret_expires_at: float | None
    ordered: bool


def hook_config(r: Sequence[Any]) -> tuple[str, HookConfig]:
    """hook_delivery_config: (hook id, its config)."""
    return r[0], HookConfig(r[1], _PAYLOAD[r[2]], orjson.loads(r[3]), r[4], r[5], r[6],
                            bool(r[7]))


def due_deliveries(found: Sequence[Sequence[Any]], cfgs: Mapping[str, HookConfig],
                   host_room: Mapping[str, int], default_room: int, limit: int,
                   now: float) -> list[DueDelivery]:
    """claim_candidates rows (plain or from the JSON form) with their hooks' configs, up to
    `limit` and at most each host's room: a host with less room than the limit is passed
    over here, not in SQL. One loop, no call per row: it runs for every delivery."""
    taken: list[DueDelivery] = []
    room: dict[str, int] = {}
    for r in found:
        host = r[8]
        left = room.get(host)
        if left is None:
            left = host_room.get(host, default_room)
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
    return taken
