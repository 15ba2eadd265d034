"""Hooks (subscriptions): create with intent verification, read, change, delete, rotate."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.api.common import (
    CLIENT,
    CLOCK,
    CONFIG,
    LOOP,
    POLICY,
    STORAGE,
    account_name,
    expect_object,
    json_response,
    make_cursor,
    opt_bool,
    opt_str,
    page_params,
    principal,
    read_json,
)
from gateway.config import TOPIC_NAME
from gateway.errors import NotFound, Unprocessable
from gateway.handshake import HandshakeFailed, verify_intent
from gateway.models import Hook, HookStatus, PayloadMode, Role, new_monotonic_id, new_secret
from gateway.storage.hooks import STAR_ACCOUNT
from gateway.targets import TargetRefused, check_target, check_url_syntax, host_key

routes = web.RouteTableDef()

CREATE_FIELDS = {"target_url", "topics", "event", "payload", "ordered", "description", "headers",
                 "account"}
PATCH_FIELDS = {"target_url", "topics", "event", "payload", "ordered", "description", "headers",
                "status"}
# \Z, not $: "$" also matches before a final "\n".
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.\*\Z")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}\Z")
# Headers the gateway owns: hop-by-hop ones, framing, and the signature set.
RESERVED_HEADERS = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
    "content-type", "content-encoding", "expect", "user-agent", "webhook-id",
    "webhook-timestamp", "webhook-signature", "x-hook-secret",
}
ROTATION_WINDOW = 24 * 3600


async def _topics(request: web.Request, body: dict[str, Any], required: bool) -> list[str] | None:
    if "topics" in body and "event" in body:
        raise Unprocessable.field("event", "give either topics or event, not both")
    if "event" in body:
        raw: Any = [body["event"]]
        field = "event"
        if not isinstance(body["event"], str):
            raise Unprocessable.field("event", "must be a topic name")
    elif "topics" in body:
        raw, field = body["topics"], "topics"
        if not isinstance(raw, list) or not raw:
            raise Unprocessable.field("topics", "must be a non-empty array of topic patterns")
        if len(raw) > 100:
            raise Unprocessable.field("topics", "must have at most 100 patterns")
    elif required:
        raise Unprocessable.field("topics", "is required (or event, as REST Hooks clients send it)")
    else:
        return None
    known = await request.app[STORAGE].topic_names()
    out: list[str] = []
    for i, p in enumerate(raw):
        where = field if field == "event" else f"topics[{i}]"
        if not isinstance(p, str):
            raise Unprocessable.field(where, "must be a string")
        if p == "*" or PREFIX_PATTERN.match(p):
            pass
        elif not TOPIC_NAME.match(p):
            raise Unprocessable.field(where, f"{p!r} is not a topic name, prefix.* or *")
        elif p not in known:
            raise Unprocessable.field(where, f"unknown topic {p!r} (see GET /v1/topics)")
        if p not in out:
            out.append(p)
    return out


def _headers(body: dict[str, Any]) -> dict[str, str] | None:
    raw = body.get("headers")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise Unprocessable.field("headers", "must be an object of header names to strings")
    if len(raw) > 20:
        raise Unprocessable.field("headers", "must have at most 20 headers")
    out: dict[str, str] = {}
    for name, value in raw.items():
        where = f"headers.{name}"
        if not HEADER_NAME.match(name):
            raise Unprocessable.field(where, "is not a valid header name")
        if name.lower() in RESERVED_HEADERS or name.lower().startswith("proxy-"):
            raise Unprocessable.field(where, "is set by the gateway and cannot be overridden")
        if not isinstance(value, str) or len(value) > 4096:
            raise Unprocessable.field(where, "must be a string of at most 4096 characters")
        # RFC 9110 field values: no control characters but tab (aiohttp refuses to send them).
        if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value):
            raise Unprocessable.field(where, "must not contain line breaks or control characters")
        if name.lower() in (n.lower() for n in out):
            raise Unprocessable.field(where, "is given twice (header names ignore case)")
        out[name] = value
    return out


def _payload(body: dict[str, Any]) -> PayloadMode | None:
    if body.get("payload") is None:
        return None
    try:
        return PayloadMode(body["payload"])
    except (ValueError, TypeError):
        raise Unprocessable.field("payload", "must be full or skinny") from None


async def _checked_target(request: web.Request, body: dict[str, Any], hook_id: str
                          ) -> tuple[str, int | None] | None:
    """The checked target URL and the status its handshake answered (None when verify_intent
    is off); None when the body changes no target."""
    if "target_url" not in body:
        return None
    url = body["target_url"]
    if not isinstance(url, str):  # null included: a hook cannot lose its target
        raise Unprocessable.field("target_url", "must be a URL string")
    policy = request.app[POLICY]
    sec = request.app[CONFIG].security
    try:
        parsed = check_url_syntax(url, policy)
        if not sec.verify_intent:
            await check_target(url, policy)
    except TargetRefused as exc:
        raise Unprocessable.field("target_url", exc.reason) from None
    answered = None
    if sec.verify_intent:
        try:
            answered = await verify_intent(request.app[CLIENT], str(parsed), hook_id,
                                           sec.handshake_timeout_seconds)
        except HandshakeFailed as exc:
            raise Unprocessable(f"intent verification failed: {exc}",
                                [_field_error("target_url", str(exc))]) from None
    return str(parsed), answered


def _field_error(field: str, message: str) -> Any:
    from gateway.errors import FieldError

    return FieldError(field, message)


async def visible_hook(request: web.Request, hook_id: str | None = None) -> Hook:
    """The hook (by default the route's {id}) if the caller may see it; another account's is
    NotFound, like a missing one."""
    hook = await request.app[STORAGE].get_hook(hook_id or request.match_info["id"])
    if hook is None or not principal(request).can_see(hook.account):
        raise NotFound("no such hook")
    return hook


def _hook_roles(request: web.Request) -> None:
    principal(request).require(Role.ADMIN, Role.SUBSCRIBER)


@dataclass(frozen=True, slots=True)
class Created:
    hook: Hook
    secret: str  # shown once
    handshake_status: int | None  # what the target answered the handshake; None: not asked


async def create(request: web.Request, body: dict[str, Any]) -> Created:
    """Create a hook from a body the API or the portal was given, with every rule of
    POST /v1/hooks (the caller's role and account, topics, headers, the target and its
    handshake)."""
    _hook_roles(request)
    body = expect_object(body, CREATE_FIELDS)
    # An admin names any account: the same rule as everywhere else, not just "a string";
    # or "*": the hook receives the events of every account for its topics.
    account = principal(request).target_account(body.get("account"))
    if account != STAR_ACCOUNT:
        account = account_name(account)
    if "target_url" not in body:
        raise Unprocessable.field("target_url", "is required")
    topics = await _topics(request, body, required=True)
    assert topics is not None
    headers = _headers(body) or {}
    payload = _payload(body) or PayloadMode.FULL
    ordered = bool(opt_bool(body, "ordered"))
    description = opt_str(body, "description", max_len=1000) or ""
    now = request.app[CLOCK].now()
    hook_id = new_monotonic_id("hook", now)  # hooks made in one millisecond list in order
    checked = await _checked_target(request, body, hook_id)
    assert checked is not None
    target, answered = checked
    secret = new_secret()
    hook = await request.app[STORAGE].create_hook(
        account=account, target_url=target, host=host_key(target), topics=topics,
        payload=payload, ordered=ordered, description=description, headers=headers,
        secret=secret, now=now, hook_id=hook_id,
    )
    return Created(hook, secret, answered)


@routes.post("/v1/hooks")
async def create_hook(request: web.Request) -> web.Response:
    _hook_roles(request)
    made = await create(request, await read_json(request))
    return json_response({**made.hook.public(), "secret": made.secret}, status=201,
                         headers={"Location": f"/v1/hooks/{made.hook.id}"})


@routes.get("/v1/hooks")
async def list_hooks(request: web.Request) -> web.Response:
    _hook_roles(request)
    p = principal(request)
    limit, cursor = page_params(request)
    account = p.account if p.role is Role.SUBSCRIBER else request.query.get("account")
    hooks, last = await request.app[STORAGE].list_hooks(account, limit, cursor or "")
    return json_response({"data": [h.public() for h in hooks], "next_cursor": make_cursor(last)})


@routes.get("/v1/hooks/{id}")
async def get_hook(request: web.Request) -> web.Response:
    _hook_roles(request)
    return json_response((await visible_hook(request)).public())


async def change(request: web.Request, hook: Hook, body: dict[str, Any]) -> Hook:
    """Apply a PATCH body to a hook the caller may see, with every rule of PATCH /v1/hooks."""
    _hook_roles(request)
    body = expect_object(body, PATCH_FIELDS)
    changes: dict[str, Any] = {}
    topics = await _topics(request, body, required=False)
    if topics is not None:
        changes["topics"] = topics
    headers = _headers(body)
    if headers is not None:
        changes["headers"] = headers
    payload = _payload(body)
    if payload is not None:
        changes["payload"] = payload
    ordered = opt_bool(body, "ordered")
    if ordered is not None:
        changes["ordered"] = ordered
    description = opt_str(body, "description", max_len=1000)
    if description is not None:
        changes["description"] = description
    if body.get("status") is not None:
        if body["status"] not in (HookStatus.ACTIVE.value, HookStatus.PAUSED.value):
            raise Unprocessable.field("status", "must be active or paused")
        if hook.status is HookStatus.REMOVED and body["status"] == HookStatus.ACTIVE.value \
                and "target_url" not in body:
            raise Unprocessable.field("status", "a removed hook needs a new target_url to resume")
        changes["status"] = HookStatus(body["status"])
    if "target_url" in body and body["target_url"] != hook.target_url:
        checked = await _checked_target(request, body, hook.id)
        assert checked is not None
        target = checked[0]
        changes["target_url"] = target
        changes["host"] = host_key(target)
    updated = await request.app[STORAGE].update_hook(hook.id, changes, request.app[CLOCK].now())
    if updated is None:
        raise NotFound("no such hook")
    if changes and LOOP in request.app:
        request.app[LOOP].hook_changed(hook.id)
    return updated


@routes.patch("/v1/hooks/{id}")
async def patch_hook(request: web.Request) -> web.Response:
    _hook_roles(request)
    body = expect_object(await read_json(request), PATCH_FIELDS)
    hook = await visible_hook(request)
    return json_response((await change(request, hook, body)).public())


async def remove(request: web.Request, hook: Hook) -> None:
    await request.app[STORAGE].delete_hook(hook.id, request.app[CLOCK].now())
    if LOOP in request.app:
        request.app[LOOP].hook_changed(hook.id)


async def rotate(request: web.Request, hook: Hook) -> str:
    """A new secret for the hook, returned once; the old one signs too for ROTATION_WINDOW."""
    now = request.app[CLOCK].now()
    secret = new_secret()
    await request.app[STORAGE].rotate_secret(hook.id, secret, now + ROTATION_WINDOW, now)
    return secret


@routes.delete("/v1/hooks/{id}")
async def delete_hook(request: web.Request) -> web.Response:
    _hook_roles(request)
    await remove(request, await visible_hook(request))
    return web.Response(status=204)


@routes.post("/v1/hooks/{id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    _hook_roles(request)
    return json_response({"secret": await rotate(request, await visible_hook(request))})
