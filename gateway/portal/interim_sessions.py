"""INTERIM, until the portal-api branch's session storage verbs and POST /v1/portal/sessions are
merged: portal links and sessions held in this process's memory (lost on restart), with the
interface the portal's pages use. Only hashes of tokens are kept."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from aiohttp import web

from gateway.api.common import CLOCK, CONFIG, account_name, expect_object, json_response, principal, read_json
from gateway.errors import Unprocessable
from gateway.models import Role, iso


def token_hash(token: str) -> bytes:
    # Tokens carry 256 bits of entropy: a fast hash is enough, as for API keys.
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Link:
    account: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Session:
    role: Role
    account: str | None  # a subscriber's; None for an operator
    key_hash: bytes | None  # an operator's admin key, checked again on every request
    csrf: str
    expires_at: float


class MemorySessions:
    def __init__(self) -> None:
        self._links: dict[bytes, Link] = {}
        self._sessions: dict[bytes, Session] = {}

    async def create_link(self, account: str, expires_at: float) -> str:
        token = secrets.token_urlsafe(32)
        self._links[token_hash(token)] = Link(account, expires_at)
        return token

    async def link(self, token: str) -> Link | None:
        return self._links.get(token_hash(token))

    async def create_session(self, role: Role, account: str | None, key_hash: bytes | None,
                             expires_at: float, now: float) -> tuple[str, Session]:
        for h in [h for h, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[h]
        token = secrets.token_urlsafe(32)
        session = Session(role, account, key_hash, secrets.token_urlsafe(32), expires_at)
        self._sessions[token_hash(token)] = session
        return token, session

    async def session(self, token: str, now: float) -> Session | None:
        s = self._sessions.get(token_hash(token))
        return s if s is not None and s.expires_at > now else None

    async def end_session(self, token: str) -> None:
        self._sessions.pop(token_hash(token), None)


SESSIONS: web.AppKey[MemorySessions] = web.AppKey("portal_sessions")
routes = web.RouteTableDef()


@routes.post("/v1/portal/sessions")
async def create_portal_session(request: web.Request) -> web.Response:
    principal(request).require(Role.ADMIN)
    body = expect_object(await read_json(request), {"account", "ttl_seconds"})
    account = account_name(body.get("account"))
    ttl = body.get("ttl_seconds", 3600)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 60 <= ttl <= 30 * 86400:
        raise Unprocessable.field("ttl_seconds", "must be an integer from 60 to 2592000")
    expires_at = request.app[CLOCK].now() + ttl
    token = await request.app[SESSIONS].create_link(account, expires_at)
    base = request.app[CONFIG].server.public_url.rstrip("/")
    return json_response({"url": f"{base}/portal/link/{token}", "expires_at": iso(expires_at)},
                         status=201)
