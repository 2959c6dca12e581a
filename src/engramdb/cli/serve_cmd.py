"""``engramdb serve``: the HTTP server (uvicorn), with an admin key made on first start."""

from __future__ import annotations

import argparse
import os

from ..errors import ConfigurationError
from ..settings import Settings

HELP = "run the HTTP API server"


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to listen on (env ENGRAMDB_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env ENGRAMDB_PORT; default 8000)")
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _bootstrap(settings: Settings) -> str | None:
    """Migrate (as the owner) and, when no key exists anywhere, make an admin key for the home
    organization; returns its secret (shown once, only its hash is stored)."""
    from ..service.keys import ApiKeys
    from ..store import open_store

    store = open_store(settings.with_(app_role=None, pool_min_size=1, pool_max_size=1))
    try:
        made = ApiKeys(store).create_first(settings.organization)
    finally:
        store.close()
    return None if made is None else made[1]


def _export(settings: Settings) -> None:
    """Worker processes build their settings from the environment: pass ours on."""
    for name, value in (
        ("DATABASE_URL", settings.database_url),
        ("DATA_DIR", str(settings.data_dir)),
        ("HOST", settings.host),
        ("PORT", str(settings.port)),
    ):
        if value is not None:
            os.environ[f"ENGRAMDB_{name}"] = value


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        import uvicorn

        from ..server import create_app
    except ImportError as exc:
        raise ConfigurationError(
            f"the server needs the 'server' extra: pip install 'engramdb[server]' ({exc.name})"
        ) from exc
    changes = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.with_(**changes) if changes else settings
    if args.workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    secret = _bootstrap(settings)
    where = settings.database_url.split("@")[-1] if settings.database_url else (
        f"embedded PostgreSQL in {settings.data_dir}")  # fmt: skip
    print(f"engramdb listening on http://{settings.host}:{settings.port} ({where})")
    print(f"  OpenAPI: http://{settings.host}:{settings.port}/docs (schema at /openapi.json)")
    if secret is not None:
        print(f"\n  First start: an admin API key for organization {settings.organization!r}:\n")
        print(f"    {secret}\n")
        print("  It is shown only this once (only its hash is stored): keep it now.")
    print("  Authenticate with: Authorization: Bearer <API key or JWT>")
    print("  More keys: engramdb keys create --org ORG --name NAME --scopes read,write", flush=True)
    if args.workers == 1:
        uvicorn.run(
            create_app(settings), host=settings.host, port=settings.port,
            log_level=args.log_level, access_log=False,
        )  # fmt: skip
    else:
        _export(settings)
        uvicorn.run(
            "engramdb.server:app_from_env", factory=True, host=settings.host,
            port=settings.port, workers=args.workers, log_level=args.log_level,
            access_log=False,
        )  # fmt: skip
    return 0


COMMAND = (_add, _run)
