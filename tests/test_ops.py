"""Operations: health and readiness, Prometheus metrics, the OpenAPI document, request ids."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest

from gateway.auth import hash_key
from tests.conftest import Gateway, Receiver

StartGateway = Callable[..., Awaitable[Gateway]]


async def test_healthz_needs_no_key(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, body, resp = await gw.call("GET", "/healthz")
    assert status == 200
    assert resp.content_type == "application/json"
    assert body == {"status": "ok"}


async def test_readyz_reports_database_and_delivery_loop(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    status, body, _ = await gw.call("GET", "/readyz")
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "delivery_loop": "ok"}


async def test_readyz_is_503_when_the_delivery_loop_does_not_run(
        start_gateway: StartGateway) -> None:
    gw = await start_gateway(run_delivery_loop=False)
    status, body, _ = await gw.call("GET", "/readyz")
    assert status == 503, body
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["delivery_loop"] != "ok"
    assert (await gw.call("GET", "/healthz"))[0] == 200


async def test_readyz_is_503_when_the_database_is_closed(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    await gw.storage.close()
    status, body, _ = await gw.call("GET", "/readyz")
    assert status == 503, body
    assert body["checks"]["database"] != "ok"


async def test_public_endpoints_ignore_any_authorization(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    for path in ("/healthz", "/readyz", "/openapi.json"):
        status, _, _ = await gw.call("GET", path, "gw_unknown")
        assert status == 200, path
        # e.g. a proxy that adds its own credentials to health checks
        status, _, _ = await gw.call("GET", path, headers={"Authorization": "Basic dTpw"})
        assert status == 200, path


@pytest.mark.parametrize(("who", "expected"), [(None, 401), ("publisher", 403),
                                               ("subscriber", 403), ("other", 403)])
async def test_metrics_needs_an_admin_key(start_gateway: StartGateway, who: str | None,
                                          expected: int) -> None:
    gw = await start_gateway()
    status, body, resp = await gw.call("GET", "/metrics", getattr(gw, who) if who else None)
    assert status == expected
    assert resp.content_type == "application/problem+json"
    assert "gateway_http_requests_total" not in str(body)


async def test_metrics_in_prometheus_text(start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    hook = await gw.hook(receiver)
    await gw.call("GET", f"/v1/hooks/{hook['id']}", gw.subscriber)
    await gw.call("GET", "/v1/hooks/hook_nope", gw.subscriber)
    await gw.call("GET", "/v1/keys")
    status, text, resp = await gw.call("GET", "/metrics", gw.admin)
    assert status == 200
    assert resp.content_type == "text/plain"
    assert "version=0.0.4" in resp.headers["Content-Type"]
    assert "# TYPE gateway_http_requests_total counter" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("gateway_http_requests_total{")]

    def count(method: str, route: str, code: str) -> float:
        for ln in lines:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', ln))
            if labels == {"method": method, "route": route, "status": code}:
                return float(ln.rsplit(" ", 1)[1])
        return 0.0

    assert count("POST", "/v1/hooks", "201") == 1
    # Routes are labelled by their pattern, never by the id in the path.
    assert count("GET", "/v1/hooks/{id}", "200") == 1
    assert count("GET", "/v1/hooks/{id}", "404") == 1
    assert count("GET", "/v1/keys", "401") == 1
    assert hook["id"] not in text
    assert "gateway_http_request_duration_seconds_bucket" in text


async def test_metrics_can_be_public(start_gateway: StartGateway) -> None:
    gw = await start_gateway(security={"metrics_public": True})
    status, text, _ = await gw.call("GET", "/metrics")
    assert status == 200
    assert "gateway_http_requests_total" in text
    # Public metrics do not open anything else.
    assert (await gw.call("GET", "/v1/keys"))[0] == 401


async def test_every_response_has_a_request_id(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    seen = set()
    for method, path, key in [("GET", "/healthz", None), ("GET", "/v1/keys", None),
                              ("GET", "/v1/keys", gw.admin), ("GET", "/nope", gw.admin),
                              ("PUT", "/v1/hooks", gw.admin), ("GET", "/v1/hooks?limit=0", gw.admin),
                              ("GET", "/metrics", gw.admin)]:
        _, _, resp = await gw.call(method, path, key)
        rid = resp.headers.get("X-Request-Id")
        assert rid and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", rid), (method, path, rid)
        seen.add(rid)
    assert len(seen) == 7


async def test_a_valid_request_id_is_echoed(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    for rid in ("abc-123", "req_01HZX.5", "a" * 64):
        _, _, resp = await gw.call("GET", "/v1/topics", gw.admin, headers={"X-Request-Id": rid})
        assert resp.headers["X-Request-Id"] == rid
    for bad in ("a" * 65, "has space", "semi;colon", "<script>", ""):
        _, _, resp = await gw.call("GET", "/v1/topics", gw.admin, headers={"X-Request-Id": bad})
        assert resp.headers["X-Request-Id"] != bad
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", resp.headers["X-Request-Id"])


async def test_the_request_id_is_on_the_log_lines(start_gateway: StartGateway,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    gw = await start_gateway(log={"access": True})
    capsys.readouterr()
    await gw.call("GET", "/v1/topics", gw.admin, headers={"X-Request-Id": "trace-me-42"})
    logs = capsys.readouterr()
    lines = [ln for ln in (logs.out + logs.err).splitlines() if "/v1/topics" in ln]
    assert lines, logs
    assert all("trace-me-42" in ln for ln in lines)


async def test_an_internal_fault_is_a_bare_500_and_one_log_line_with_the_ids(
        start_gateway: StartGateway, capsys: pytest.CaptureFixture[str]) -> None:
    """A fault nothing foresaw (here the database's read connection is gone) answers a 500
    problem document that says nothing of the internals, and logs the traceback once, with
    the request id and the caller's key id on the line."""
    gw = await start_gateway()
    key = await gw.storage.key_by_hash(hash_key(gw.subscriber))
    reader = gw.storage.connector.reader
    assert key is not None and reader is not None
    await reader.close()
    capsys.readouterr()
    status, body, resp = await gw.call("GET", "/v1/hooks", gw.subscriber,
                                       headers={"X-Request-Id": "fault-7"})
    assert status == 500
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert resp.headers["X-Request-Id"] == "fault-7"
    assert body == {"type": "https://gateway.dev/problems/internal",
                    "title": "Internal Server Error", "status": 500,
                    "detail": "internal error; the request id is in the X-Request-Id header"}
    logs = capsys.readouterr()
    lines = [ln for ln in (logs.out + logs.err).splitlines() if "unhandled_error" in ln]
    assert len(lines) == 1, logs
    assert "fault-7" in lines[0] and key.id in lines[0]
    assert "Traceback" in logs.out + logs.err
