"""Replay and recovery of a hook: its deliveries since a time back to pending, a test event."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.common import (
    CLOCK,
    LOOP,
    STORAGE,
    expect_object,
    json_response,
    principal,
    read_json,
    rfc3339,
)
from gateway.api.hooks import visible_hook
from gateway.errors import NotFound, Unprocessable
from gateway.models import DeliveryStatus, Hook, HookStatus, Role
from gateway.storage import Published

routes = web.RouteTableDef()

RECOVERABLE = (DeliveryStatus.FAILED, DeliveryStatus.DELIVERED, DeliveryStatus.CANCELLED)
TEST_MESSAGE = "A test event from the gateway: this hook receives and answers."


def _statuses(body: dict[str, Any]) -> list[DeliveryStatus]:
    raw = body.get("statuses")
    if raw is None:
        return [DeliveryStatus.FAILED]
    allowed = ", ".join(s.value for s in RECOVERABLE)
    if not isinstance(raw, list) or not raw:
        raise Unprocessable.field("statuses", f"must be a non-empty array of: {allowed}")
    out: list[DeliveryStatus] = []
    for i, v in enumerate(raw):
        if v not in RECOVERABLE:  # (a StrEnum equals its value)
            raise Unprocessable.field(f"statuses[{i}]", f"unknown status {v!r}: one of {allowed}")
        if v not in out:
            out.append(DeliveryStatus(v))
    return out


@routes.post("/v1/hooks/{id}/recover")
async def recover(request: web.Request) -> web.Response:
    principal(request).require(Role.ADMIN, Role.SUBSCRIBER)
    body = expect_object(await read_json(request), {"since", "until", "statuses"})
    n = await recover_hook(request, await visible_hook(request), body)
    return json_response({"deliveries": n}, status=202)


async def recover_hook(request: web.Request, hook: Hook, body: dict[str, Any]) -> int:
    """Recover a hook the caller may see by a body of POST .../recover (the portal's form
    makes one too); how many deliveries became pending."""
    principal(request).require(Role.ADMIN, Role.SUBSCRIBER)
    body = expect_object(body, {"since", "until", "statuses"})
    if "since" not in body:
        raise Unprocessable.field("since", "is required: an RFC 3339 time")
    since = rfc3339(body["since"], "since")
    until = rfc3339(body["until"], "until") if body.get("until") is not None else None
    if until is not None and until <= since:
        raise Unprocessable.field("until", "must be later than since")
    statuses = _statuses(body)
    app = request.app
    loop = app.get(LOOP)
    return await app[STORAGE].recover_deliveries(
        hook.id, since=since, until=until, statuses=statuses, now=app[CLOCK].now(),
        # Each batch is committed: the loop may start on it while the next is made pending.
        after_batch=(lambda _: loop.wake()) if loop is not None else None)


@routes.post("/v1/hooks/{id}/test")
async def send_test(request: web.Request) -> web.Response:
    principal(request).require(Role.ADMIN, Role.SUBSCRIBER)
    published = await test_hook(request, await visible_hook(request))
    return json_response(published.public(), status=202)


async def test_hook(request: web.Request, hook: Hook) -> Published:
    """A gateway.test event for a hook the caller may see, and for that hook alone."""
    principal(request).require(Role.ADMIN, Role.SUBSCRIBER)
    if hook.status is HookStatus.REMOVED:
        raise Unprocessable.field("status", "the hook was removed (its target answered 410 "
                                            "Gone); give it a new target_url first")
    published = await request.app[STORAGE].publish_test_event(hook.id, TEST_MESSAGE,
                                                              request.app[CLOCK].now())
    if published is None:  # deleted meanwhile
        raise NotFound("no such hook")
    if published.due and LOOP in request.app:
        request.app[LOOP].wake()
    return published
