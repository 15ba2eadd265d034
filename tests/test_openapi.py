"""The OpenAPI document: valid 3.1 (openapi-spec-validator), every route documented with an
operationId, a tag, a description and an example, nothing documented that is not routed, and
what the gateway really answers and sends matching the documented schemas."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from gateway.openapi import OPERATIONS, openapi_document
from tests.conftest import Gateway, Receiver, wait_until

StartGateway = Callable[..., Awaitable[Gateway]]
METHODS = {"get", "put", "post", "patch", "delete"}
# HTML pages of the portal are not part of the JSON API the document describes.
UNDOCUMENTED_PREFIXES = ("/portal",)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method in METHODS:
                yield method, path, op


def check(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: object) -> None:
    """`value` matches `schema`, whose references point into the document's components."""
    errors = sorted(OAS31Validator({**schema, "components": doc["components"]}).iter_errors(value),
                    key=str)
    assert not errors, (where, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                                for e in errors[:3]])


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def object_schemas(doc: dict[str, Any], schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every object schema `schema` is made of, through references, allOf/oneOf and items."""
    schema = resolve(doc, schema)
    if schema.get("type") == "object" and "properties" in schema:
        yield schema
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key, []):
            yield from object_schemas(doc, part)
    if "items" in schema:
        yield from object_schemas(doc, schema["items"])
    for prop in schema.get("properties", {}).values():
        yield from object_schemas(doc, prop)


async def test_the_served_document_is_valid_openapi_3_1(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, served, resp = await gw.call("GET", "/openapi.json")
    assert status == 200
    assert resp.content_type == "application/json"
    assert served["openapi"] == "3.1.0"
    validate_spec(served)  # raises, naming the part, when it is not
    assert served == orjson.loads(orjson.dumps(openapi_document()))


async def test_every_route_is_documented_and_nothing_else(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    routed: set[tuple[str, str]] = set()
    for route in gw.app.router.routes():
        if route.method == "HEAD" or route.name == "unmatched":
            continue  # (the catch-all that answers 404 and 405 as problem documents)
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        assert path, route
        if not path.startswith(UNDOCUMENTED_PREFIXES):
            routed.add((route.method.lower(), path))
    documented = {(m, p) for m, p, _ in operations(openapi_document())}
    assert routed - documented == set(), "routes missing from /openapi.json"
    assert documented - routed == set(), "/openapi.json documents routes that do not exist"


def test_every_operation_has_an_id_a_tag_a_description_and_an_example(
        doc: dict[str, Any]) -> None:
    tags = {t["name"] for t in doc["tags"]}
    ids: list[str] = []
    for method, path, op in operations(doc):
        where = (method, path)
        ids.append(op["operationId"])
        assert re.fullmatch(r"[a-z][A-Za-z]+", op["operationId"]), where
        assert op["tags"] and set(op["tags"]) <= tags, where
        assert op["summary"] and op["description"], where
        assert any(code.startswith("2") for code in op["responses"]), where
        for code, response in op["responses"].items():
            assert response["description"], (where, code)
            for media in response.get("content", {}).values():
                if code.startswith("2"):
                    assert "example" in media, (where, code)
        if "requestBody" in op:
            [media] = op["requestBody"]["content"].values()
            assert "example" in media, where
        for param in op.get("parameters", []):
            assert param.get("description"), (where, param["name"])
            if param["in"] == "path":
                assert param.get("example"), (where, param["name"])
        for name in re.findall(r"{(\w+)}", path):
            assert any(p["name"] == name and p["in"] == "path"
                       for p in op.get("parameters", [])), (where, name)
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    assert len(ids) == len(OPERATIONS)


def test_the_examples_match_their_schemas(doc: dict[str, Any]) -> None:
    for method, path, op in [*operations(doc),
                             *((m, f"webhook {n}", o) for n, ops in doc["webhooks"].items()
                               for m, o in ops.items())]:
        contents = [(code, r.get("content", {})) for code, r in op["responses"].items()]
        if "requestBody" in op:
            contents.append(("body", op["requestBody"]["content"]))
        for code, content in contents:
            for media_type, media in content.items():
                if "example" in media and media_type.endswith("json"):
                    check(doc, media["schema"], media["example"], (method, path, code))
        for param in op.get("parameters", []):
            if "example" in param:
                check(doc, param["schema"], param["example"], (method, path, param["name"]))


def test_every_response_schema_says_what_is_required(doc: dict[str, Any]) -> None:
    found = 0
    for method, path, op in operations(doc):
        for code, response in op["responses"].items():
            for media in response.get("content", {}).values():
                for schema in object_schemas(doc, media["schema"]):
                    found += 1
                    assert schema.get("required"), (method, path, code, schema)
                    assert set(schema["required"]) <= set(schema["properties"]), (method, path)
    assert found > len(OPERATIONS)


async def test_only_the_public_endpoints_are_public(doc: dict[str, Any]) -> None:
    assert doc["security"] == [{"bearer": []}]
    public = {p for _, p, op in operations(doc) if op.get("security") == []}
    assert public == {"/healthz", "/readyz", "/openapi.json"}
    hook = doc["components"]["schemas"]["HookCreate"]["properties"]
    assert {"target_url", "topics", "event", "payload", "ordered", "description", "headers",
            "account"} <= set(hook)


def test_the_webhooks_describe_the_delivery_and_the_handshake(doc: dict[str, Any]) -> None:
    delivery = doc["webhooks"]["delivery"]["post"]
    assert {p["name"] for p in delivery["parameters"] if p["in"] == "header"} == {
        "webhook-id", "webhook-timestamp", "webhook-signature"}
    assert all(p["required"] for p in delivery["parameters"])
    [media] = delivery["requestBody"]["content"].values()
    assert media["schema"] == {"$ref": "#/components/schemas/WebhookBody"}
    assert {"2XX", "410"} <= set(delivery["responses"])
    handshake = doc["webhooks"]["handshake"]["post"]
    assert [p["name"] for p in handshake["parameters"]] == ["X-Hook-Secret"]
    assert "X-Hook-Secret" in handshake["responses"]["2XX"]["headers"]


# -- what the gateway really answers and sends, against the document -----------------------------


class Checked:
    """Calls the gateway and checks each answer against the documented response for its route
    and status; remembers which operations it saw."""

    def __init__(self, gw: Gateway, doc: dict[str, Any]) -> None:
        self.gw, self.doc = gw, doc
        self.seen: set[tuple[str, str, str]] = set()

    async def __call__(self, method: str, path: str, route: str, key: str | None, *,
                       expect: int, **kwargs: Any) -> Any:
        status, body, resp = await self.gw.call(method, path, key, **kwargs)
        assert status == expect, (method, path, body)
        responses = self.doc["paths"][route][method.lower()]["responses"]
        assert str(status) in responses, (method, route, status)
        content = responses[str(status)].get("content")
        if content is None:
            assert body is None, (method, route, body)
        else:
            media = content[resp.content_type]
            if resp.content_type.endswith("json"):
                check(self.doc, media["schema"], body, (method, route, status))
        self.seen.add((method.lower(), route, str(status)))
        return body


async def test_the_answers_match_the_document(start_gateway: StartGateway,
                                              make_receiver: Callable[..., Awaitable[Receiver]],
                                              doc: dict[str, Any]) -> None:
    gw = await start_gateway()
    ok, failing = await make_receiver(), await make_receiver()

    async def refuse(n: int, request: Any) -> tuple[int, dict[str, str], bytes]:
        if "X-Hook-Secret" in request.headers:
            return 200, {"X-Hook-Secret": request.headers["X-Hook-Secret"]}, b""
        return 500, {}, b"no"

    failing.respond = refuse
    call = Checked(gw, doc)
    admin, sub = gw.admin, gw.subscriber
    for path in ("/healthz", "/readyz", "/openapi.json"):
        await call("GET", path, path, None, expect=200)
    await call("GET", "/metrics", "/metrics", admin, expect=200)
    key = await call("POST", "/v1/keys", "/v1/keys", admin, expect=201,
                     json={"role": "subscriber", "account": "acme"})
    await call("GET", "/v1/keys", "/v1/keys", admin, expect=200)
    await call("DELETE", f"/v1/keys/{key['id']}", "/v1/keys/{id}", admin, expect=204)
    await call("GET", "/v1/topics", "/v1/topics", sub, expect=200)
    for expect in (201, 200):
        await call("PUT", "/v1/topics/deal.won", "/v1/topics/{name}", admin, expect=expect,
                   json={"description": "A deal was won."})
    hook = await call("POST", "/v1/hooks", "/v1/hooks", sub, expect=201,
                      json={"target_url": ok.url + "/in", "topics": ["contact.created"]})
    bad = await call("POST", "/v1/hooks", "/v1/hooks", sub, expect=201,
                     json={"target_url": failing.url + "/in", "topics": ["deal.won"],
                           "payload": "skinny"})
    await call("GET", "/v1/hooks", "/v1/hooks", sub, expect=200)
    await call("GET", f"/v1/hooks/{hook['id']}", "/v1/hooks/{id}", sub, expect=200)
    await call("PATCH", f"/v1/hooks/{hook['id']}", "/v1/hooks/{id}", sub, expect=200,
               json={"description": "CRM sync"})
    await call("POST", f"/v1/hooks/{hook['id']}/rotate-secret", "/v1/hooks/{id}/rotate-secret",
               sub, expect=200)
    event = await call("POST", "/v1/events", "/v1/events", gw.publisher, expect=202,
                       json={"topic": "contact.created", "account": "acme", "data": {"n": 1}})
    await call("POST", "/v1/events", "/v1/events", gw.publisher, expect=202,
               json=[{"topic": "deal.won", "account": "acme", "data": {"n": 2}}])
    await call("GET", f"/v1/events/{event['id']}", "/v1/events/{id}", sub, expect=200)
    await ok.wait_for(1)

    async def failed() -> Any:
        _, page, _ = await gw.call("GET", f"/v1/hooks/{bad['id']}/deliveries?status=failed", sub)
        return page["data"]

    await wait_until(failed, what="the failing hook's delivery to fail")
    [gone] = await failed()
    await call("GET", f"/v1/hooks/{hook['id']}/deliveries", "/v1/hooks/{id}/deliveries", sub,
               expect=200)
    await call("GET", f"/v1/deliveries/{gone['id']}", "/v1/deliveries/{id}", sub, expect=200)
    await call("POST", f"/v1/deliveries/{gone['id']}/retry", "/v1/deliveries/{id}/retry", sub,
               expect=202)
    await call("GET", "/v1/events?topic=contact.created&since=2000-01-01T00:00:00Z",
               "/v1/events", sub, expect=200)
    await call("POST", f"/v1/hooks/{bad['id']}/recover", "/v1/hooks/{id}/recover", sub,
               expect=202, json={"since": "2000-01-01T00:00:00Z", "statuses": ["failed"]})
    await call("POST", f"/v1/hooks/{hook['id']}/test", "/v1/hooks/{id}/test", sub, expect=202)
    await call("POST", "/v1/portal/sessions", "/v1/portal/sessions", admin, expect=201,
               json={"account": "acme", "ttl_seconds": 60})
    await call("POST", f"/v1/hooks/{hook['id']}/recover", "/v1/hooks/{id}/recover", sub,
               expect=422, json={"since": "yesterday"})
    # Problems, as documented.
    await call("GET", "/v1/hooks/hook_nope", "/v1/hooks/{id}", sub, expect=404)
    await call("GET", "/v1/keys", "/v1/keys", None, expect=401)
    await call("GET", "/v1/keys", "/v1/keys", sub, expect=403)
    await call("POST", "/v1/events", "/v1/events", gw.publisher, expect=400, data=b"{nope")
    await call("POST", "/v1/events", "/v1/events", gw.publisher, expect=422,
               json={"topic": "no.such", "account": "acme"})
    await call("DELETE", f"/v1/hooks/{hook['id']}", "/v1/hooks/{id}", sub, expect=204)
    known = {(op.method, op.path) for op in OPERATIONS if not op.path.startswith("/v1/portal")}
    assert {(m, r) for m, r, _ in call.seen} >= {
        k for k in known if k[1] in {
            "/healthz", "/readyz", "/openapi.json", "/metrics", "/v1/keys", "/v1/keys/{id}",
            "/v1/topics", "/v1/topics/{name}", "/v1/hooks", "/v1/hooks/{id}",
            "/v1/hooks/{id}/rotate-secret", "/v1/hooks/{id}/deliveries", "/v1/events/{id}",
            "/v1/deliveries/{id}", "/v1/deliveries/{id}/retry", "/v1/events",
            "/v1/hooks/{id}/recover", "/v1/hooks/{id}/test"}} | {
        ("post", "/v1/events"), ("post", "/v1/portal/sessions")}

    # What the targets received: the documented headers and bodies.
    schemas = doc["webhooks"]
    body_schema = schemas["delivery"]["post"]["requestBody"]["content"]["application/json"]
    for received in [*ok.deliveries, *failing.deliveries]:
        for header in schemas["delivery"]["post"]["parameters"]:
            assert received.headers.get(header["name"]), header["name"]
        check(doc, body_schema["schema"], orjson.loads(received.body), received.path)
    assert "data" in orjson.loads(ok.deliveries[0].body)
    assert "resource_url" in orjson.loads(failing.deliveries[0].body)
    handshake = schemas["handshake"]["post"]["requestBody"]["content"]["application/json"]
    for received in ok.handshakes:
        check(doc, handshake["schema"], orjson.loads(received.body), "handshake")
