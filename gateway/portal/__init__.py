"""The web portal at /portal/: server-rendered pages (Jinja2), SVG charts drawn here, no script."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from gateway.errors import NotFound
from gateway.portal import pages, signin
from gateway.portal.layer import TEMPLATES, environment, page
from gateway.portal.sessions import SESSIONS, Sessions

STATIC = resources.files("gateway.portal") / "static"


async def _slash(request: web.Request) -> web.StreamResponse:
    return web.Response(status=308, headers={"Location": "/portal/"})


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise NotFound("no such page")


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name != "portal.css":
        raise NotFound("no such file")
    resp = web.Response(body=(STATIC / name).read_bytes(), content_type="text/css")
    resp.headers["Cache-Control"] = "max-age=300"
    return resp


def setup(app: web.Application) -> None:
    """Add the portal's routes; call before the API's catch-all route."""
    app[TEMPLATES] = environment()
    app[SESSIONS] = Sessions(app)
    r = app.router
    r.add_get("/portal", _slash)
    r.add_get("/portal/static/{name}", page(_static, signed_in=False))
    r.add_get("/portal/sign-in", page(signin.sign_in_page, signed_in=False))
    r.add_post("/portal/sign-in", page(signin.sign_in, signed_in=False))
    r.add_post("/portal/sign-out", page(signin.sign_out, signed_in=False))
    pages.add_routes(app, page)
    r.add_route("*", "/portal/{tail:.*}", page(_not_found, signed_in=False))
