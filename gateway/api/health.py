"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import CLOCK, CONFIG, LOOP, METRICS, STORAGE, json_response, principal
from gateway.models import Role
from gateway.openapi import openapi_document

routes = web.RouteTableDef()
PUBLIC = {"/healthz", "/readyz", "/openapi.json"}


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    storage = request.app[STORAGE]
    try:
        checks["database"] = "ok" if await storage.ping() else "failing"
    except Exception:
        checks["database"] = "failing"
    if checks["database"] == "ok" and not storage.writable:
        checks["database"] = "unwritable"
    loop = request.app.get(LOOP)
    checks["delivery_loop"] = "ok" if loop is not None and loop.running else "stopped"
    ready = all(v == "ok" for v in checks.values())
    return json_response({"status": "ok" if ready else "unavailable", "checks": checks},
                         status=200 if ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    if not request.app[CONFIG].security.metrics_public:
        principal(request).require(Role.ADMIN)
    m = request.app[METRICS]
    storage, now = request.app[STORAGE], request.app[CLOCK].now()
    m.backlog.set(await storage.due_backlog(now))
    if m.state.stale(now):
        m.state.hooks_by_status = await storage.hook_counts()
        m.state.pending = await storage.pending_count()
        m.state.counted_at = now
    return web.Response(body=m.render(), headers={"Content-Type": "text/plain; version=0.0.4"})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())
