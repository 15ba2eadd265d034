"""Name lookups from a table the test controls: the running loop's getaddrinfo is replaced, so
no query ever reaches a real resolver. A name missing from the table fails like NXDOMAIN."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

Answer = list[tuple[int, str]]  # (family, address), in the order the resolver gives them

V4, V6 = socket.AF_INET, socket.AF_INET6
PUBLIC4, PUBLIC6 = "93.184.216.34", "2606:4700::1111"


def _info(family: int, address: str, port: int) -> tuple[Any, ...]:
    sockaddr: tuple[Any, ...] = (address, port) if family == V4 else (address, port, 0, 0)
    return (family, socket.SOCK_STREAM, 6, "", sockaddr)


def install(monkeypatch: pytest.MonkeyPatch) -> dict[str, Answer]:
    """Answer lookups on the running loop from the returned table (fill it in afterwards)."""
    table: dict[str, Answer] = {}

    async def getaddrinfo(host: str, port: Any, *, family: int = 0, type: int = 0, proto: int = 0,
                          flags: int = 0) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [_info(f, a, int(port or 0)) for f, a in table[host]
                if family in (socket.AF_UNSPEC, f)]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    return table
