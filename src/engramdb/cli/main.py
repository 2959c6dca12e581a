"""The ``engramdb`` command: parses arguments, builds Settings from the environment, dispatches."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import EngramError
from ..settings import Settings

__all__ = ["main"]

#: Subcommand modules register themselves here: name → (add_arguments, run).
Command = tuple[
    Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Settings], int]
]


def _commands() -> dict[str, tuple[str, Command]]:
    from . import db_cmd, demo_cmd

    table: dict[str, tuple[str, Command]] = {
        "db": ("database schema: upgrade, downgrade, current, history", db_cmd.COMMAND),
        "demo": ("store and recall a few memories, end to end", demo_cmd.COMMAND),
    }
    for optional in (
        "serve_cmd", "keys_cmd", "backup_cmd", "memories_cmd", "stats_cmd", "mcp_cmd",
        "import_cmd", "orgs_cmd",
    ):  # fmt: skip
        try:
            module = __import__(f"{__package__}.{optional}", fromlist=["COMMAND", "HELP"])
        except ImportError:
            continue
        table[optional.removesuffix("_cmd")] = (module.HELP, module.COMMAND)
    return table


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, tuple[str, Command]]]:
    parser = argparse.ArgumentParser(
        prog="engramdb", description="engramdb: the memory database for AI agents."
    )
    parser.add_argument(
        "--database-url",
        help="postgresql://…, sqlite:///path.db; default: the embedded PostgreSQL "
        "(env ENGRAMDB_DATABASE_URL)",
    )
    parser.add_argument("--data-dir", help="embedded database directory (env ENGRAMDB_DATA_DIR)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = _commands()
    for name, (help_text, (add_args, _run)) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
        )
        add_args(p)
    return parser, commands


def emit(args: argparse.Namespace, human: str, data: Any) -> None:
    """Print ``data`` as JSON with --json, else the human text."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(human)


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    try:
        settings = Settings.from_env(**overrides)
        _help, (_add, run) = commands[args.command]
        return run(args, settings)
    except EngramError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": exc.to_dict()}, default=str), file=sys.stderr)
        else:
            print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
