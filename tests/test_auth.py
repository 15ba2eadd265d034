"""Authentication over HTTP as a table: each Authorization header, on a route that needs a key
and on a public one, with the exact answer. Each row was added because a one-line mutant of the
request layer's key check survived the rest of the suite (tools/mutate.py --module auth)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import Gateway

StartGateway = Callable[..., Awaitable[Gateway]]

MISSING = "missing API key: send Authorization: Bearer <key>"
MALFORMED = "the Authorization header must be: Bearer <key>"
UNKNOWN = "unknown or revoked API key"

# (the header, "{key}" standing for a valid admin key; the status; the problem's detail)
HEADERS: list[tuple[str | None, int, str | None]] = [
    (None, 401, MISSING),
    ("Bearer {key}", 200, None),
    ("bearer {key}", 200, None),
    ("BEARER {key}", 200, None),
    ("Bearer   {key}  ", 200, None),  # spaces around the key do not count
    ("Basic {key}", 401, MALFORMED),
    ("Bearer{key}", 401, MALFORMED),
    ("{key}", 401, MALFORMED),
    ("Bearer", 401, MALFORMED),
    ("Bearer    ", 401, MALFORMED),
    ("Bearer " + "A" * 200, 401, UNKNOWN),  # as long as a key may be: looked up, not known
    ("Bearer " + "A" * 201, 401, MALFORMED),
    ("Bearer gw_" + "A" * 43, 401, UNKNOWN),
    ("Bearer {key}x", 401, UNKNOWN),
]


@pytest.mark.parametrize(("header", "status", "detail"), HEADERS)
async def test_a_route_that_needs_a_key(start_gateway: StartGateway, header: str | None,
                                        status: int, detail: str | None) -> None:
    gw = await start_gateway()
    headers = {} if header is None else {"Authorization": header.format(key=gw.admin)}
    got, body, resp = await gw.call("GET", "/v1/keys", headers=headers)
    assert got == status, body
    if detail is None:
        assert len(body["data"]) == 4
    else:
        assert resp.content_type == "application/problem+json"
        assert body["detail"] == detail
        assert gw.admin not in str(body)


@pytest.mark.parametrize(("header", "status", "detail"), HEADERS)
async def test_a_public_route_ignores_what_it_cannot_use(start_gateway: StartGateway,
                                                         header: str | None, status: int,
                                                         detail: str | None) -> None:
    gw = await start_gateway()
    headers = {} if header is None else {"Authorization": header.format(key=gw.admin)}
    got, body, _ = await gw.call("GET", "/healthz", headers=headers)
    assert got == 200, body


@pytest.mark.parametrize(("public", "status"), [(True, 200), (False, 401)])
async def test_metrics_are_public_only_when_configured(start_gateway: StartGateway, public: bool,
                                                       status: int) -> None:
    gw = await start_gateway(security={"metrics_public": public})
    for headers in ({}, {"Authorization": "Bearer gw_unknown"}, {"Authorization": "Basic x"}):
        got, body, _ = await gw.call("GET", "/metrics", headers=headers)
        assert got == status, (headers, body)
    got, _, _ = await gw.call("GET", "/metrics", gw.admin)
    assert got == 200


@pytest.mark.parametrize(("who", "status"), [("admin", 200), ("publisher", 403),
                                             ("subscriber", 403)])
async def test_a_key_acts_with_its_own_role(start_gateway: StartGateway, who: str,
                                            status: int) -> None:
    """The same route, one request after another on one connection, with keys of each role:
    what one request's key allowed never carries over to the next."""
    gw = await start_gateway()
    for _ in range(2):
        for key in (gw.admin, getattr(gw, who), gw.admin):
            got, body, _ = await gw.call("GET", "/v1/keys", key)
            assert got == (200 if key == gw.admin else status), body
    got, body, _ = await gw.call("GET", "/v1/keys", getattr(gw, who))
    if status == 403:
        assert body["detail"] == f"this endpoint needs an admin key; this key is a {who} key"


@pytest.mark.parametrize(("who", "method", "path", "detail"), [
    ("subscriber", "POST", "/v1/events",
     "this endpoint needs an admin or publisher key; this key is a subscriber key"),
    ("publisher", "GET", "/v1/hooks",
     "this endpoint needs an admin or subscriber key; this key is a publisher key"),
])
async def test_a_refusal_names_every_role_that_may(start_gateway: StartGateway, who: str,
                                                   method: str, path: str, detail: str) -> None:
    gw = await start_gateway()
    got, body, _ = await gw.call(method, path, getattr(gw, who),
                                 json={} if method == "POST" else None)
    assert got == 403, body
    assert body["detail"] == detail


@pytest.mark.parametrize(("account", "message"), [
    (None, "is required with an admin key"), (5, "must be a string"), (["acme"], "must be a string")])
async def test_an_admin_key_names_the_account_it_acts_on(start_gateway: StartGateway,
                                                         account: object, message: str) -> None:
    gw = await start_gateway()
    body: dict[str, object] = {"target_url": "http://127.0.0.1:9/hook", "topics": ["contact.created"]}
    if account is not None:
        body["account"] = account
    got, out, _ = await gw.call("POST", "/v1/hooks", gw.admin, json=body)
    assert got == 422, out
    assert out["errors"][0] == {"field": "account", "message": message}
    status, listed, _ = await gw.call("GET", "/v1/hooks", gw.admin)
    assert status == 200 and listed["data"] == []
