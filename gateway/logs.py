"""structlog set-up: JSON or console lines, with the request or delivery context on each; and the
access line, which every request writes and so is rendered apart (see access_writer)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}

# (method, route, status, seconds, request id, key id or None)
AccessWriter = Callable[[str, str, int, float, str, "str | None"], None]

_configured: dict[str, Any] = {}  # what configure() set: format, level, descriptor


def _dumps(obj: Any, **_: Any) -> str:
    # orjson, not the json module: the same line in a fifth of the time; default=str for
    # what JSON has no type for (an exception, a path).
    return orjson.dumps(obj, default=str).decode()


def configure(fmt: str = "json", level: str = "info") -> None:
    renderer: structlog.typing.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    try:
        fd: int | None = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    _configured.update(format=fmt, level=LEVELS[level], fd=fd)
    # aiohttp's own loggers: keep warnings (e.g. bad requests) but not its access log.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]


def access_writer(enabled: bool) -> AccessWriter | None:
    """What writes the access line, bound once when the routes are added; None when no line
    is written (the access log off, or a level above info).

    Through structlog, a line walks the processor chain per request (the context merged, the
    level added, a timestamp formatted by datetime, exception formatting that finds none, the
    JSON rendered) and was a third of single-event ingest. In JSON format it is rendered here
    instead, with the same fields in the same order: one orjson call, the timestamp's second
    formatted once a second, one write to the descriptor structlog writes to (which flushes
    each of its lines, so the two never interleave mid-line)."""
    if not enabled or _configured.get("level", logging.INFO) > logging.INFO:
        return None
    fd = _configured.get("fd")
    if _configured.get("format") != "json" or fd is None:
        log = get_logger("gateway.http")

        def via_structlog(method: str, route: str, status: int, seconds: float, rid: str,
                          key: str | None) -> None:
            log.info("request", method=method, route=route, status=status,
                     ms=round(seconds * 1000, 2))

        return via_structlog

    write = os.write
    dumps = orjson.dumps
    stamp = _Stamp()

    def as_json(method: str, route: str, status: int, seconds: float, rid: str,
                key: str | None) -> None:
        line: dict[str, Any] = {"method": method, "route": route, "status": status,
                                "ms": round(seconds * 1000, 2), "event": "request"}
        if key is not None:
            line["key_id"] = key
        line["request_id"] = rid
        line["level"] = "info"
        line["timestamp"] = stamp()
        write(fd, dumps(line) + b"\n")

    return as_json


class _Stamp:
    """The time now as structlog's TimeStamper(fmt="iso", utc=True) writes it."""

    __slots__ = ("head", "second")

    def __init__(self) -> None:
        self.second = -1
        self.head = ""

    def __call__(self) -> str:
        now = time.time()
        second = int(now)
        if second != self.second:
            self.second = second
            self.head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self.head}.{int((now - second) * 1_000_000):06d}Z"
