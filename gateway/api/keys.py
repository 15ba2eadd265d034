"""API keys over HTTP: create (shown once), list (never the key), revoke."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import (
    CLOCK,
    STORAGE,
    account_name,
    expect_object,
    json_response,
    principal,
    read_json,
)
from gateway.auth import generate_key, hash_key
from gateway.errors import NotFound, Unprocessable
from gateway.models import Role

routes = web.RouteTableDef()


@routes.post("/v1/keys")
async def create_key(request: web.Request) -> web.Response:
    principal(request).require(Role.ADMIN)
    body = expect_object(await read_json(request), {"role", "account"})
    try:
        role = Role(str(body.get("role")))
    except ValueError:
        raise Unprocessable.field("role", "must be admin, publisher or subscriber") from None
    account = body.get("account")
    if role is not Role.SUBSCRIBER:
        # Silently keeping it would suggest a publisher key can be scoped to one account.
        if account is not None:
            raise Unprocessable.field("account", f"only subscriber keys are bound to an account; "
                                                 f"a {role.value} key acts for every account")
    elif account is None:
        raise Unprocessable.field("account", "is required for a subscriber key")
    else:
        account = account_name(account)
    key = generate_key()
    rec = await request.app[STORAGE].create_key(role, account, hash_key(key), key[-4:],
                                                request.app[CLOCK].now())
    return json_response({"id": rec.id, "key": key, "role": rec.role.value,
                          "account": rec.account}, status=201)


@routes.get("/v1/keys")
async def list_keys(request: web.Request) -> web.Response:
    principal(request).require(Role.ADMIN)
    keys = await request.app[STORAGE].list_keys()
    return json_response({"data": [k.public() for k in keys]})


@routes.delete("/v1/keys/{id}")
async def revoke_key(request: web.Request) -> web.Response:
    principal(request).require(Role.ADMIN)
    rec = await request.app[STORAGE].revoke_key(request.match_info["id"], request.app[CLOCK].now())
    if rec is None:
        raise NotFound("no such key")
    return web.Response(status=204)
