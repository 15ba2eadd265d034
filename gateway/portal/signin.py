"""Signing in and out: operators with an admin key, subscribers through a link an admin made.
Either way the cookie holds a new random session token (stored hashed), never the key or link."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import CLOCK, STORAGE
from gateway.auth import hash_key
from gateway.models import Role
from gateway.portal.interim_sessions import SESSIONS
from gateway.portal.layer import COOKIE, SESSION, field, redirect, render, set_cookie

OPERATOR_SESSION = 8 * 3600.0  # an operator signs in again after a working day


async def sign_in_form(request: web.Request) -> web.Response:
    if SESSION in request:
        return redirect("/portal/")
    return render(request, "sign_in.html", error=None)


async def sign_in(request: web.Request) -> web.Response:
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
    token, _ = await request.app[SESSIONS].create_session(
        Role.ADMIN, None, hash_key(key), now + OPERATOR_SESSION, now)
    resp = redirect("/portal/")
    set_cookie(request, resp, COOKIE, token, OPERATOR_SESSION)
    return resp


async def _link(request: web.Request) -> tuple[str, float] | web.Response:
    token = request.match_info["token"]
    link = await request.app[SESSIONS].link(token) if len(token) <= 100 else None
    now = request.app[CLOCK].now()
    if link is None:
        return render(request, "link.html", 404, state="unknown", account=None, expires_at=None)
    if link.expires_at <= now:
        return render(request, "link.html", 410, state="expired", account=link.account,
                      expires_at=link.expires_at)
    return link.account, link.expires_at


async def link_page(request: web.Request) -> web.Response:
    """A link opens on a page with one button rather than signing in on GET: mail scanners
    that fetch links do not sign anyone in, and the session cookie (SameSite=Strict) is then
    set by a request from the portal itself."""
    found = await _link(request)
    if isinstance(found, web.Response):
        return found
    account, expires_at = found
    return render(request, "link.html", state="open", account=account, expires_at=expires_at)


async def open_link(request: web.Request) -> web.Response:
    found = await _link(request)
    if isinstance(found, web.Response):
        return found
    account, expires_at = found
    now = request.app[CLOCK].now()
    token, _ = await request.app[SESSIONS].create_session(
        Role.SUBSCRIBER, account, None, expires_at, now)
    resp = redirect("/portal/")
    set_cookie(request, resp, COOKIE, token, expires_at - now)
    return resp


async def sign_out(request: web.Request) -> web.Response:
    token = request.cookies.get(COOKIE)
    if token:
        await request.app[SESSIONS].end_session(token)
    resp = redirect("/portal/sign-in")
    resp.del_cookie(COOKIE, path="/portal/")
    return resp
