"""What a newcomer reads when something is refused: plain words, and the setting to change
where one would help."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import Gateway, Receiver

StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.mark.parametrize(("raw", "line", "column"), [
    (b'{"topic": contact}', 1, 11), (b'{\n  "topic": "a",\n  oops\n}', 3, 3), (b"{", 1, 2)])
async def test_a_body_that_is_not_json_says_where_it_goes_wrong(
        start_gateway: StartGateway, raw: bytes, line: int, column: int) -> None:
    gw = await start_gateway()
    status, body, _ = await gw.call("POST", "/v1/events", gw.publisher, data=raw,
                                    headers={"Content-Type": "application/json"})
    assert status == 400, body
    assert body["detail"] == (f"request body is not valid JSON: it goes wrong at line {line}, "
                              f"column {column}")


@pytest.mark.parametrize(("who", "needs", "is_"), [
    ("subscriber", "an admin key", "a subscriber key"),
    ("publisher", "an admin key", "a publisher key")])
async def test_a_wrong_role_is_named_in_plain_words(start_gateway: StartGateway, who: str,
                                                    needs: str, is_: str) -> None:
    gw = await start_gateway()
    status, body, _ = await gw.call("GET", "/v1/keys", getattr(gw, who))
    assert status == 403
    assert body["detail"] == f"this endpoint needs {needs}; this key is {is_}"


async def test_a_subscriber_endpoint_names_its_roles(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, body, _ = await gw.call("POST", "/v1/hooks", gw.publisher,
                                    json={"target_url": "https://example.com/h",
                                          "topics": ["contact.created"]})
    assert status == 403
    assert body["detail"] == ("this endpoint needs an admin or subscriber key; this key is a "
                              "publisher key")


@pytest.mark.parametrize("url", ["https://127.0.0.1/in", "https://10.1.2.3/in",
                                 "https://[::1]/in", "https://localhost/in"])
async def test_a_refused_private_target_names_the_setting(start_gateway: StartGateway,
                                                          url: str) -> None:
    gw = await start_gateway(security={"allow_private_targets": False})
    status, body, _ = await gw.call("POST", "/v1/hooks", gw.subscriber,
                                    json={"target_url": url, "topics": ["contact.created"]})
    assert status == 422, body
    assert "security.allow_private_targets = true allows it" in body["detail"]


async def test_a_refused_http_target_names_the_setting(start_gateway: StartGateway,
                                                       receiver: Receiver) -> None:
    gw = await start_gateway(security={"allow_http_targets": False})
    status, body, _ = await gw.call("POST", "/v1/hooks", gw.subscriber,
                                    json={"target_url": receiver.url + "/in",
                                          "topics": ["contact.created"]})
    assert status == 422, body
    assert "security.allow_http_targets = true allows http" in body["detail"]
