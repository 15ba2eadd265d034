"""Portal sign-in links: an admin makes one for an account; the token is stored hashed.

The portal (gateway/portal) signs a subscriber in with the link's token: it hashes the token
with auth.hash_key and asks Storage.portal_session(token_hash) for (account, expires_at)."""

from __future__ import annotations

import secrets

from aiohttp import web

from gateway.api.common import (
    CLOCK,
    CONFIG,
    STORAGE,
    account_name,
    expect_object,
    json_response,
    principal,
    read_json,
)
from gateway.auth import hash_key
from gateway.errors import Unprocessable
from gateway.models import Role, iso

routes = web.RouteTableDef()

# Where a link signs in: GET SIGN_IN_PATH?token=<token> (served by the portal).
SIGN_IN_PATH = "/portal/sign-in"
TOKEN_PREFIX = "gwp_"
DEFAULT_TTL = 3600
MAX_TTL = 7 * 24 * 3600


def new_token() -> str:
    """A sign-in token: 32 random bytes, URL-safe; a prefix tells it from an API key."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@routes.post("/v1/portal/sessions")
async def create_session(request: web.Request) -> web.Response:
    principal(request).require(Role.ADMIN)
    body = expect_object(await read_json(request), {"account", "ttl_seconds"})
    if "account" not in body:
        raise Unprocessable.field("account", "is required")
    account = account_name(body["account"])
    ttl = body.get("ttl_seconds", DEFAULT_TTL)
    # (bool is an int to Python; true is no number of seconds.)
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL:
        raise Unprocessable.field("ttl_seconds", f"must be a number of seconds from 1 to {MAX_TTL}")
    now = request.app[CLOCK].now()
    token = new_token()
    expires_at = now + ttl
    await request.app[STORAGE].create_portal_session(hash_key(token), account, expires_at, now)
    url = f"{request.app[CONFIG].server.public_url}{SIGN_IN_PATH}?token={token}"
    return json_response({"url": url, "expires_at": iso(expires_at)}, status=201)
