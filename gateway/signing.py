"""Standard Webhooks signatures (v1, HMAC-SHA256): pure functions, no I/O."""

from __future__ import annotations

import base64
import functools
import hmac
from collections.abc import Iterable

PREFIX = "whsec_"


@functools.lru_cache(maxsize=1024)  # every attempt signs; a hook's secret rarely changes
def secret_key(secret: str) -> bytes:
    """The HMAC key behind a `whsec_…` secret: its base64 payload, decoded."""
    raw = secret[len(PREFIX):] if secret.startswith(PREFIX) else secret
    return base64.b64decode(raw)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature over "<id>.<timestamp>.<body>"."""
    mac = hmac.digest(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, "sha256")
    return "v1," + base64.b64encode(mac).decode()


def signature_header(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature value: space-separated signatures, one per secret (rotation)."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def verify(secret: str, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    expected = sign(secret, msg_id, timestamp, body).encode()
    return any(hmac.compare_digest(expected, part.encode()) for part in header.split())
