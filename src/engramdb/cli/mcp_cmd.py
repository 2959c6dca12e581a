"""``engramdb mcp``: serve memory tools over the Model Context Protocol (stdio by default)."""

from __future__ import annotations

import argparse

from ..api import connect
from ..settings import Settings

HELP = "serve memory tools to agents over the Model Context Protocol"


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent-id", help="default agent scope of every tool")
    p.add_argument("--user-id", help="default user scope of every tool")
    p.add_argument("--organization", help="organization (default: 'default')")
    p.add_argument(
        "--transport", choices=["stdio", "streamable-http"], default="stdio",
        help="stdio (for agent hosts that launch the command) or streamable-http",
    )  # fmt: skip


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from ..mcp import build_server

    if args.organization:
        settings = settings.with_(organization=args.organization)
    with connect(settings=settings) as db:
        server = build_server(db, agent_id=args.agent_id, user_id=args.user_id)
        server.run(transport=args.transport)
    return 0


COMMAND = (_add, _run)
