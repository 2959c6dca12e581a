"""engramdb: the memory database for AI agents.

``engramdb.connect()`` opens the embedded PostgreSQL (or the URL given) and returns an object whose
``memories`` (and other resources) store and recall what agents see, learn and decide.
"""

from .api import AsyncEngram, Engram, connect, connect_async
from .errors import (
    AuthenticationError,
    BackendError,
    BadRequest,
    ConfigurationError,
    Conflict,
    DimensionMismatch,
    EmbeddingError,
    EngramError,
    InvalidCursor,
    InvalidFilter,
    InvalidInput,
    LimitExceeded,
    MigrationRequired,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    Unavailable,
)
from .models import Memory, MemoryInput, MemoryVersion, Page, SearchHit
from .scoring import Weights
from .settings import Limits, Settings

__version__ = "0.1.0"

__all__ = [
    "AsyncEngram",
    "AuthenticationError",
    "BackendError",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "DimensionMismatch",
    "EmbeddingError",
    "Engram",
    "EngramError",
    "InvalidCursor",
    "InvalidFilter",
    "InvalidInput",
    "LimitExceeded",
    "Limits",
    "Memory",
    "MemoryInput",
    "MemoryVersion",
    "MigrationRequired",
    "NotFound",
    "Page",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "SearchHit",
    "Settings",
    "Unavailable",
    "Weights",
    "__version__",
    "connect",
    "connect_async",
]
