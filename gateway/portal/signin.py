"""Signing in and out at /portal/sign-in: operators with an admin key; subscribers through the
link an admin made (POST /v1/portal/sessions: /portal/sign-in?token=…). Either way the cookie
holds a new random session token (stored hashed), never the key or the link's token."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import CLOCK, STORAGE
from gateway.auth import hash_key
from gateway.models import Role
from gateway.portal.layer import COOKIE, SESSION, field, redirect, render, set_cookie
from gateway.portal.sessions import SESSIONS

OPERATOR_SESSION = 8 * 3600.0  # an operator signs in again after a working day


async def sign_in_page(request: web.Request) -> web.Response:
    token = request.query.get("token")
    if token is not None:
        return await _link_page(request, token)
    if SESSION in request:
        return redirect("/portal/")
    return render(request, "sign_in.html", error=None)


async def _link_page(request: web.Request, token: str) -> web.Response:
    """A link opens on a page with one button rather than signing in on GET: mail scanners
    that fetch links sign no one in, and the session cookie (SameSite=Strict) is then set by a
    request from the portal itself."""
    found = await request.app[SESSIONS].link(token)
    if found is None:
        return render(request, "link.html", 404, state="unknown", account=None,
                      expires_at=None, token="")
    account, expires_at = found
    if expires_at <= request.app[CLOCK].now():
        return render(request, "link.html", 410, state="expired", account=account,
                      expires_at=expires_at, token="")
    return render(request, "link.html", state="open", account=account, expires_at=expires_at,
                  token=token)


async def sign_in(request: web.Request) -> web.Response:
    if field("token", request):
        return await _open_link(request, field("token", request))
    key = field("key", request).strip()
    storage = request.app[STORAGE]
    found = None
    if key.isascii() and 0 < len(key) <= 200:
        h = hash_key(key)
        found = storage.cached_key(h) or await storage.fetch_key(h)
    if found is None or found.role is not Role.ADMIN:
        # One answer for an unknown key and another role: the form tells nothing about keys.
        return render(request, "sign_in.html", 401,
                      error="That is not a valid admin key. Subscribers open the portal "
                            "through a link from their operator.")
    now = request.app[CLOCK].now()
    token = await request.app[SESSIONS].open_operator(hash_key(key), now + OPERATOR_SESSION, now)
    resp = redirect("/portal/")
    set_cookie(request, resp, COOKIE, token, OPERATOR_SESSION)
    return resp


async def _open_link(request: web.Request, token: str) -> web.Response:
    found = await request.app[SESSIONS].link(token)
    now = request.app[CLOCK].now()
    if found is None or found[1] <= now:
        return await _link_page(request, token)  # the page says which
    account, expires_at = found
    # A session of its own, ending with the link: signing out ends it, not the link.
    session = await request.app[SESSIONS].open_subscriber(account, expires_at, now)
    resp = redirect("/portal/")
    set_cookie(request, resp, COOKIE, session, expires_at - now)
    return resp


async def sign_out(request: web.Request) -> web.Response:
    token = request.cookies.get(COOKIE)
    if token:
        await request.app[SESSIONS].end(token)
    resp = redirect("/portal/sign-in")
    resp.del_cookie(COOKIE, path="/portal/")
    return resp
