"""Publishing events (single or an atomic batch, idempotent), listing them, reading one back."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.api.common import (
    CLOCK,
    CONFIG,
    LOOP,
    METRICS,
    STORAGE,
    account_name,
    expect_object,
    json_response,
    make_cursor,
    page_params,
    principal,
    read_json,
    rfc3339,
)
from gateway.config import TOPIC_NAME
from gateway.errors import FieldError, Forbidden, NotFound, PayloadTooLarge, Unprocessable
from gateway.models import Role
from gateway.routing import OPERATIONAL_PREFIX
from gateway.storage import NewEvent

routes = web.RouteTableDef()
EVENT_FIELDS = {"topic", "account", "data", "resource_url", "idempotency_key"}


def _event(body: Any, known: frozenset[str], where: str, header_key: str | None) -> NewEvent:
    try:
        return _parse_event(body, known, header_key)
    except Unprocessable as exc:
        if not where:
            raise
        errors = [FieldError(f"{where}{e.field}", e.message) for e in exc.errors]
        raise Unprocessable(f"{where}{exc.detail}", errors) from None


def _parse_event(body: Any, known: frozenset[str], header_key: str | None) -> NewEvent:
    body = expect_object(body, EVENT_FIELDS)
    topic = body.get("topic")
    if not isinstance(topic, str) or not topic:
        raise Unprocessable.field("topic", "is required: a topic name")
    if topic not in known:
        raise Unprocessable.field("topic", f"unknown topic {topic!r} (see GET /v1/topics)")
    if topic.startswith(OPERATIONAL_PREFIX):
        # Receivers trust these to come from the gateway itself (a hook disabled, a test).
        raise Unprocessable.field("topic", f"{topic!r} is published by the gateway itself")
    if "account" not in body:
        raise Unprocessable.field("account", "is required")
    account = account_name(body["account"])
    resource_url = body.get("resource_url")
    if resource_url is not None and (
        not isinstance(resource_url, str) or len(resource_url) > 2048
        or not resource_url.startswith(("https://", "http://"))
    ):
        raise Unprocessable.field("resource_url", "must be an http(s) URL of at most 2048 characters")
    key = body.get("idempotency_key", header_key)
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 255):
        raise Unprocessable.field("idempotency_key", "must be a string of 1-255 characters")
    try:
        data = orjson.dumps(body.get("data"))
    except orjson.JSONEncodeError:
        # orjson reads 1,024 levels but writes 254; data is written at once, so deeper data is
        # refused here rather than failing as it is stored.
        raise Unprocessable.field("data", "is nested more than 254 levels deep") from None
    return NewEvent(account, topic, data, resource_url, key)


@routes.post("/v1/events")
async def publish(request: web.Request) -> web.Response:
    principal(request).require(Role.ADMIN, Role.PUBLISHER)
    app = request.app  # (a property that walks the match info: looked up once)
    body = await read_json(request)
    storage = app[STORAGE]
    known = storage.known_topics() or await storage.topic_names()
    header_key = request.headers.get("Idempotency-Key")
    if isinstance(body, list):
        limit = app[CONFIG].server.max_batch_events
        if not body:
            raise Unprocessable.field("body", "a batch must hold at least one event")
        if len(body) > limit:
            raise PayloadTooLarge(f"a batch holds at most {limit} events; this one has {len(body)}")
        events = [_event(item, known, f"[{i}].", None) for i, item in enumerate(body)]
    else:
        events = [_event(body, known, "", header_key)]
    results = await storage.publish(events, app[CLOCK].now())
    fresh = sum(1 for r in results if not r.replayed)
    if fresh:
        app[METRICS].events_published += fresh
        # Deliveries held by paused hooks cannot be claimed: waking the loop for them would
        # cost a claim transaction per publish for nothing (resuming the hook wakes it).
        if LOOP in app and any(r.due for r in results):
            app[LOOP].wake()
    if isinstance(body, list):
        return json_response({"data": [r.public() for r in results]}, status=202)
    return json_response(results[0].public(), status=202)


@routes.get("/v1/events/{id}")
async def get_event(request: web.Request) -> web.Response:
    found = await request.app[STORAGE].get_event(request.match_info["id"])
    if found is None or not principal(request).can_see(found[0].account):
        raise NotFound("no such event")
    event, counts = found
    return json_response(event.public(counts))


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    p = principal(request)
    q = request.query
    limit, cursor = page_params(request)
    account = account_name(q["account"]) if "account" in q else None
    if p.role is Role.SUBSCRIBER:
        if account is not None and account != p.account:
            raise Forbidden("a subscriber key may only read its own account's events")
        account = p.account
    topic = q.get("topic") or None
    if topic is not None and not TOPIC_NAME.match(topic):
        raise Unprocessable.field("topic", f"{topic!r} is not a topic name")
    since = rfc3339(q["since"], "since") if "since" in q else None
    until = rfc3339(q["until"], "until") if "until" in q else None
    storage = request.app[STORAGE]
    items, last = await storage.list_events(account, topic, since, until, limit, cursor)
    counts = await storage.delivery_counts([e.id for e in items])
    return json_response({"data": [e.public(counts[e.id]) for e in items],
                          "next_cursor": make_cursor(last)})
