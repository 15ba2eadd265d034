"""What operators list from the shell (hooks, deliveries, events): rows from storage, shown as an
aligned table or as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.models import Delivery, DeliveryStatus, Hook, HookStatus, iso
from gateway.storage.backend import Backend

PAGE = 500  # rows per storage read while filling a listing


class Listing:
    """Rows ready to print: their JSON form, their table form, and whether more exist than
    were asked for."""

    def __init__(self, noun: str, headers: Sequence[str], rows: list[list[str]],
                 data: list[dict[str, Any]], more: bool) -> None:
        self.noun = noun
        self.headers = headers
        self.rows = rows
        self.data = data
        self.more = more

    def json(self) -> str:
        return orjson.dumps(self.data, option=orjson.OPT_INDENT_2).decode()

    def table(self) -> str:
        return "\n".join(table(self.headers, self.rows))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns as wide as their widest cell, two spaces apart; the last one is not padded, so
    lines carry no trailing blanks."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths, strict=False)) + (
            "  " + cells[-1] if len(cells) > 1 else cells[-1])

    return [line(headers), *(line(r) for r in rows)]


async def hooks(storage: Backend, account: str | None, status: HookStatus | None,
                limit: int) -> Listing:
    found: list[Hook] = []
    after = ""
    more = False
    while True:
        page, cursor = await storage.list_hooks(account, PAGE, after)
        for h in page:
            if status is None or h.status is status:
                if len(found) == limit:
                    more = True
                    break
                found.append(h)
        if more or cursor is None:
            break
        after = cursor
    rows = [[h.id, h.account, h.status.value, str(h.consecutive_failures), ",".join(h.topics),
             h.target_url] for h in found]
    return Listing("hooks", ["ID", "ACCOUNT", "STATUS", "FAILURES", "TOPICS", "TARGET_URL"],
                   rows, [h.public() for h in found], more)


async def deliveries(storage: Backend, hook_id: str, status: DeliveryStatus | None,
                     limit: int) -> Listing:
    if await storage.get_hook(hook_id) is None:
        raise GatewayError(f"no hook with id {hook_id} (gateway hooks list shows the hooks)")
    items, cursor = await storage.list_deliveries(hook_id, status, limit, None)
    rows = [[d.id, d.event_id, d.topic, d.status.value, str(d.attempts),
             _or_dash(d.last_status_code), _next_attempt(d), iso(d.created_at) or ""]
            for d in items]
    return Listing("deliveries", ["ID", "EVENT", "TOPIC", "STATUS", "ATTEMPTS", "LAST_CODE",
                                  "NEXT_ATTEMPT", "CREATED"],
                   rows, [d.public() for d in items], cursor is not None)


async def events(storage: Backend, account: str | None, topic: str | None, limit: int
                 ) -> Listing:
    items, cursor = await storage.list_events(account, topic, None, None, limit, None)
    rows = [[e.id, e.account, e.topic, str(e.sequence), iso(e.created_at) or ""] for e in items]
    # (Without the delivery counts GET /v1/events/{id} adds: a listing reads no deliveries.)
    data = [{k: v for k, v in e.public({}).items() if k != "deliveries"} for e in items]
    return Listing("events", ["ID", "ACCOUNT", "TOPIC", "SEQUENCE", "CREATED"], rows, data,
                   cursor is not None)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _next_attempt(d: Delivery) -> str:
    return (iso(d.next_attempt_at) or "-") if d.status is DeliveryStatus.PENDING else "-"
