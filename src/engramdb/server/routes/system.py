"""Liveness, readiness, Prometheus metrics, and ``/v1/info`` (what the server is, who you are)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ...errors import EngramError, MigrationRequired, Unavailable
from ..auth import require, state_of
from ..context import Principal
from ..errors import error_response
from ..schemas import EmbedderInfo, Info
from .common import ERRORS, JsonRoute

router = APIRouter(route_class=JsonRoute, tags=["system"])


@router.get("/healthz", summary="Alive (the process answers)")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready: the database answers and its schema is at head (else 503)",
    responses={503: ERRORS[503]},
)
def readyz(request: Request) -> Any:
    store = state_of(request).engram.engine.store
    try:
        store.ping()
        current, head = store.schema_status()
    except EngramError as exc:
        return error_response(Unavailable(f"the database is not reachable: {exc.message}"))
    if current != head:
        return error_response(
            MigrationRequired(
                f"the schema is at {current or 'nothing'}, not {head}: run `engramdb db upgrade`",
                details={"current": current, "head": head},
            )
        )
    return JSONResponse({"status": "ready", "schema": current})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    state = state_of(request)
    async_pool, on_loop = state.async_stats()
    body = state.metrics.render(state.pool_stats(), state.usage.pending, async_pool, on_loop)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/info", response_model=Info, tags=["system"], responses=ERRORS,
    summary="What this server is (version, embedder, limits) and who the caller is",
)  # fmt: skip
def info(request: Request, principal: Annotated[Principal, Depends(require("read"))]) -> Any:
    from ... import __version__

    state = state_of(request)
    engine = state.engram.engine
    return Info(
        version=__version__,
        organization=principal.organization,
        scopes=sorted(principal.scopes),
        principal=principal.actor,
        embedder=EmbedderInfo(model=engine.embedder.model, dimensions=engine.embedder.dimensions),
        metric=engine.settings.metric,
        resources=list(request.app.state.engramdb_resources),
        limits={f.name: getattr(engine.settings.limits, f.name)
                for f in dataclasses.fields(engine.settings.limits)}
        | {"max_body_bytes": state.settings.max_body_bytes},
    )  # fmt: skip


@router.post(
    "/v1/flush", status_code=204, response_class=Response, response_model=None, tags=["system"], responses=ERRORS,
    summary="Write this process's pending background work (access counts, usage) now",
)  # fmt: skip
def flush(request: Request, principal: Annotated[Principal, Depends(require("write"))]) -> Response:
    state = state_of(request)
    state.engram.flush()
    state.usage.flush()
    return Response(status_code=204)
