"""HTTP resources, one module each; `routes()` gathers their route tables."""

from __future__ import annotations

from aiohttp import web

from gateway.api import (
    deliveries,
    events,
    health,
    hooks,
    keys,
    portal_sessions,
    recovery,
    topics,
)


def routes() -> list[web.RouteTableDef]:
    return [health.routes, keys.routes, topics.routes, hooks.routes, events.routes,
            deliveries.routes, recovery.routes, portal_sessions.routes]
