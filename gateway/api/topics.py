"""The topic catalog: listed to everyone with a key, changed by admins."""

from __future__ import annotations

from aiohttp import web

from gateway.api.common import CLOCK, STORAGE, expect_object, json_response, principal, read_json
from gateway.config import TOPIC_NAME
from gateway.errors import Unprocessable
from gateway.models import Role, Topic

routes = web.RouteTableDef()


@routes.get("/v1/topics")
async def list_topics(request: web.Request) -> web.Response:
    principal(request)
    topics = await request.app[STORAGE].list_topics()
    return json_response({"data": [t.public() for t in topics]})


@routes.put("/v1/topics/{name}")
async def put_topic(request: web.Request) -> web.Response:
    principal(request).require(Role.ADMIN)
    name = request.match_info["name"]
    if len(name) > 200 or not TOPIC_NAME.match(name):
        raise Unprocessable.field("name", "must be dotted lowercase words, e.g. contact.created")
    body = expect_object(await read_json(request), {"description"})
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 1000:
        raise Unprocessable.field("description", "must be a string of at most 1000 characters")
    [created] = await request.app[STORAGE].put_topics([(name, description)],
                                                      request.app[CLOCK].now())
    return json_response(Topic(name, description).public(), status=201 if created else 200)
