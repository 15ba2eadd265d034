"""Errors: every one is application/problem+json naming the problem; bad input is never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest

from tests.conftest import Gateway, Receiver

StartGateway = Callable[..., Awaitable[Gateway]]
PROBLEM_KEYS = {"type", "title", "status", "detail"}


def assert_problem(status: int, body: Any, content_type: str, expected: int) -> None:
    assert status == expected, body
    assert content_type == "application/problem+json", (status, content_type)
    assert isinstance(body, dict), body
    assert set(body) >= PROBLEM_KEYS, body
    assert body["status"] == expected
    assert all(isinstance(body[k], str) and body[k] for k in ("type", "title", "detail"))


async def body_endpoints(gw: Gateway, receiver: Receiver) -> list[tuple[str, str, str]]:
    """(method, path, key) of every endpoint that reads a JSON body."""
    hook = await gw.hook(receiver)
    return [("POST", "/v1/keys", gw.admin), ("PUT", "/v1/topics/fuzz.topic", gw.admin),
            ("POST", "/v1/hooks", gw.subscriber), ("POST", "/v1/hooks", gw.admin),
            ("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber),
            ("POST", "/v1/events", gw.publisher)]


@pytest.mark.parametrize("raw", [b"{", b"not json", b"{'a': 1}", b'{"a": 1,}', b"\xff\xfe",
                                 b"", b"   ", b"[1, 2", b"NaN", b'{"a": "\\ud800"}'])
async def test_a_body_that_is_not_json_is_400(start_gateway: StartGateway, receiver: Receiver,
                                              raw: bytes) -> None:
    gw = await start_gateway()
    for method, path, key in await body_endpoints(gw, receiver):
        status, body, resp = await gw.call(method, path, key, data=raw,
                                           headers={"Content-Type": "application/json"})
        assert_problem(status, body, resp.content_type, 400)
        assert "JSON" in body["detail"], (method, path, body)


@pytest.mark.parametrize("payload", [[], [{}], 5, "text", None, True, 1.5])
async def test_json_that_is_not_an_object_is_422(start_gateway: StartGateway, receiver: Receiver,
                                                 payload: Any) -> None:
    gw = await start_gateway()
    for method, path, key in await body_endpoints(gw, receiver):
        if path == "/v1/events" and isinstance(payload, list):
            continue  # an array there is a batch; test_publish covers it
        status, body, resp = await gw.call(method, path, key, data=orjson.dumps(payload))
        assert_problem(status, body, resp.content_type, 422)
        assert body["errors"][0]["field"]
        assert "message" in body["errors"][0]


@pytest.mark.parametrize(("index", "payload", "field"), [
    (0, {"role": "admin", "extra": 1}, "extra"),
    (0, {"role": 5}, "role"),
    (1, {"description": ["x"]}, "description"),
    (1, {"descriptio": "x"}, "descriptio"),
    (2, {"target_url": "http://127.0.0.1:9/", "topics": ["*"], "topcs": []}, "topcs"),
    (2, {"target_url": ["http://127.0.0.1:9/"], "topics": ["*"]}, "target_url"),
    (2, {"target_url": "http://127.0.0.1:9/", "topics": ["*"], "ordered": "true"}, "ordered"),
    (4, {"status": "gone"}, "status"),
    (4, {"target": "http://x"}, "target"),
    (5, {"topic": "contact.created", "account": "acme", "colour": 1}, "colour"),
    (5, {"topic": 5, "account": "acme"}, "topic"),
    (5, {"topic": "contact.created", "account": ["acme"]}, "account"),
])
async def test_rule_breaking_json_names_the_field(start_gateway: StartGateway,
                                                  receiver: Receiver, index: int,
                                                  payload: dict[str, Any], field: str) -> None:
    gw = await start_gateway()
    method, path, key = (await body_endpoints(gw, receiver))[index]
    status, body, resp = await gw.call(method, path, key, json=payload)
    assert_problem(status, body, resp.content_type, 422)
    assert body["errors"][0]["field"] == field
    assert field in body["detail"]


async def test_an_oversized_body_is_413(start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway(server={"max_body_bytes": 2048})
    big = {"description": "x" * 5000}
    for method, path, key in await body_endpoints(gw, receiver):
        status, body, resp = await gw.call(method, path, key, json=big)
        assert_problem(status, body, resp.content_type, 413)
        assert "2048" in body["detail"]


async def test_an_oversized_chunked_body_is_413(start_gateway: StartGateway,
                                                receiver: Receiver) -> None:
    gw = await start_gateway(server={"max_body_bytes": 2048})

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"description": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    for method, path, key in await body_endpoints(gw, receiver):
        async with gw.http.request(method, gw.url(path), data=chunks(),
                                   headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.headers.get("Content-Length") != "0"
            body = await resp.json(content_type=None)
            assert_problem(resp.status, body, resp.content_type, 413)


async def test_a_body_just_under_the_limit_is_read(start_gateway: StartGateway) -> None:
    gw = await start_gateway(server={"max_body_bytes": 2048})
    status, body, _ = await gw.call("PUT", "/v1/topics/a.b", gw.admin,
                                    json={"description": "x" * 900})
    assert status == 201, body


async def test_an_unknown_route_is_a_404_problem(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    for path in ("/nope", "/v1/hook", "/v1/hooks/x/y/z", "/v2/hooks"):
        status, body, resp = await gw.call("GET", path, gw.admin)
        assert_problem(status, body, resp.content_type, 404)
    # Without a key: still a problem document (it says 401 before anything about routes).
    status, body, resp = await gw.call("GET", "/nope")
    assert_problem(status, body, resp.content_type, 401)


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/v1/hooks"), ("DELETE", "/v1/topics"), ("POST", "/v1/topics/a.b"),
    ("GET", "/v1/hooks/hook_x/rotate-secret"), ("PUT", "/v1/keys/key_x"), ("DELETE", "/v1/events"),
])
async def test_a_wrong_method_is_a_405_problem(start_gateway: StartGateway, method: str,
                                               path: str) -> None:
    gw = await start_gateway()
    status, body, resp = await gw.call(method, path, gw.admin)
    assert_problem(status, body, resp.content_type, 405)
    assert resp.headers["Allow"]
    assert method not in resp.headers["Allow"].split(", ")


RAW_FUZZ = [
    b"{", b"}", b"[", b"]", b"nul", b"\x00", b"\xff", b"{'a':1}", b'{"a":}', b'{"a":1,}',
    b"NaN", b"Infinity", b"-", b'"\\ud800"', b"1e999", b"9" * 400, b"[" * 3000, b"{" * 3000,
    b'{"target_url": "\x00"}', b'{"description": "\\udfff"}', b'{"a": 1} {"b": 2}',
    b"\xef\xbb\xbf{}", b'{"topics": ["\\u0000"]}', b'{"role": "admin", "role": "admin"}',
    b'{"limit": 18446744073709551616}', b'{"ordered": 1e400}',
]
JSON_FUZZ: list[Any] = [
    None, True, 0, -1, 1.5, "str", [], [None], [{}], [1, 2], [[]], {}, {"": 1}, {"\u0000": 1},
    {"role": None}, {"role": 1}, {"role": {"$ne": 1}}, {"role": "subscriber", "account": None},
    {"role": "subscriber", "account": "../../etc"}, {"role": "subscriber", "account": "a" * 5000},
    {"target_url": None, "topics": None}, {"target_url": "", "topics": ["*"]},
    {"target_url": None, "topics": ["*"]}, {"target_url": None},
    {"target_url": "http://", "topics": ["*"]}, {"target_url": "http://[::1", "topics": ["*"]},
    {"target_url": "http://127.0.0.1:99999/", "topics": ["*"]},
    {"target_url": "https://" + "a" * 3000 + ".com/", "topics": ["*"]},
    {"target_url": "javascript:alert(1)", "topics": ["*"]},
    {"target_url": "http://127.0.0.1:9/", "topics": [None]},
    {"target_url": "http://127.0.0.1:9/", "topics": [[]]},
    {"target_url": "http://127.0.0.1:9/", "topics": [{}]},
    {"target_url": "http://127.0.0.1:9/", "topics": ["*"] * 200},
    {"target_url": "http://127.0.0.1:9/", "event": None},
    {"target_url": "http://127.0.0.1:9/", "event": {}},
    {"target_url": "http://127.0.0.1:9/", "topics": ["*"], "headers": {"": "v"}},
    {"target_url": "http://127.0.0.1:9/", "topics": ["*"], "headers": {"X": None}},
    {"target_url": "http://127.0.0.1:9/", "topics": ["*"], "headers": {"X": "\u0000"}},
    {"target_url": "http://127.0.0.1:9/", "topics": ["*"], "headers": {"X": ["a"]}},
    {"target_url": "http://127.0.0.1:9/", "topics": ["*"], "headers": {"\u00e9": "v"}},
    {"target_url": "http://127.0.0.1:9/", "topics": ["*"], "account": {}},
    {"payload": None}, {"payload": {}}, {"payload": []}, {"ordered": None}, {"ordered": []},
    {"description": None}, {"description": {}}, {"status": None}, {"status": []}, {"status": {}},
    {"status": "removed"}, {"account": []}, {"headers": None}, {"headers": "X: 1"},
    {"topic": None, "account": "acme"}, {"topic": "contact.created", "account": None},
    {"topic": "contact.created", "account": "acme", "idempotency_key": 5},
    {"topic": "contact.created", "account": "acme", "idempotency_key": ""},
    {"topic": "contact.created", "account": "acme", "idempotency_key": "k" * 300},
    {"topic": "contact.created", "account": "acme", "resource_url": 5},
    {"topic": "contact.created", "account": "acme", "resource_url": "ftp://x"},
    {"topic": "nope.nope", "account": "acme", "data": {}},
    {"topic": "*", "account": "acme"}, {"topic": "contact.*", "account": "acme"},
    [{"topic": "contact.created", "account": "acme"}, 5],
    [{"topic": "contact.created", "account": "acme", "nope": 1}],
]


async def test_fuzzed_bodies_never_yield_a_500(start_gateway: StartGateway,
                                               receiver: Receiver) -> None:
    gw = await start_gateway()
    endpoints = await body_endpoints(gw, receiver)
    hook = (await gw.call("GET", "/v1/hooks", gw.subscriber))[1]["data"][0]
    endpoints += [("POST", f"/v1/hooks/{hook['id']}/rotate-secret", gw.subscriber),
                  ("POST", "/v1/deliveries/dlv_nope/retry", gw.admin)]
    bodies = [*RAW_FUZZ, *(orjson.dumps(v) for v in JSON_FUZZ)]
    assert len(bodies) >= 50
    seen: set[int] = set()
    for method, path, key in endpoints:
        for raw in bodies:
            status, body, resp = await gw.call(method, path, key, data=raw,
                                               headers={"Content-Type": "application/json"})
            assert status < 500, (method, path, raw[:80], body)
            seen.add(status)
            if status >= 400:
                assert_problem(status, body, resp.content_type, status)
    assert {400, 422} <= seen
    # Still healthy afterwards.
    assert (await gw.call("GET", "/readyz"))[0] == 200


ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**63, 1.5, "", " ", "x" * 3000, "\u0000", "\u00e9", "*", "a.*",
    [], [None], [[]], [{}], ["*"], ["x" * 300], {}, {"a": None}, {"X-A": None}, {"X-A": ["v"]},
]


async def test_every_field_with_odd_values_never_yields_a_500(start_gateway: StartGateway,
                                                              receiver: Receiver) -> None:
    """Each field of a valid body replaced in turn by odd values: errors come from validation."""
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    hook_body = {"target_url": receiver.url + "/h", "topics": ["contact.created"]}
    hook_fields = ["target_url", "topics", "event", "payload", "ordered", "description",
                   "headers", "account"]
    event = {"topic": "contact.created", "account": "acme", "data": {"n": 1}}
    event_fields = ["topic", "account", "resource_url", "idempotency_key"]  # data: anything goes
    cases: list[tuple[str, str, str, Any, list[str]]] = [
        ("POST", "/v1/keys", gw.admin, {"role": "subscriber", "account": "acme"},
         ["role", "account"]),
        ("PUT", "/v1/topics/fuzz.topic", gw.admin, {"description": "d"}, ["description"]),
        ("POST", "/v1/hooks", gw.subscriber, hook_body, hook_fields),
        ("POST", "/v1/hooks", gw.admin, {**hook_body, "account": "acme"}, hook_fields),
        ("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber, {}, [*hook_fields, "status"]),
        ("POST", "/v1/events", gw.publisher, event, event_fields),
        ("POST", "/v1/events", gw.publisher, [event], event_fields),
    ]
    seen: set[int] = set()
    for method, path, key, base, fields in cases:
        for field in fields:
            for value in ODD_VALUES:
                if isinstance(base, list):
                    body: Any = [{**base[0], field: value}]
                else:
                    body = {**base, field: value}
                status, out, resp = await gw.call(method, path, key, json=body)
                assert status < 500, (method, path, field, value, out)
                seen.add(status)
                if status >= 400:
                    assert_problem(status, out, resp.content_type, status)
                if status == 422:
                    assert out["errors"][0]["field"], out
    assert 422 in seen


@pytest.mark.parametrize("query", [
    "limit=", "limit=%00", "limit=1e3", "limit=99999999999999999999999", "cursor=%ff%fe",
    "cursor===", "cursor=a&cursor=b", "status=nope", "status=", "account=%00",
])
async def test_fuzzed_queries_never_yield_a_500(start_gateway: StartGateway, receiver: Receiver,
                                                query: str) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    for path in ("/v1/hooks", f"/v1/hooks/{hook['id']}/deliveries"):
        for key in (gw.admin, gw.subscriber):
            status, body, resp = await gw.call("GET", f"{path}?{query}", key)
            assert status < 500, (path, query, body)
            if status >= 400:
                assert_problem(status, body, resp.content_type, status)


@pytest.mark.parametrize("ident", ["%00", "..%2F..%2Fetc", "x" * 3000, "hook_%27%20OR%201%3D1",
                                   "%F0%9F%92%A9"])
async def test_odd_ids_are_404(start_gateway: StartGateway, ident: str) -> None:
    gw = await start_gateway()
    for method, path in [("GET", f"/v1/hooks/{ident}"), ("DELETE", f"/v1/hooks/{ident}"),
                         ("GET", f"/v1/events/{ident}"), ("GET", f"/v1/deliveries/{ident}"),
                         ("DELETE", f"/v1/keys/{ident}")]:
        status, body, resp = await gw.call(method, path, gw.admin)
        assert_problem(status, body, resp.content_type, 404)


async def test_keys_are_never_echoed(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    fake = "gw_" + "S3cr3tK3y" * 5
    for header in (f"Bearer {fake}", fake, f"Basic {fake}", f"Bearer {fake} extra"):
        status, body, resp = await gw.call("GET", "/v1/keys", headers={"Authorization": header})
        assert_problem(status, body, resp.content_type, 401)
        text = await resp.text()
        assert "S3cr3tK3y" not in text
        assert "S3cr3tK3y" not in str(dict(resp.headers))
    # A key sent where data belongs is not echoed either.
    status, body, resp = await gw.call("POST", "/v1/keys", gw.admin,
                                       json={"role": "subscriber", "account": f"{gw.admin} x"})
    assert_problem(status, body, resp.content_type, 422)
    assert gw.admin not in await resp.text()
    status, body, resp = await gw.call("GET", "/v1/keys", gw.publisher)
    assert_problem(status, body, resp.content_type, 403)
    assert gw.publisher not in await resp.text()


async def test_secrets_and_keys_never_reach_the_logs(start_gateway: StartGateway,
                                                     receiver: Receiver,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    gw = await start_gateway(log={"access": True})
    hook = await gw.hook(receiver)
    _, rotated, _ = await gw.call("POST", f"/v1/hooks/{hook['id']}/rotate-secret", gw.subscriber)
    _, created, _ = await gw.call("POST", "/v1/keys", gw.admin, json={"role": "publisher"})
    await gw.call("GET", "/v1/keys", "gw_" + "L0gg3dK3y" * 5)
    await gw.call("GET", "/v1/keys", gw.publisher)
    await gw.call("POST", "/v1/hooks", gw.subscriber, data=b"{bad")
    out = capsys.readouterr()
    logs = out.out + out.err
    assert "request" in logs and "/v1/hooks" in logs  # the access log did run
    handshake_token = receiver.handshakes[0].headers["X-Hook-Secret"]
    for secret in (gw.admin, gw.publisher, gw.subscriber, created["key"], hook["secret"],
                   rotated["secret"], "L0gg3dK3y", handshake_token):
        assert secret not in logs
