"""Name lookups from a table the test controls: the running loop's getaddrinfo and getnameinfo
are replaced, so no query ever reaches a real resolver. Like the system's resolver, a numeric
address answers for itself and a name is IDNA-encoded first; a name missing from the table
fails like NXDOMAIN, and a reverse lookup (getnameinfo without NI_NUMERICHOST) fails the test."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

Answer = list[tuple[int, str]]  # (family, address), in the order the resolver gives them

V4, V6 = socket.AF_INET, socket.AF_INET6
PUBLIC4, PUBLIC6 = "93.184.216.34", "2606:4700::1111"
NUMERIC = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV


def _info(family: int, address: str, port: int) -> tuple[Any, ...]:
    if family == V4:
        return (family, socket.SOCK_STREAM, 6, "", (address, port))
    # A scope (fe80::1%3) travels as the sockaddr's fourth field, as getaddrinfo gives it.
    bare, _, scope = address.partition("%")
    return (family, socket.SOCK_STREAM, 6, "", (bare, port, 0, int(scope or 0)))


def install(monkeypatch: pytest.MonkeyPatch) -> dict[str, Answer]:
    """Answer lookups on the running loop from the returned table (fill it in afterwards)."""
    table: dict[str, Answer] = {}

    async def getaddrinfo(host: str, port: Any, *, family: int = 0, type: int = 0, proto: int = 0,
                          flags: int = 0) -> list[tuple[Any, ...]]:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            host.encode("idna")  # what socket.getaddrinfo does first: UnicodeError for "a..b"
            if host not in table:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            answer = table[host]
        else:
            answer = [(V4 if ip.version == 4 else V6, host)]
        return [_info(f, a, int(port or 0)) for f, a in answer if family in (socket.AF_UNSPEC, f)]

    async def getnameinfo(sockaddr: tuple[Any, ...], flags: int = 0) -> tuple[str, str]:
        assert flags & NUMERIC == NUMERIC, f"a reverse lookup of {sockaddr} (flags {flags})"
        scope = f"%{sockaddr[3]}" if len(sockaddr) > 3 and sockaddr[3] else ""
        return f"{sockaddr[0]}{scope}", str(sockaddr[1])

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(loop, "getnameinfo", getnameinfo)
    return table
