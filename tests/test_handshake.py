"""Intent verification (the REST Hooks X-Hook-Secret handshake) against real receivers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.conftest import Gateway, Receiver

StartGateway = Callable[..., Awaitable[Gateway]]
MakeReceiver = Callable[..., Awaitable[Receiver]]
Reply = tuple[int, dict[str, str], bytes]
STRICT = {"allow_private_targets": False}
NO_VERIFY = {"verify_intent": False}


def answer(status: int, headers: dict[str, str] | None = None,
           body: bytes = b"") -> Callable[[int, web.Request], Awaitable[Reply]]:
    async def respond(n: int, request: web.Request) -> Reply:
        return status, dict(headers or {}), body
    return respond


async def hang(n: int, request: web.Request) -> Reply:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def create(gw: Gateway, url: str, **fields: Any) -> tuple[int, Any]:
    status, body, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
        "target_url": url, "topics": ["contact.created"], **fields})
    return status, body


async def assert_refused(gw: Gateway, status: int, body: Any, *words: str) -> None:
    assert status == 422, body
    assert body["title"] and body["type"]
    for word in words:
        assert word in body["detail"], (word, body["detail"])
    assert body["errors"][0]["field"] == "target_url"
    _, listing, _ = await gw.call("GET", "/v1/hooks", gw.subscriber)
    assert listing["data"] == []
    _, listing, _ = await gw.call("GET", "/v1/hooks", gw.admin)
    assert listing["data"] == []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_echo_creates_the_hook_after_one_handshake(start_gateway: StartGateway,
                                                         receiver: Receiver) -> None:
    gw = await start_gateway()
    status, body = await create(gw, receiver.url + "/hooks/in?x=1")
    assert status == 201, body
    assert len(receiver.requests) == 1
    [hs] = receiver.handshakes
    assert hs.path == "/hooks/in"
    token = hs.headers["X-Hook-Secret"]
    assert len(token) >= 32
    assert token not in body["secret"]
    assert orjson.loads(hs.body) == {"type": "hook.verification", "hook_id": body["id"]}
    assert hs.headers["Content-Type"].startswith("application/json")
    assert hs.headers["User-Agent"].startswith("gateway/")
    # Each handshake has its own random token.
    status, _ = await create(gw, receiver.url + "/second")
    assert status == 201
    assert receiver.handshakes[1].headers["X-Hook-Secret"] != token


async def test_echo_header_name_is_case_insensitive(start_gateway: StartGateway,
                                                    receiver: Receiver) -> None:
    async def lower(n: int, request: web.Request) -> Reply:
        return 204, {"x-hook-secret": request.headers["X-Hook-Secret"]}, b""
    receiver.respond = lower
    gw = await start_gateway()
    status, body = await create(gw, receiver.url)
    assert status == 201, body


async def test_no_echo_creates_nothing(start_gateway: StartGateway, receiver: Receiver) -> None:
    receiver.respond = answer(200, body=b"ok")
    gw = await start_gateway()
    status, body = await create(gw, receiver.url)
    await assert_refused(gw, status, body, "X-Hook-Secret", "200")
    assert "without" in body["detail"] or "missing" in body["detail"]
    assert len(receiver.handshakes) == 1


async def test_a_wrong_echo_creates_nothing(start_gateway: StartGateway,
                                            receiver: Receiver) -> None:
    receiver.respond = answer(200, {"X-Hook-Secret": "guessed"})
    gw = await start_gateway()
    status, body = await create(gw, receiver.url)
    await assert_refused(gw, status, body, "X-Hook-Secret")
    assert "guessed" not in body["detail"]
    assert receiver.handshakes[0].headers["X-Hook-Secret"] not in str(body)


@pytest.mark.parametrize("code", [404, 400, 410, 500, 503])
async def test_a_non_2xx_answer_is_named(start_gateway: StartGateway, receiver: Receiver,
                                         code: int) -> None:
    async def echo_with_status(n: int, request: web.Request) -> Reply:
        return code, {"X-Hook-Secret": request.headers["X-Hook-Secret"]}, b"nope"
    receiver.respond = echo_with_status
    gw = await start_gateway()
    status, body = await create(gw, receiver.url)
    await assert_refused(gw, status, body, str(code))


async def test_a_timeout_is_named(start_gateway: StartGateway, receiver: Receiver) -> None:
    receiver.respond = hang
    gw = await start_gateway(security={"handshake_timeout_seconds": 0.3})
    started = time.monotonic()
    status, body = await create(gw, receiver.url)
    elapsed = time.monotonic() - started
    await assert_refused(gw, status, body, "0.3")
    assert "timed out" in body["detail"] or "timeout" in body["detail"]
    assert 0.25 < elapsed < 3


async def test_connection_refused_is_named(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, body = await create(gw, f"http://127.0.0.1:{closed_port()}/h")
    await assert_refused(gw, status, body, "connection refused")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "2130706433", "127.1",
                                  "0x7f000001", "[::ffff:127.0.0.1]"])
async def test_a_refused_address_gets_nothing(start_gateway: StartGateway, receiver: Receiver,
                                              host: str) -> None:
    gw = await start_gateway(security=STRICT)
    port = receiver.url.rsplit(":", 1)[1]
    status, body = await create(gw, f"http://{host}:{port}/h")
    await assert_refused(gw, status, body)
    assert "loopback" in body["detail"] or "address" in body["detail"], body["detail"]
    assert receiver.requests == []


async def test_a_refused_address_names_the_address(start_gateway: StartGateway,
                                                   receiver: Receiver) -> None:
    gw = await start_gateway(security=STRICT)
    status, body = await create(gw, receiver.url + "/h")
    await assert_refused(gw, status, body, "127.0.0.1", "loopback")
    port = receiver.url.rsplit(":", 1)[1]
    status, body = await create(gw, f"http://localhost:{port}/h")
    await assert_refused(gw, status, body, "refused", "loopback")
    assert receiver.requests == []


@pytest.mark.parametrize("security", [STRICT, {**STRICT, **NO_VERIFY}])
@pytest.mark.parametrize("url", [
    "http://10.0.0.1/h", "http://169.254.169.254/latest/meta-data/", "http://192.168.1.1/h",
    "http://100.64.0.1/h", "http://[fe80::1]/h", "http://[fd00::1]/h", "http://0.0.0.0/h",
    "http://224.0.0.1/h",
])
async def test_private_targets_are_refused_before_any_traffic(
        start_gateway: StartGateway, security: dict[str, Any], url: str) -> None:
    gw = await start_gateway(security=security)
    status, body = await create(gw, url)
    await assert_refused(gw, status, body)


@pytest.mark.parametrize("code", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed(start_gateway: StartGateway,
                                          make_receiver: MakeReceiver, code: int) -> None:
    first, second = await make_receiver(), await make_receiver()
    first.respond = answer(code, {"Location": second.url + "/elsewhere"})
    gw = await start_gateway()
    status, body = await create(gw, first.url + "/h")
    await assert_refused(gw, status, body, str(code), "redirect")
    assert len(first.requests) == 1
    assert second.requests == []


async def test_patching_target_url_verifies_the_new_target(start_gateway: StartGateway,
                                                           make_receiver: MakeReceiver) -> None:
    first, second = await make_receiver(), await make_receiver()
    gw = await start_gateway()
    hook = await gw.hook(first)
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                    json={"target_url": second.url + "/new"})
    assert status == 200, body
    assert body["target_url"] == second.url + "/new"
    [hs] = second.handshakes
    assert orjson.loads(hs.body) == {"type": "hook.verification", "hook_id": hook["id"]}
    assert len(first.handshakes) == 1


async def test_a_failed_handshake_on_patch_leaves_the_hook_unchanged(
        start_gateway: StartGateway, make_receiver: MakeReceiver) -> None:
    first, silent = await make_receiver(), await make_receiver()
    silent.respond = answer(204)
    gw = await start_gateway()
    hook = await gw.hook(first)
    path = f"/v1/hooks/{hook['id']}"
    status, body, _ = await gw.call("PATCH", path, gw.subscriber, json={
        "target_url": silent.url + "/new", "description": "moved", "status": "paused"})
    assert status == 422, body
    assert "X-Hook-Secret" in body["detail"]
    assert body["errors"][0]["field"] == "target_url"
    assert len(silent.handshakes) == 1
    _, after, _ = await gw.call("GET", path, gw.subscriber)
    assert (after["target_url"], after["description"], after["status"]) == (
        hook["target_url"], "", "active")


async def test_patching_to_a_refused_address_leaves_the_hook_unchanged(
        start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway(security={**STRICT, **NO_VERIFY})
    # Made under a permissive gateway on the same database, then checked by a strict one.
    permissive = await start_gateway(security=NO_VERIFY)
    hook = await permissive.hook(receiver)
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.admin,
                                    json={"target_url": "http://10.1.2.3/h"})
    assert status == 422, body
    assert "10.1.2.3" in body["detail"]
    _, after, _ = await gw.call("GET", f"/v1/hooks/{hook['id']}", gw.admin)
    assert after["target_url"] == hook["target_url"]


async def test_verify_intent_off_skips_the_handshake(start_gateway: StartGateway,
                                                     receiver: Receiver) -> None:
    receiver.respond = answer(500)
    gw = await start_gateway(security=NO_VERIFY)
    status, body = await create(gw, receiver.url + "/zap")
    assert status == 201, body
    assert receiver.requests == []
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{body['id']}", gw.subscriber,
                                    json={"target_url": receiver.url + "/zap2"})
    assert status == 200, body
    assert receiver.requests == []


@pytest.mark.parametrize("security", [{"allow_http_targets": False},
                                      {"allow_http_targets": False, **NO_VERIFY}])
async def test_http_targets_are_refused_unless_allowed(start_gateway: StartGateway,
                                                       receiver: Receiver,
                                                       security: dict[str, Any]) -> None:
    gw = await start_gateway(security=security)
    status, body = await create(gw, receiver.url + "/h")
    await assert_refused(gw, status, body, "https")
    assert receiver.requests == []
