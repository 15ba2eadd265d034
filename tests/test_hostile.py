"""Hostile clients against a real `gateway serve`: raw bytes over real sockets; the status, the
content type, the body (which echoes nothing of the request) and the log are checked."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    ContentEncodingError,
    ContentLengthError,
    DecompressSizeError,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

from gateway.connections import malformed
from tests.conftest import wait_until
from tests.process import ServeProcess, create_key, free_port, write_config

PROBLEM = "application/problem+json"


async def exchange(port: int, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes (or `timeout`): what came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def request(method: bytes, path: bytes, key: str | None, body: bytes = b"",
            extra: bytes = b"", length: bool = True) -> bytes:
    head = b"%s %s HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n" % (method, path)
    if key:
        head += b"Authorization: Bearer %s\r\n" % key.encode()
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + extra + b"\r\n" + body


def event(data: bytes) -> bytes:
    return b'{"topic": "contact.created", "account": "acme", "data": %s}' % data


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[ServeProcess, str]]:
    port = free_port()
    cfg = write_config(tmp_path, port, log={"level": "info", "access": False},
                       server={"header_timeout_seconds": 1.0, "max_connections": 64,
                               "keep_alive_seconds": 30})
    key = await create_key(cfg, "admin")
    gw = await ServeProcess(cfg, port).start()
    try:
        yield gw, key
    finally:
        await gw.close()


BOMB = gzip.compress(b"[" + b"0," * 5_000_000 + b"0]")  # ~10 MB of JSON in ~10 KB

# (name, raw request given the key, status, detail fragment, bytes of the request that must not
# come back)
CASES: list[tuple[str, Any, int, str, bytes]] = [
    ("bad method", lambda k: b"GARBAGE / HTTP/1.1\r\nHost: gw\r\n\r\n", 400, "method",
     b"GARBAGE"),
    # (The marker is the version with its name: a bare "9.9" is in a log timestamp now and then.)
    ("bad version", lambda k: b"GET /healthz HTTP/9.9\r\nHost: gw\r\n\r\n", 400, "HTTP version",
     b"HTTP/9.9"),
    ("HTTP/2.0 in an HTTP/1 head", lambda k: b"GET /healthz HTTP/2.0\r\nHost: gw\r\n\r\n", 400,
     "HTTP version", b"healthz"),
    ("HTTP/0.9", lambda k: b"GET /healthz HTTP/0.9\r\nHost: gw\r\n\r\n", 400,
     "HTTP version", b"healthz"),
    ("CONNECT to a path", lambda k: b"CONNECT /healthz HTTP/1.1\r\nHost: gw\r\n\r\n", 405,
     "not a proxy", b"healthz"),
    ("CONNECT to an authority", lambda k: b"CONNECT internal.example:443 HTTP/1.1\r\n"
     b"Host: gw\r\n\r\n", 405, "not a proxy", b"internal.example"),
    ("bad Content-Length", lambda k: request(b"POST", b"/v1/events", k, b"{}", length=False,
                                             extra=b"Content-Length: 12zz\r\n"),
     400, "Content-Length", b"12zz"),
    ("two Content-Lengths", lambda k: request(b"POST", b"/v1/events", k, b"{}", length=False,
                                              extra=b"Content-Length: 2\r\nContent-Length: 3\r\n"),
     400, "Content-Length", b"Content-Length: 3"),
    ("broken chunking", lambda k: request(b"POST", b"/v1/events", k, b"zzq\r\n{}\r\n0\r\n\r\n",
                                          length=False, extra=b"Transfer-Encoding: chunked\r\n"),
     400, "chunk", b"zzq"),
    ("100 KB header", lambda k: b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: "
     + b"q" * 100_000 + b"\r\n\r\n", 431, "over 8190 bytes", b"qqqq"),
    ("10,000 headers", lambda k: b"GET /healthz HTTP/1.1\r\nHost: gw\r\n"
     + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\n", 431, "header fields",
     b"X-H1"),
    ("gzip that is not gzip", lambda k: request(b"POST", b"/v1/events", k, b"plainly-not-gzip",
                                                extra=b"Content-Encoding: gzip\r\n"),
     400, "Content-Encoding", b"plainly"),
    ("brotli", lambda k: request(b"POST", b"/v1/events", k, b"\x0b\x02\x80{}\x03",
                                 extra=b"Content-Encoding: br\r\n"), 415, "Content-Encoding",
     b"\x0b\x02\x80"),
    ("gzip bomb", lambda k: request(b"POST", b"/v1/events", k, BOMB,
                                    extra=b"Content-Encoding: gzip\r\n"), 413, "", b"0,0,"),
    ("data 300 deep", lambda k: request(b"POST", b"/v1/events", k,
                                        event(b"[" * 300 + b"]" * 300)), 422, "levels deep",
     b"[[[["),
    ("body 1,100 deep", lambda k: request(b"POST", b"/v1/events", k,
                                          b"[" * 1100 + b"]" * 1100), 422, "levels deep", b"[[["),
    ("10^30", lambda k: request(b"POST", b"/v1/events", k, event(b"1" + b"0" * 30)), 422,
     "64 bits", b"1000000"),
    ("-2^63-1", lambda k: request(b"POST", b"/v1/events", k, event(b"-9223372036854775809")),
     422, "64 bits", b"9223372036854775809"),
    ("2^64", lambda k: request(b"POST", b"/v1/events", k, event(b"[18446744073709551616]")),
     422, "64 bits", b"18446744073709551616"),
]


async def test_each_malformed_request_gets_a_problem_that_echoes_nothing(
        gateway: tuple[ServeProcess, str]) -> None:
    gw, key = gateway
    for name, make, status, detail, secret in CASES:
        answer = await exchange(gw.port, make(key))
        code, headers, body = parse(answer)
        assert code == status, (name, answer[:300])
        assert headers["content-type"] == PROBLEM, name
        problem = json.loads(body)
        assert problem["status"] == status, name
        assert detail in problem["detail"], (name, problem)
        assert secret not in answer, name
        # The server lives on, and wrote no traceback.
        assert parse(await exchange(gw.port, request(b"GET", b"/healthz", None)))[0] == 200
        text = gw.log_text()
        assert "Traceback" not in text, (name, text)
        assert secret.decode("latin-1") not in text, name


async def test_framing_errors_are_one_log_line_each(gateway: tuple[ServeProcess, str]) -> None:
    gw, key = gateway
    framing = {"bad method", "bad version", "bad Content-Length", "two Content-Lengths",
               "broken chunking"}
    for _, make, status, _, _ in (c for c in CASES if c[0] in framing):
        assert parse(await exchange(gw.port, make(key)))[0] == status
    await wait_until(lambda: len([e for e in gw.log_events() if e["event"] ==
                                  "malformed_request"]) >= 5, 10, "five malformed_request lines")
    lines = [e for e in gw.log_events() if e["event"] == "malformed_request"]
    assert len(lines) == 5, lines
    assert all(e["level"] == "info" and e["status"] == 400 for e in lines)
    assert len(gw.log_text().splitlines()) == len(gw.log_events())  # JSON lines, nothing else


async def test_a_client_that_leaves_mid_body_is_an_info_line(
        gateway: tuple[ServeProcess, str]) -> None:
    gw, key = gateway
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(request(b"POST", b"/v1/events", key, length=False,
                         extra=b"Content-Length: 5000\r\nExpect: 100-continue\r\n"))
    # The server has the head and waits for the body once it says 100 Continue.
    async with asyncio.timeout(10):
        assert b" 100 " in await reader.readuntil(b"\r\n\r\n")
    writer.write(b'{"topic": ')
    await writer.drain()
    writer.transport.abort()
    await wait_until(lambda: any(e["event"] == "client_disconnected" for e in gw.log_events()),
                     10, "a client_disconnected line")
    line = next(e for e in gw.log_events() if e["event"] == "client_disconnected")
    assert line["level"] == "info"
    assert "Traceback" not in gw.log_text()
    assert parse(await exchange(gw.port, request(b"GET", b"/healthz", None)))[0] == 200


async def test_a_slow_head_is_closed_after_header_timeout(
        gateway: tuple[ServeProcess, str]) -> None:
    """50 connections sending their head a byte at a time (header_timeout_seconds = 1) are all
    answered 408 and closed, while a normal client is served."""
    gw, _ = gateway
    head = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: " + b"s" * 200

    async def slowloris() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        got = b""
        try:
            for i in range(len(head)):
                writer.write(head[i:i + 1])
                try:
                    async with asyncio.timeout(0.1):  # a byte every 0.1 s, or the answer
                        chunk = await reader.read(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    return got
                got += chunk
            return got + b"<never closed>"
        except ConnectionError:
            return got
        finally:
            writer.close()

    tasks = [asyncio.create_task(slowloris()) for _ in range(50)]
    await asyncio.sleep(0)
    assert parse(await exchange(gw.port, request(b"GET", b"/healthz", None)))[0] == 200
    answers = await asyncio.gather(*tasks)
    for answer in answers:
        assert b"<never closed>" not in answer
        assert parse(answer)[0] == 408, answer
    timeouts = [e for e in gw.log_events() if e["event"] == "header_timeout"]
    assert len(timeouts) == 50


async def test_idle_keep_alive_connections_are_closed(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, port, server={"keep_alive_seconds": 0.3})
    gw = await ServeProcess(cfg, port).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        async with asyncio.timeout(10):
            answer = await reader.read()  # the answer, then the close once idle 0.3 s
        writer.close()
        assert parse(answer)[0] == 200
    finally:
        await gw.close()


async def test_past_max_connections_the_oldest_idle_go_first(tmp_path: Path) -> None:
    """max_connections = 8 and 20 clients holding idle connections: /healthz still answers, the
    connections idle the longest were closed, the newest kept, and a client busy all along
    (opened first) kept its own; a log line and a metric say so."""
    port = free_port()
    cfg = write_config(tmp_path, port, server={"max_connections": 8},
                       security={"metrics_public": True, "allow_private_targets": True,
                                 "allow_http_targets": True})
    gw = await ServeProcess(cfg, port).start()
    held = []
    try:
        busy = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(20):
            busy[1].write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            async with asyncio.timeout(10):
                assert b" 200 " in await busy[0].readuntil(b'"ok"}')
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            async with asyncio.timeout(10):
                assert b" 200 " in await reader.readuntil(b'"ok"}')
            held.append((reader, writer))
        assert parse(await exchange(port, request(b"GET", b"/healthz", None)))[0] == 200
        closed = []
        for reader, _ in held:
            try:
                async with asyncio.timeout(0.2):
                    closed.append(await reader.read() == b"")
            except TimeoutError:
                closed.append(False)
        # The first ones opened are gone; the last ones (fewer than the cap) are still open.
        assert all(closed[:13]), closed
        assert not any(closed[-6:]), closed
        busy[1].write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        async with asyncio.timeout(10):
            assert b" 200 " in await busy[0].readuntil(b'"ok"}')
        busy[1].close()
        events = gw.log_events()
        assert any(e["event"] == "connection_limit_reached" and e["level"] == "warning"
                   for e in events), events
        metrics = (await exchange(port, request(b"GET", b"/metrics", None))).decode()
        shed = [line for line in metrics.splitlines()
                if line.startswith("gateway_http_connections_shed_total ")]
        assert shed and float(shed[0].split()[1]) >= 12, shed
    finally:
        for _, writer in held:
            writer.close()
        await gw.close()


@pytest.mark.parametrize(("exc", "status", "fragment"), [
    (BadHttpMethod("GARBAGE"), 400, "method"),
    (BadStatusLine(error="Bad status line:\n  Invalid HTTP version:\n\n  b'GET / HTTP/9.9'"), 400,
     "HTTP version"),
    (BadStatusLine("b'zzz'"), 400, "request line"),
    (BadHttpMessage("Duplicate Content-Length:\n\n  b'Content-Length: 3'"), 400, "repeated"),
    (BadHttpMessage("Too many headers received"), 431, "header fields"),
    (BadHttpMessage("Duplicate 'Secret-Name' header found."), 400, "not valid HTTP"),
    (BadHttpMessage("Something new:\n\n  b'input'"), 400, "not valid HTTP"),
    (LineTooLong(b"aaaa", 8190), 431, "8190"),
    (InvalidURLError("bad url b'/x\\x00'"), 400, "URL"),
    (ContentEncodingError("Can not decode content-encoding: gzip"), 400, "Content-Encoding"),
    (ContentEncodingError("Can not decode content-encoding: brotli (br). Please install"), 415,
     "Content-Encoding"),
    (ContentLengthError("Not enough data"), 400, "Content-Length"),
    (TransferEncodingError("Not enough data"), 400, "chunked"),
    (DecompressSizeError("too big"), 413, "inflates"),
    (None, 400, "could not be read"),
])
def test_malformed_names_the_problem_in_its_own_words(exc: Exception | None, status: int,
                                                      fragment: str) -> None:
    err = malformed(exc)
    assert err.status == status
    assert fragment in err.detail
    for echoed in ("GARBAGE", "9.9", "input", "Secret-Name", "aaaa", "\\x00"):
        assert echoed not in err.detail


def test_the_bomb_really_inflates_past_the_body_limit() -> None:
    assert len(zlib.decompress(BOMB, wbits=31)) > 30 * 262144


async def test_the_access_line_as_shipped(tmp_path: Path) -> None:
    """The default configuration (level info, access on): one JSON line per request with the
    fields structlog's chain gave it, written beside structlog's own lines, never mid-line."""
    port = free_port()
    cfg = write_config(tmp_path, port, log={"level": "info", "access": True})
    key = await create_key(cfg, "admin")
    gw = await ServeProcess(cfg, port).start()
    try:
        for _ in range(20):
            answer = await exchange(port, request(b"GET", b"/v1/topics", key,
                                                  extra=b"X-Request-Id: rid-17\r\n"))
            assert parse(answer)[0] == 200
        assert parse(await exchange(port, request(b"GET", b"/nowhere", None)))[0] == 401
        assert parse(await exchange(port, b"GARBAGE / HTTP/1.1\r\n\r\n"))[0] == 400
        await wait_until(lambda: sum(e["event"] == "request" for e in gw.log_events()) >= 22,
                         10, "the access lines")
        lines = gw.log_text().splitlines()
        assert all(line.startswith("{") and line.endswith("}") for line in lines), lines
        access = [e for e in gw.log_events() if e["event"] == "request"]
        topics = [e for e in access if e["route"] == "/v1/topics"]
        assert len(topics) == 20
        first = topics[0]
        assert list(first) == ["method", "route", "status", "ms", "event", "key_id",
                               "request_id", "level", "timestamp"]
        assert (first["method"], first["status"], first["request_id"], first["level"]) == (
            "GET", 200, "rid-17", "info")
        assert first["key_id"].startswith("key_")
        assert isinstance(first["ms"], float) and first["ms"] >= 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["timestamp"])
        anonymous = next(e for e in access if e["route"] == "unmatched")
        assert anonymous["status"] == 401 and "key_id" not in anonymous
        assert any(e["event"] == "malformed_request" for e in gw.log_events())
        started = next(e for e in gw.log_events() if e["event"] == "started")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", started["timestamp"])
    finally:
        await gw.close()
