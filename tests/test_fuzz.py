"""Fuzzing a real `gateway serve` (hypothesis): no request head and no body reaches a 500, every
error is a problem document, and the log never gets a traceback. Bounded: both fuzzers together
run in well under a minute."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.process import clean_env, free_port, write_config

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


@dataclass
class Served:
    port: int
    admin: str
    publisher: str
    subscriber: str
    log: Path
    hook_id: str


def _cli(cfg: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "gateway", *args, "--config", str(cfg)],
                         cwd=cfg.parent, env=clean_env(), capture_output=True, text=True,
                         timeout=30, check=True)
    return out.stdout.strip()


def _exchange(port: int, raw: bytes, timeout: float = 3.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        # (The server may answer and close before it has read everything.)
        with contextlib.suppress(OSError):
            s.sendall(raw)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            out += b"<timeout>"
        except OSError:
            pass
        return out


def _healthy(port: int) -> bool:
    try:
        answer = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n",
                           0.5)
    except OSError:
        return False
    return b" 200 " in answer[:20]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    cfg = write_config(tmp, port, log={"level": "info", "access": False},
                       server={"header_timeout_seconds": 2, "max_body_bytes": 65536},
                       security={"verify_intent": False, "allow_private_targets": True,
                                 "allow_http_targets": True},
                       topics=("contact.created", "fuzz.one"))
    admin = _cli(cfg, "keys", "create", "--role", "admin")
    publisher = _cli(cfg, "keys", "create", "--role", "publisher")
    subscriber = _cli(cfg, "keys", "create", "--role", "subscriber", "--account", "acme")
    log = tmp / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(cfg)],
                                cwd=tmp, env=clean_env(), stdout=fh, stderr=fh)
    try:
        deadline = time.monotonic() + 20
        while not _healthy(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        body = b'{"target_url": "http://127.0.0.1:9/h", "topics": ["*"]}'
        answer = _exchange(port, b"POST /v1/hooks HTTP/1.1\r\nHost: f\r\nConnection: close\r\n"
                                 b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
                           % (subscriber.encode(), len(body), body))
        hook = orjson.loads(answer.partition(b"\r\n\r\n")[2])
        yield Served(port, admin, publisher, subscriber, log, hook.get("id", "hk_missing"))
    finally:
        proc.kill()
        proc.wait()


def check(served: Served, answer: bytes) -> None:
    if answer in (b"", b"<timeout>"):
        return  # the server waits for more (a Content-Length never met) or closed
    head, _, _ = answer.partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0].split()
    # (aiohttp answers in the version the request named: "HTTP/2.0" or "HTTP/0.9" in an
    # HTTP/1 head is answered "HTTP/2.0 400" or "HTTP/0.9 400".)
    assert re.fullmatch(rb"HTTP/\d\.\d", first[0]), answer[:200]
    status = int(first[1])
    assert status < 500, answer[:400]
    if first[0] not in (b"HTTP/1.0", b"HTTP/1.1"):
        assert status == 400, answer[:400]
    if status >= 400:
        assert b"application/problem+json" in head.lower(), answer[:400]


def check_log(served: Served) -> None:
    text = served.log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert '"unhandled_error"' not in text and '"connection_error"' not in text, text[-3000:]


TOKEN = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST"
                         "UVWXYZ", min_size=1, max_size=12)
METHOD = st.one_of(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
                                    "CONNECT", "TRACE", "PRI", "get"]), TOKEN,
                   st.binary(min_size=1, max_size=8).map(lambda b: b.decode("latin-1")))
TARGET = st.one_of(st.sampled_from(["/healthz", "/v1/events", "/v1/hooks", "/metrics", "*",
                                    "/v1/hooks/../../etc", "/%00", "/%", "http://x/healthz",
                                    "/v1/events?x=%zz", "/" + "a" * 9000]),
                   st.text(max_size=40).map(lambda t: "/" + t))
VERSION = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/9.9", "HTTP/1", "http/1.1", "HTTP/2.0",
                           "", "HTTP/1.1 extra"])
HEADER_NAME = st.one_of(st.sampled_from(["Content-Length", "Transfer-Encoding", "Content-Type",
                                         "Content-Encoding", "Authorization", "Host", "Expect",
                                         "Connection", "Upgrade", "X-Request-Id",
                                         "Idempotency-Key"]), TOKEN,
                        st.binary(min_size=1, max_size=10).map(lambda b: b.decode("latin-1")))
HEADER_VALUE = st.one_of(st.sampled_from(["0", "5", "-1", "99999999999999999999", "chunked",
                                          "gzip", "deflate", "br", "identity, chunked",
                                          "application/json", "Bearer ", "Bearer gw_x",
                                          "100-continue", "websocket", "close", "keep-alive"]),
                         st.text(max_size=30), st.binary(max_size=30).map(
                             lambda b: b.decode("latin-1")))


@given(method=METHOD, target=TARGET, version=VERSION,
       headers=st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=8),
       body=st.binary(max_size=200), sep=st.sampled_from(["\r\n", "\n", "\r"]),
       auth=st.sampled_from([None, "admin", "publisher"]))
@FUZZ
def test_fuzzed_request_heads_never_reach_a_500(served: Served, method: str, target: str,
                                                version: str, headers: list[tuple[str, str]],
                                                body: bytes, sep: str, auth: str | None) -> None:
    lines = [f"{method} {target} {version}".rstrip(" "), "Host: fuzz"]
    if auth is not None:
        lines.append(f"Authorization: Bearer {getattr(served, auth)}")
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append("Connection: close")
    raw = (sep.join(lines) + sep + sep).encode("utf-8", "surrogateescape") + body
    check(served, _exchange(served.port, raw))
    check_log(served)


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
                        st.integers(min_value=-(2**70), max_value=2**70),
                        st.text(max_size=20))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["topic", "account", "data", "resource_url",
                                         "idempotency_key", "target_url", "topics", "status",
                                         "role", "description", "headers", "payload",
                                         "ordered", "verify", "x"]) | st.text(max_size=8),
                        inner, max_size=6)), max_leaves=20)


def _encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # integers past 64 bits: write them by hand
        return json.dumps(value).encode()


ENDPOINTS = [("POST", "/v1/events", "publisher"), ("POST", "/v1/hooks", "subscriber"),
             ("PATCH", "/v1/hooks/{hook}", "subscriber"), ("PUT", "/v1/topics/fuzz.two", "admin"),
             ("POST", "/v1/keys", "admin"), ("POST", "/v1/events", "admin")]
EVENTISH = st.fixed_dictionaries({"topic": st.sampled_from(["contact.created", "fuzz.one", "x"]),
                                  "account": st.sampled_from(["acme", "", "a b"])},
                                 optional={"data": _json_values(),
                                           "idempotency_key": st.text(max_size=5)})


@given(endpoint=st.sampled_from(ENDPOINTS),
       body=st.one_of(_json_values().map(_encode), EVENTISH.map(_encode),
                      st.lists(EVENTISH, max_size=3).map(_encode), st.binary(max_size=100),
                      st.integers(min_value=0, max_value=1200).map(
                          lambda n: b"[" * n + b"]" * n),
                      st.integers(min_value=250, max_value=300).map(
                          lambda n: b'{"topic": "fuzz.one", "account": "acme", "data": '
                          + b"[" * n + b"]" * n + b"}")),
       encoding=st.sampled_from([None, None, None, "gzip", "deflate"]))
@FUZZ
def test_fuzzed_bodies_never_reach_a_500(served: Served, endpoint: tuple[str, str, str],
                                         body: bytes, encoding: str | None) -> None:
    method, path, role = endpoint
    path = path.format(hook=served.hook_id)
    extra = b""
    if encoding is not None:
        extra = b"Content-Encoding: %s\r\n" % encoding.encode()
    raw = (b"%s %s HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\nAuthorization: Bearer %s\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
           % (method.encode(), path.encode(), getattr(served, role).encode(), len(body), extra,
              body))
    check(served, _exchange(served.port, raw))
    check_log(served)
