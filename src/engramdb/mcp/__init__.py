"""Model Context Protocol server: engramdb's memory as tools an agent can call."""

from __future__ import annotations

from typing import Any

__all__ = ["build_server"]


def build_server(db: Any, **scope: Any) -> Any:
    """See :func:`engramdb.mcp.server.build_server`; needs the ``mcp`` extra."""
    try:
        from .server import build_server as build
    except ImportError as exc:
        from ..errors import ConfigurationError

        raise ConfigurationError(
            "the MCP server needs the 'mcp' extra: pip install 'engramdb[mcp]'"
        ) from exc
    return build(db, **scope)
