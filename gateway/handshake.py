"""Intent verification: the REST Hooks X-Hook-Secret handshake, to the checked address only."""

from __future__ import annotations

import asyncio
import hmac
import secrets

import aiohttp
import orjson

from gateway import __version__
from gateway.targets import refusal_of


class HandshakeFailed(Exception):
    """The target did not confirm the subscription; str() says what it did."""


async def verify_intent(session: aiohttp.ClientSession, url: str, hook_id: str,
                        timeout: float) -> int:
    """The status the target answered when it confirmed (the portal shows it); else raises."""
    token = secrets.token_urlsafe(32)
    body = orjson.dumps({"type": "hook.verification", "hook_id": hook_id})
    headers = {"X-Hook-Secret": token, "Content-Type": "application/json",
               "User-Agent": f"gateway/{__version__}"}
    try:
        async with asyncio.timeout(timeout):
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                echoed = resp.headers.get("X-Hook-Secret")
    except TimeoutError:
        raise HandshakeFailed(
            f"timed out: target did not answer the handshake within {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        refused = refusal_of(exc)
        if refused is not None:
            raise HandshakeFailed(f"target address refused: {refused.reason}") from None
        raise HandshakeFailed(f"could not reach target: {_describe(exc)}") from None
    except OSError as exc:
        refused = refusal_of(exc)
        if refused is not None:
            raise HandshakeFailed(f"target address refused: {refused.reason}") from None
        raise HandshakeFailed(f"could not reach target: {exc.strerror or exc}") from None
    if 300 <= status < 400:
        raise HandshakeFailed(f"target answered {status} (redirects are not followed)")
    if not 200 <= status < 300:
        raise HandshakeFailed(f"target answered {status}; the handshake needs a 2xx")
    if echoed is None:
        raise HandshakeFailed(f"target answered {status} without echoing the X-Hook-Secret header")
    if not hmac.compare_digest(echoed.encode(), token.encode()):
        raise HandshakeFailed(f"target answered {status} but echoed a different X-Hook-Secret")
    return status


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "host does not resolve"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate not valid"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) \
            else f"connection failed ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without answering"
    return type(exc).__name__
