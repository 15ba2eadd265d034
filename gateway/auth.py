"""API keys: generation, hashing, and what a caller may see."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from gateway.errors import Forbidden, NotFound, Unprocessable
from gateway.models import ApiKey, Role

KEY_PREFIX = "gw_"
# Here rather than in api/ so the CLI can check names without importing the web stack.
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")  # \Z: "$" allows a final "\n"


def generate_key() -> str:
    """A new API key: 32 random bytes, URL-safe base64, with a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    # Keys carry 256 bits of entropy, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    key: ApiKey

    @property
    def role(self) -> Role:
        return self.key.role

    @property
    def account(self) -> str | None:
        return self.key.account

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise Forbidden(f"this endpoint needs {_a(allowed)} key; this key is "
                            f"{_a(self.role.value)} key")

    def can_see(self, account: str) -> bool:
        """Whether a resource of `account` is visible; subscribers see only their own."""
        return self.role is not Role.SUBSCRIBER or self.account == account

    def visible(self, account: str) -> None:
        """Another account's resource is answered exactly like a missing one."""
        if not self.can_see(account):
            raise NotFound("no such resource")

    def target_account(self, requested: object) -> str:
        """The account a write applies to: required for admins, implied for subscribers."""
        if self.role is Role.SUBSCRIBER:
            assert self.account is not None
            if requested is not None and requested != self.account:
                raise Forbidden("a subscriber key may only act on its own account")
            return self.account
        if requested is None:
            raise Unprocessable.field("account", "is required with an admin key")
        if not isinstance(requested, str):
            raise Unprocessable.field("account", "must be a string")
        return requested


def _a(word: str) -> str:
    """`word` with its indefinite article: "an admin", "a publisher"."""
    return ("an " if word[:1] in ("a", "e", "i", "o", "u") else "a ") + word
