"""Standard Webhooks signatures (v1, HMAC-SHA256): pure functions, no I/O."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Iterable

PREFIX = "whsec_"
_BLOCK = 64  # SHA-256's block size: HMAC pads the key to it (RFC 2104)
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=1024)  # every attempt signs; a hook's secret rarely changes
def secret_key(secret: str) -> bytes:
    """The HMAC key behind a `whsec_…` secret: its base64 payload, decoded."""
    raw = secret[len(PREFIX):] if secret.startswith(PREFIX) else secret
    return base64.b64decode(raw)


@functools.lru_cache(maxsize=1024)
def _keyed(secret: str) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states with the padded key already absorbed (RFC 2104's inner and outer hash).

    Each signature copies them instead of keying a new HMAC: OpenSSL 3 looks the MAC
    algorithm up on every one-shot HMAC, which cost more than the hashing of a small body."""
    key = secret_key(secret)
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def hmac_sha256(secret: str, msg: bytes) -> bytes:
    inner, outer = _keyed(secret)
    i = inner.copy()
    i.update(msg)
    o = outer.copy()
    o.update(i.digest())
    return o.digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature over "<id>.<timestamp>.<body>"."""
    mac = hmac_sha256(secret, f"{msg_id}.{timestamp}.".encode() + body)
    return "v1," + base64.b64encode(mac).decode()


def signature_header(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature value: space-separated signatures, one per secret (rotation)."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def verify(secret: str, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    expected = sign(secret, msg_id, timestamp, body).encode()
    return any(hmac.compare_digest(expected, part.encode()) for part in header.split())
