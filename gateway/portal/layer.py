"""What every portal page goes through: the session cookie, the caller as an API principal,
CSRF and origin checks on every POST, security headers, and errors as HTML pages."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup
from multidict import MultiDict

from gateway.api.common import CLOCK, CONFIG, PRINCIPAL, STORAGE
from gateway.auth import Principal
from gateway.errors import ApiError, Forbidden, NotFound, Unprocessable
from gateway.logs import get_logger
from gateway.models import ApiKey, Role
from gateway.portal.sessions import SESSIONS, Session

log = get_logger("gateway.portal")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("portal_templates")
SESSION: web.RequestKey[Session] = web.RequestKey("portal_session")
FORM: web.RequestKey[MultiDict[str]] = web.RequestKey("portal_form")
_PRE: web.RequestKey[str] = web.RequestKey("portal_pre_token")
COOKIE = "gw_portal"
PRE_COOKIE = "gw_portal_pre"  # the CSRF token of the forms shown before a session exists
ROOT = "/portal/"
# No script at all, styles from our own file only, forms only to ourselves, never framed.
CSP = ("default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Portal links carry a token in their path: it must not leak to other sites as a referrer.
    # (Not no-referrer: under it browsers send "Origin: null" with our own forms.)
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.portal", "templates"),
        autoescape=True,  # everything a subscriber or publisher wrote is escaped by default
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(done=None, retryable=("failed", "pending", "delivered"))
    env.filters["when"] = when
    return env


def when(ts: float | None) -> str:
    """A time as people read it on these pages: to the second, UTC."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def secure(request: web.Request) -> bool:
    return request.app[CONFIG].server.public_url.startswith("https://")


def own_origin(request: web.Request) -> str:
    public = request.app[CONFIG].server.public_url.rstrip("/")
    if public:
        scheme, _, rest = public.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"
    return f"{request.scheme}://{request.host}"


def check_origin(request: web.Request) -> None:
    """A browser names where a POST comes from; one from another site is refused even before
    its token is looked at."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(f"a {site} request cannot change anything here")
    origin = request.headers.get("Origin")
    if origin is not None and origin != own_origin(request):
        raise Forbidden("this form was not sent from the portal's own pages")


def set_cookie(request: web.Request, resp: web.StreamResponse, name: str, value: str,
               max_age: float | None) -> None:
    resp.set_cookie(name, value, path=ROOT, httponly=True, samesite="Strict",
                    secure=secure(request),
                    max_age=None if max_age is None else max(0, int(max_age)))


def csrf_token(request: web.Request) -> str:
    if SESSION in request:
        return request[SESSION].csrf
    if _PRE not in request:
        request[_PRE] = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(32)
    return request[_PRE]


def render(request: web.Request, template: str, status: int = 200, **ctx: Any) -> web.Response:
    session: Session | None = request.get(SESSION)
    env = request.app[TEMPLATES]
    html = env.get_template(template).render(
        session=session, csrf=csrf_token(request), admin=session is not None
        and session.role is Role.ADMIN, path=request.path, **ctx)
    resp = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    if session is None and PRE_COOKIE not in request.cookies:
        set_cookie(request, resp, PRE_COOKIE, csrf_token(request), None)
    return resp


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def chart(svg: str) -> Markup:
    """A chart made by gateway.portal.charts, which escapes every text it draws."""
    return Markup(svg)


def field(name: str, request: web.Request) -> str:
    return request[FORM].get(name, "")


async def _session(request: web.Request) -> tuple[str, Session] | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    session = await request.app[SESSIONS].session(token, request.app[CLOCK].now())
    if session is None:
        return None
    if session.role is Role.ADMIN:
        assert session.key_hash is not None
        storage = request.app[STORAGE]
        key = storage.cached_key(session.key_hash) or await storage.fetch_key(session.key_hash)
        if key is None or key.role is not Role.ADMIN:  # revoked since: the session ends too
            await request.app[SESSIONS].end(token)
            return None
        request[PRINCIPAL] = Principal(key)
    else:
        assert session.account is not None
        # The subscriber the link was made for, as the API would see a key of that account:
        # every page goes through the API's own account checks with it.
        request[PRINCIPAL] = Principal(ApiKey("portal", Role.SUBSCRIBER, session.account,
                                              0.0, None, ""))
    return token, session


async def _form(request: web.Request) -> MultiDict[str]:
    try:
        raw = await request.post()
    except (ValueError, web.HTTPException):
        raise Forbidden("the form could not be read") from None
    return MultiDict((k, v) for k, v in raw.items() if isinstance(v, str))


def page(handler: Handler, *, signed_in: bool = True) -> Handler:
    """A portal handler inside the checks every page needs. signed_in=False: the sign-in and
    link pages, which a visitor without a session may use."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            if request.method == "POST":
                check_origin(request)  # before anything else: nothing from elsewhere counts
            found = await _session(request)
            if found is not None:
                request[SESSION] = found[1]
            if found is None and signed_in:
                resp: web.StreamResponse = redirect("/portal/sign-in")
            else:
                if request.method == "POST":
                    form = await _form(request)
                    expected = csrf_token(request)
                    if not hmac.compare_digest(form.get("csrf", "").encode(), expected.encode()):
                        raise Forbidden("the form's security token is missing or out of date; "
                                      "reload the page and try again")
                    request[FORM] = form
                resp = await handler(request)
        except NotFound:
            resp = render(request, "error.html", 404, title="Not found",
                          message="There is nothing here, or it is not yours to see.")
        except Forbidden as exc:  # a POST from elsewhere, or a role without the right
            resp = render(request, "error.html", 403, title="Refused", message=exc.detail)
        except Unprocessable as exc:
            resp = render(request, "error.html", 422, title="Not possible", message=exc.detail)
        except ApiError as exc:
            resp = render(request, "error.html", exc.status, title=exc.title,
                          message=exc.detail)
        except Exception:
            log.exception("portal_error", path=request.path)
            resp = render(request, "error.html", 500, title="Something went wrong",
                          message="The gateway could not show this page; its log says why.")
        for k, v in HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp

    return run
