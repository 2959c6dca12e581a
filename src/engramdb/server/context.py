"""Per-request context: who is calling, the request id, and the tokens embedded on its behalf."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..embeddings.base import Embedder, Vectors

__all__ = ["MeteredEmbedder", "Principal", "RequestContext", "current"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an API key or a JWT subject, in one organization."""

    organization: str
    scopes: frozenset[str]
    kind: str  # "api_key" or "jwt"
    subject: str  # the key id, or the token's ``sub``
    key_id: uuid.UUID | None = None
    key_prefix: str | None = None
    operator: bool = False  # admin of the server's home organization

    @property
    def actor(self) -> str:
        """How the caller is named in ``created_by_id`` and the audit log."""
        return f"key:{self.key_prefix}" if self.kind == "api_key" else f"jwt:{self.subject}"


@dataclass
class RequestContext:
    request_id: str
    principal: Principal | None = None
    tokens: int = 0
    extra: dict[str, object] = field(default_factory=dict)


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "engramdb_request", default=None
)


def current() -> RequestContext | None:
    return _current.get()


def set_current(ctx: RequestContext | None) -> contextvars.Token[RequestContext | None]:
    return _current.set(ctx)


def reset_current(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)


def estimate_tokens(text: str) -> int:
    """Roughly what a subword tokenizer makes of ``text`` (about 4 characters a token); metering
    needs a stable, cheap number, not the model's exact count."""
    return max(1, (len(text) + 3) // 4)


class MeteredEmbedder:
    """Wraps the server's embedder and adds what each request embeds to its context.

    Worker threads run with a copy of the request's context, so the counter object is shared.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    def _count(self, texts: Sequence[str]) -> None:
        ctx = _current.get()
        if ctx is not None:
            ctx.tokens += sum(estimate_tokens(t) for t in texts)

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self._count(texts)
        return self.inner.embed_documents(texts)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        self._count(texts)
        return self.inner.embed_queries(texts)
