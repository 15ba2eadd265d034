"""A hook's target name is judged by every address it resolves to, through the HTTP API: one
private record among public ones is enough to refuse it. Lookups come from a table the test
controls (tests/fake_dns.py); intent verification is off, so refusing is all the gateway does
with the name and nothing is ever connected to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests import fake_dns
from tests.conftest import Gateway
from tests.fake_dns import PUBLIC4, PUBLIC6, V4, V6, Answer

StartGateway = Callable[..., Awaitable[Gateway]]
# Production's policy (private targets refused), http allowed to keep the URLs short.
STRICT = {"allow_private_targets": False, "allow_http_targets": True, "verify_intent": False}


@pytest.fixture
async def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, Answer]:
    return fake_dns.install(monkeypatch)


def refusal(status: int, body: Any) -> str:
    assert status == 422, body
    assert body["errors"][0]["field"] == "target_url", body
    return str(body["errors"][0]["message"])


@pytest.mark.parametrize(("answer", "words"), [
    ([(V4, PUBLIC4), (V4, "10.1.2.3")], "address 10.1.2.3 (from mixed.test) is private"),
    ([(V4, "10.1.2.3"), (V4, PUBLIC4)], "address 10.1.2.3 (from mixed.test) is private"),
    ([(V6, PUBLIC6), (V6, "fd00::5")], "is unique-local"),
    ([(V4, PUBLIC4), (V4, "169.254.169.254")], "cloud metadata"),
    ([], "host does not resolve: mixed.test"),
])
async def test_a_name_with_any_refused_address_is_refused(
        start_gateway: StartGateway, dns: dict[str, Answer], answer: Answer, words: str) -> None:
    dns["mixed.test"] = answer
    gw = await start_gateway(security=STRICT)
    status, body, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
        "target_url": "http://mixed.test/hook", "topics": ["contact.created"]})
    assert words in refusal(status, body)
    status, body, _ = await gw.call("GET", "/v1/hooks", gw.subscriber)
    assert status == 200 and body["data"] == []


async def test_a_hook_cannot_be_moved_to_such_a_name(start_gateway: StartGateway,
                                                      dns: dict[str, Answer]) -> None:
    dns["public.test"] = [(V4, PUBLIC4), (V6, PUBLIC6)]
    dns["mixed.test"] = [(V6, PUBLIC6), (V4, PUBLIC4), (V4, "192.168.0.9")]
    gw = await start_gateway(security=STRICT)
    status, hook, _ = await gw.call("POST", "/v1/hooks", gw.subscriber, json={
        "target_url": "http://public.test/hook", "topics": ["contact.created"]})
    assert status == 201, hook
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{hook['id']}", gw.subscriber,
                                    json={"target_url": "http://mixed.test/hook"})
    assert "address 192.168.0.9 (from mixed.test) is private" in refusal(status, body)
    status, body, _ = await gw.call("GET", f"/v1/hooks/{hook['id']}", gw.subscriber)
    assert status == 200 and body["target_url"] == "http://public.test/hook"
