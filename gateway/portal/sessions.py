"""Portal sessions: what the cookie's random token stands for. Only hashes of tokens are kept.

A subscriber's session is a row of the portal sessions the API's links use (Storage's
create_portal_session / portal_session verbs), for the link's account and ending when the link
does, so it survives a restart and holds in every process. An operator's session is kept in
this process's memory with the hash of the admin key, checked again on every request (a revoked
key ends it): after a restart, or on another process, the operator signs in again."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from gateway.api.common import STORAGE
from gateway.api.portal_sessions import new_token
from gateway.auth import hash_key
from gateway.models import Role
from gateway.storage.backend import Backend

OPERATOR_PREFIX = "gwo_"


@dataclass(frozen=True, slots=True)
class Session:
    role: Role
    account: str | None  # a subscriber's; None for an operator
    key_hash: bytes | None  # an operator's admin key
    csrf: str
    expires_at: float


def _csrf(token: str) -> str:
    """The forms' token: derived from the session token, so only a page that was given it (by
    a request carrying the cookie) can know it, and nothing more needs storing."""
    return hmac.new(token.encode(), b"gateway portal csrf", hashlib.sha256).hexdigest()


class Sessions:
    def __init__(self, app: web.Application) -> None:
        self._app = app  # its storage opens after the routes are added
        self._operators: dict[bytes, tuple[bytes, float]] = {}  # token hash → key hash, expiry

    async def open_operator(self, key_hash: bytes, expires_at: float, now: float) -> str:
        for h in [h for h, (_, exp) in self._operators.items() if exp <= now]:
            del self._operators[h]
        token = OPERATOR_PREFIX + secrets.token_urlsafe(32)
        self._operators[hash_key(token)] = (key_hash, expires_at)
        return token

    async def open_subscriber(self, account: str, expires_at: float, now: float) -> str:
        token = new_token()
        await self._storage.create_portal_session(hash_key(token), account, expires_at, now)
        return token

    async def link(self, token: str) -> tuple[str, float] | None:
        """(account, expires_at) of a link's token, expired or not; None if unknown."""
        if not token.isascii() or len(token) > 100:
            return None
        return await self._storage.portal_session(hash_key(token))

    async def session(self, token: str, now: float) -> Session | None:
        if not token.isascii() or len(token) > 100:
            return None
        if token.startswith(OPERATOR_PREFIX):
            found = self._operators.get(hash_key(token))
            if found is None or found[1] <= now:
                return None
            return Session(Role.ADMIN, None, found[0], _csrf(token), found[1])
        row = await self._storage.portal_session(hash_key(token))
        if row is None or row[1] <= now:
            return None
        return Session(Role.SUBSCRIBER, row[0], None, _csrf(token), row[1])

    async def end(self, token: str) -> None:
        if token.startswith(OPERATOR_PREFIX):
            self._operators.pop(hash_key(token), None)
        elif token.isascii() and len(token) <= 100:
            await self._storage.delete_portal_session(hash_key(token))


    @property
    def _storage(self) -> Backend:
        return self._app[STORAGE]


SESSIONS: web.AppKey[Sessions] = web.AppKey("portal_sessions")
