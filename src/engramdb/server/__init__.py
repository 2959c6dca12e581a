"""The engramdb HTTP server: ``create_app(settings)`` (FastAPI), run by ``engramdb serve``."""

from .app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]
