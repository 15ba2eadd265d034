"""Delivery logs: a hook's deliveries, one delivery with its attempts, and manual retry (of a
failed delivery, or of a delivered one, sent once more)."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import (
    CLOCK,
    LOOP,
    STORAGE,
    json_response,
    make_cursor,
    page_params,
    principal,
)
from gateway.errors import NotFound, Unprocessable
from gateway.models import Attempt, Delivery, DeliveryStatus, Role

routes = web.RouteTableDef()


def _roles(request: web.Request) -> None:
    principal(request).require(Role.ADMIN, Role.SUBSCRIBER)


async def visible_delivery(request: web.Request, delivery_id: str
                           ) -> tuple[Delivery, list[Attempt]]:
    """The delivery and its attempts if the caller may see it; another account's is
    NotFound, like a missing one."""
    found = await request.app[STORAGE].get_delivery(delivery_id)
    if found is None or not principal(request).can_see(found[0].account):
        raise NotFound("no such delivery")
    return found


async def _visible_delivery(request: web.Request) -> Delivery:
    return (await visible_delivery(request, request.match_info["id"]))[0]


@routes.get("/v1/hooks/{id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    _roles(request)
    storage = request.app[STORAGE]
    hook = await storage.get_hook(request.match_info["id"])
    if hook is None or not principal(request).can_see(hook.account):
        raise NotFound("no such hook")
    limit, cursor = page_params(request)
    status = None
    if "status" in request.query:
        try:
            status = DeliveryStatus(request.query["status"])
        except ValueError:
            raise Unprocessable.field(
                "status", "must be pending, delivered, failed or cancelled") from None
    items, last = await storage.list_deliveries(hook.id, status, limit, cursor)
    return json_response({"data": [d.public() for d in items], "next_cursor": make_cursor(last)})


@routes.get("/v1/deliveries/{id}")
async def get_delivery(request: web.Request) -> web.Response:
    _roles(request)
    delivery, attempts = await visible_delivery(request, request.match_info["id"])
    return json_response({**delivery.public(), "attempt_log": [a.public() for a in attempts]})


@routes.post("/v1/deliveries/{id}/retry")
async def retry_delivery(request: web.Request) -> web.Response:
    _roles(request)
    updated = await retry(request, await _visible_delivery(request))
    return json_response(updated.public(), status=202)


async def retry(request: web.Request, delivery: Delivery) -> Delivery:
    """Try a delivery the caller may see again now, by the rules of POST .../retry."""
    _roles(request)
    # (A delivered one is sent once more; a cancelled one's hook was deleted.)
    if delivery.status is DeliveryStatus.CANCELLED:
        raise Unprocessable.field("status", "a cancelled delivery cannot be retried")
    updated = await request.app[STORAGE].retry_delivery(delivery.id, request.app[CLOCK].now())
    if LOOP in request.app:
        request.app[LOOP].wake()
    assert updated is not None
    return updated
