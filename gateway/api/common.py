"""What every resource shares: typed app state, JSON in and out, validation, pagination."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiohttp import web

from gateway.auth import ACCOUNT_NAME
from gateway.connections import malformed
from gateway.errors import (
    BadRequest,
    ClientDisconnected,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
)

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from gateway.auth import Principal
    from gateway.clock import Clock
    from gateway.config import Config
    from gateway.metrics import Metrics
    from gateway.pruner import Pruner
    from gateway.storage import Storage
    from gateway.targets import TargetPolicy

class DeliveryLoop(Protocol):
    """What the API may ask of the delivery loop, and all it may: the engine itself stays
    with the wiring (gateway/app.py)."""

    def wake(self) -> None:
        """New work may be due (a publish, a retry, a resumed hook)."""

    def hook_changed(self, hook_id: str) -> None:
        """A hook was paused, deleted or changed: what the loop holds of it is put back."""

    @property
    def running(self) -> bool:
        """The loop runs (for /readyz)."""


CONFIG: web.AppKey[Config] = web.AppKey("config")
STORAGE: web.AppKey[Storage] = web.AppKey("storage")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
CLIENT: web.AppKey[ClientSession] = web.AppKey("client")
LOOP: web.AppKey[DeliveryLoop] = web.AppKey("loop")
POLICY: web.AppKey[TargetPolicy] = web.AppKey("policy")
PRUNER: web.AppKey[Pruner] = web.AppKey("pruner")

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")


def principal(request: web.Request) -> Principal:
    p = request.get(PRINCIPAL)
    if p is None:
        raise Unauthorized("missing API key")
    return p  # type: ignore[no-any-return]


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers,
                        content_type="application/json")


async def read_json(request: web.Request) -> Any:
    """The request body as JSON: 413 over the limit, 400 when it is not JSON."""
    limit = request.app[CONFIG].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is {request.content_length} bytes; the limit is {limit}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request body is over the limit of {limit} bytes") from None
    except web.RequestPayloadError as exc:
        # Broken chunking, a body cut short, gzip that is not gzip: aiohttp's parser found it
        # while the body streamed in.
        raise malformed(exc.__cause__) from None
    except ConnectionError:
        raise ClientDisconnected("the client disconnected before its body arrived") from None
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {limit}")
    if not raw.strip():
        raise BadRequest("request body is empty; expected JSON")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "exceeds 64-bit range" in str(exc):
            raise _too_big() from None
        if "depth limit" in str(exc):
            raise _too_deep() from None
        # The parser's own words ("unexpected character") help nobody; where it broke does.
        raise BadRequest(f"request body is not valid JSON: it goes wrong at line {exc.lineno}, "
                         f"column {exc.colno}") from None
    if raw.translate(_DIGITS).find(_LONG_NUMBER) >= 0:
        _check_integers(raw)
    return value


# Valid JSON that our store cannot keep exactly: a rule broken, not bad syntax. orjson reads an
# integer outside [-2**63, 2**64) as the nearest float (10**30 became 1e+30): data changed in
# silence.
def _too_big() -> Unprocessable:
    return Unprocessable.field("body", "integers must fit in 64 bits; send larger ones as strings")


def _too_deep() -> Unprocessable:
    return Unprocessable.field("body", "is nested more than 1,024 levels deep")


# Such an integer has at least 20 digits (19 after a minus sign). The body is mapped to "0" for a
# digit or a minus and "x" for the rest, then searched for 20 of them in a row: two C passes
# (about a microsecond for a 200-byte event; the regular expression [0-9]{20}|-[0-9]{19} took
# 39 µs, a sixth of a publish). Only a hit (a long number, maybe in a string) reads it again.
_DIGITS = bytes(ord("0") if b in b"0123456789-" else ord("x") for b in range(256))
_LONG_NUMBER = b"0" * 20


def _int64(text: str) -> int:
    n = int(text)
    if not -(2**63) <= n < 2**64:
        raise _too_big()
    return n


def _check_integers(raw: bytes) -> None:
    """Refuse a body holding an integer orjson could only approximate."""
    try:
        json.loads(raw, parse_int=_int64)
    except RecursionError:
        # (Python's parser gives up sooner than orjson's 1,024 levels.)
        raise Unprocessable.field("body", "is nested too deeply") from None
    except ValueError:
        pass  # orjson read it, so it is JSON; nothing more to learn here


def expect_object(body: Any, allowed: set[str], where: str = "") -> dict[str, Any]:
    """A JSON object with only the allowed fields; else 422 naming the field."""
    if not isinstance(body, dict):
        raise Unprocessable.field(where or "body", "must be a JSON object")
    if not allowed.issuperset(body):  # (the common case answered without building a set)
        unknown = sorted(set(body) - allowed)
        raise Unprocessable.field(f"{where}{unknown[0]}", "unknown field")
    return body


def opt_str(body: dict[str, Any], name: str, *, max_len: int, where: str = "") -> str | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise Unprocessable.field(f"{where}{name}", "must be a string")
    if len(v) > max_len:
        raise Unprocessable.field(f"{where}{name}", f"must be at most {max_len} characters")
    return v


def opt_bool(body: dict[str, Any], name: str) -> bool | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise Unprocessable.field(name, "must be true or false")
    return v


_GOOD_ACCOUNTS: set[str] = set()  # names already checked: a batch repeats a few of them


def account_name(value: Any, field: str = "account") -> str:
    if value.__class__ is str and value in _GOOD_ACCOUNTS:
        return value
    if not isinstance(value, str) or not ACCOUNT_NAME.match(value):
        raise Unprocessable.field(field, "must be 1-128 letters, digits, '.', '_' or '-'")
    if len(_GOOD_ACCOUNTS) >= 10000:
        _GOOD_ACCOUNTS.clear()
    _GOOD_ACCOUNTS.add(value)
    return value


def page_params(request: web.Request) -> tuple[int, str | None]:
    raw_limit = request.query.get("limit", "50")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise Unprocessable.field("limit", "must be an integer from 1 to 500") from None
    if not 1 <= limit <= 500:
        raise Unprocessable.field("limit", "must be an integer from 1 to 500")
    cursor = request.query.get("cursor")
    if not cursor:
        return limit, None
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unprocessable.field("cursor", "is not a cursor this API gave out") from None
    if not re.match(r"^[a-z]+_[0-9a-z]{26}\Z", decoded):
        raise Unprocessable.field("cursor", "is not a cursor this API gave out")
    return limit, decoded


def make_cursor(last_id: str | None) -> str | None:
    if last_id is None:
        return None
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


# RFC 3339's date-time: a full date, a full time and an offset ("Z" or ±hh:mm).
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z")


def rfc3339(value: Any, field: str) -> float:
    """An RFC 3339 time as Unix seconds; else 422 naming the field."""
    message = "must be an RFC 3339 time such as 2026-01-31T09:30:00Z"
    if not isinstance(value, str) or not RFC3339.match(value):
        raise Unprocessable.field(field, message)
    try:
        # (fromisoformat keeps microseconds: finer digits are dropped.)
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):  # a well-formed but impossible time (2026-02-30)
        raise Unprocessable.field(field, message) from None
