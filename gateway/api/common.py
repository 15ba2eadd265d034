"""What every resource shares: typed app state, JSON in and out, validation, pagination."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway.auth import ACCOUNT_NAME
from gateway.errors import BadRequest, PayloadTooLarge, Unauthorized, Unprocessable

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from gateway.auth import Principal
    from gateway.clock import Clock
    from gateway.config import Config
    from gateway.delivery import DeliveryEngine
    from gateway.metrics import Metrics
    from gateway.pruner import Pruner
    from gateway.storage.backend import Backend
    from gateway.targets import TargetPolicy

CONFIG: web.AppKey[Config] = web.AppKey("config")
STORAGE: web.AppKey[Backend] = web.AppKey("storage")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
CLIENT: web.AppKey[ClientSession] = web.AppKey("client")
ENGINE: web.AppKey[DeliveryEngine] = web.AppKey("engine")
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
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {limit}")
    if not raw.strip():
        raise BadRequest("request body is empty; expected JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "exceeds 64-bit range" in str(exc):
            # Valid JSON that our store cannot keep exactly: a rule broken, not bad syntax.
            raise Unprocessable.field("body", "numbers must fit in 64 bits; send larger ones "
                                      "as strings") from None
        # The parser's own words ("unexpected character") help nobody; where it broke does.
        raise BadRequest(f"request body is not valid JSON: it goes wrong at line {exc.lineno}, "
                         f"column {exc.colno}") from None


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
