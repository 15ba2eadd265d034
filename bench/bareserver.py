"""The ingest baseline: a bare aiohttp server (uvloop) in its own process.

POST /v1/events reads the body, parses it with orjson, checks it is an event or a list of
events, and answers 202 with an answer of the gateway's shape — nothing durable, no auth
lookup, no validation beyond that. Everything the gateway adds over this is what the ratio
measures.

Run: python bench/bareserver.py --port 9100
"""

from __future__ import annotations

import argparse

import orjson
import uvloop
from aiohttp import web
from serving import serve_until_signalled

ANSWER = {"id": "evt_01jd0000000000000000000000", "deliveries": 1}


async def publish(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    if isinstance(body, list):
        if not all(isinstance(e, dict) and "topic" in e for e in body):
            return web.Response(status=422)
        out = orjson.dumps({"data": [ANSWER] * len(body)})
    else:
        if not isinstance(body, dict) or "topic" not in body:
            return web.Response(status=422)
        out = orjson.dumps(ANSWER)
    return web.Response(body=out, status=202, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(host: str, port: int) -> None:
    app = web.Application(client_max_size=262144)
    app.router.add_post("/v1/events", publish)
    app.router.add_get("/readyz", health)
    await serve_until_signalled(app, host, port)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    uvloop.run(serve(a.host, a.port))


if __name__ == "__main__":
    main()
