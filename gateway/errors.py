"""The gateway's error tree.

    GatewayError
    ├── ConfigError          a bad setting: names the key and why
    ├── StorageError         the database cannot be used (e.g. a newer schema)
    │   └── DatabaseUnavailable   it cannot write now (disk full, locked, read-only): 503
    └── ApiError             answered as application/problem+json
        ├── BadRequest       400: the body is not JSON
        ├── Unauthorized     401: missing or unknown key
        ├── Forbidden        403: known key, wrong role or account
        ├── NotFound         404: missing, or another account's
        ├── MethodNotAllowed 405
        ├── RequestTimeout   408: no whole request head within server.header_timeout_seconds
        ├── Conflict         409
        ├── PayloadTooLarge  413
        ├── UnsupportedMediaType 415: a Content-Encoding the server does not read
        ├── Unprocessable    422: JSON that breaks the rules; carries per-field errors
        ├── HeadersTooLarge  431: a header over the size limit, or too many of them
        ├── ClientDisconnected 499: the client left before its body arrived (logs only)
        ├── NotSupported     501: a verb this storage backend does not have yet
        └── ServiceUnavailable  503, with Retry-After (DatabaseUnavailable is one)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class GatewayError(Exception):
    pass


class ConfigError(GatewayError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class StorageError(GatewayError):
    pass


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class ApiError(GatewayError):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    slug: ClassVar[str] = "internal"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {
            "type": f"https://gateway.dev/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            out["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return out

    def headers(self) -> dict[str, str]:
        """Headers the answer carries besides the problem document."""
        return {}


class BadRequest(ApiError):
    status, title, slug = 400, "Bad Request", "bad-request"


class Unauthorized(ApiError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(ApiError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ApiError):
    status, title, slug = 404, "Not Found", "not-found"


class MethodNotAllowed(ApiError):
    status, title, slug = 405, "Method Not Allowed", "method-not-allowed"


class RequestTimeout(ApiError):
    status, title, slug = 408, "Request Timeout", "request-timeout"


class Conflict(ApiError):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(ApiError):
    status, title, slug = 413, "Payload Too Large", "payload-too-large"


class UnsupportedMediaType(ApiError):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


class Unprocessable(ApiError):
    status, title, slug = 422, "Unprocessable Content", "validation"

    @classmethod
    def field(cls, field: str, message: str) -> Unprocessable:
        return cls(f"{field}: {message}", [FieldError(field, message)])


class HeadersTooLarge(ApiError):
    status, title, slug = 431, "Request Header Fields Too Large", "headers-too-large"


class ClientDisconnected(ApiError):
    """Raised where a body is read and the client has gone: nobody sees the answer, but the
    metrics and the log count it apart from the server's own errors (nginx's 499)."""

    status, title, slug = 499, "Client Closed Request", "client-disconnected"


class NotSupported(ApiError):
    status, title, slug = 501, "Not Implemented", "not-supported"


class ServiceUnavailable(ApiError):
    status, title, slug = 503, "Service Unavailable", "unavailable"

    retry_after = 5  # seconds: Retry-After

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class DatabaseUnavailable(StorageError, ServiceUnavailable):
    """The database cannot store anything now; nothing of the request was stored. Raised by
    storage, answered 503 by the request layer."""

    def __init__(self, reason: str) -> None:
        ServiceUnavailable.__init__(self, f"the database cannot store anything now ({reason}); "
                                          "try again later")
        self.reason = reason
