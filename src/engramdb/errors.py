"""The one exception tree of engramdb, with stable codes and HTTP statuses.

Every error a caller can see is an :class:`EngramError`. Driver errors (psycopg, sqlite3, httpx)
are translated at the store or client boundary, so callers never catch backend types::

    EngramError                      code                  http
    ├── InvalidInput                 invalid_input         422
    │   ├── DimensionMismatch        dimension_mismatch    422
    │   ├── InvalidFilter            invalid_filter        422
    │   ├── InvalidCursor            invalid_cursor        400
    │   └── LimitExceeded            limit_exceeded        413
    ├── BadRequest                   bad_request           400
    ├── NotFound                     not_found             404
    ├── Conflict                     conflict              409
    ├── AuthenticationError          unauthenticated       401
    ├── PermissionDenied             permission_denied     403
    ├── RateLimited                  rate_limited          429
    │   └── QuotaExceeded            quota_exceeded        429
    ├── ConfigurationError           configuration_error   500
    ├── MigrationRequired            migration_required    503
    ├── Unavailable                  unavailable           503
    │   └── EmbeddingError           embedding_error       503
    └── BackendError                 backend_error         500

The client maps ``code`` back to the same class, so remote and in-process callers catch the same
exceptions.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "DimensionMismatch",
    "EmbeddingError",
    "EngramError",
    "InvalidCursor",
    "InvalidFilter",
    "InvalidInput",
    "LimitExceeded",
    "MigrationRequired",
    "NotFound",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "Unavailable",
    "error_for_code",
]


class EngramError(Exception):
    """Base of every engramdb error; ``code`` is stable and safe to branch on."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class InvalidInput(EngramError):
    """A value the caller sent is not acceptable (empty, malformed, out of range)."""

    code = "invalid_input"
    http_status = 422


class DimensionMismatch(InvalidInput):
    """A vector's length differs from the embedding space it is written to or searched in."""

    code = "dimension_mismatch"


class InvalidFilter(InvalidInput):
    """A filter expression names an unknown field or operator, or has a value of the wrong type."""

    code = "invalid_filter"


class InvalidCursor(InvalidInput):
    """A pagination cursor was not produced by this listing."""

    code = "invalid_cursor"
    http_status = 400


class LimitExceeded(InvalidInput):
    """A size limit (content, batch, metadata, top_k, body) was exceeded."""

    code = "limit_exceeded"
    http_status = 413


class BadRequest(EngramError):
    """The request itself is malformed (not JSON, wrong shape)."""

    code = "bad_request"
    http_status = 400


class NotFound(EngramError):
    """The object does not exist in this organization (or was deleted)."""

    code = "not_found"
    http_status = 404


class Conflict(EngramError):
    """The write collides with existing state (a unique name, a stale version)."""

    code = "conflict"
    http_status = 409


class AuthenticationError(EngramError):
    """No credentials, or credentials that are invalid, expired or revoked."""

    code = "unauthenticated"
    http_status = 401


class PermissionDenied(EngramError):
    """The credentials are valid but lack the scope for this action."""

    code = "permission_denied"
    http_status = 403


class RateLimited(EngramError):
    """Too many requests in the current window; ``retry_after`` says when to retry (seconds)."""

    code = "rate_limited"
    http_status = 429

    def __init__(
        self, message: str, *, retry_after: int = 1, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details={"retry_after": retry_after, **(details or {})})
        self.retry_after = retry_after


class QuotaExceeded(RateLimited):
    """The monthly quota of the API key is used up."""

    code = "quota_exceeded"


class ConfigurationError(EngramError):
    """engramdb is configured in a way that cannot work (missing extension, bad URL)."""

    code = "configuration_error"
    http_status = 500


class MigrationRequired(EngramError):
    """The database schema is behind this version of engramdb: run ``engramdb db upgrade``."""

    code = "migration_required"
    http_status = 503


class Unavailable(EngramError):
    """A dependency (database, embeddings API) cannot be reached right now; retrying may help."""

    code = "unavailable"
    http_status = 503


class EmbeddingError(Unavailable):
    """The embedder failed to produce vectors."""

    code = "embedding_error"


class BackendError(EngramError):
    """The database reported an unexpected error."""

    code = "backend_error"
    http_status = 500


def _all_subclasses(cls: type[EngramError]) -> list[type[EngramError]]:
    out: list[type[EngramError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_for_code(code: str, message: str, details: dict[str, Any] | None = None) -> EngramError:
    """Rebuild the exception a server reported, for the HTTP client."""
    classes: list[type[EngramError]] = [EngramError, *_all_subclasses(EngramError)]
    for cls in classes:
        if cls.code == code:
            if issubclass(cls, RateLimited):
                retry = int((details or {}).get("retry_after", 1))
                return cls(message, retry_after=retry, details=details)
            return cls(message, details=details)
    return EngramError(message, details=details)
