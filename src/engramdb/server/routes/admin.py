"""``/v1/usage`` (metered requests per key and month) and ``/v1/audit`` (every mutation)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from ...service.usage import usage_totals
from ..auth import require, state_of
from ..context import Principal
from ..schemas import AuditPage, UsageReport
from .common import ERRORS, JsonRoute
from .keys import _target

router = APIRouter(route_class=JsonRoute, prefix="/v1", tags=["usage and audit"], responses=ERRORS)

Reader = Annotated[Principal, Depends(require("read"))]
Admin = Annotated[Principal, Depends(require("admin"))]


@router.get(
    "/usage", response_model=UsageReport,
    summary="Requests, errors, tokens and latency per key and month (admins: every key)",
)  # fmt: skip
def usage(
    request: Request,
    principal: Reader,
    months: int | None = None,
    since: datetime | None = None,
    api_key_id: uuid.UUID | None = None,
    organization_id: str | None = None,
) -> Any:
    state = state_of(request)
    subject = None
    if "admin" in principal.scopes:
        org = _target(principal, organization_id)
    else:
        # Without admin, a caller sees its own usage only: its key's, or its JWT subject's.
        org, api_key_id = principal.organization, principal.key_id
        subject = principal.subject if principal.key_id is None else None
    state.usage.flush()  # what this process has queued is part of the answer
    totals = usage_totals(
        state.engram.engine.store, org, since=since, months=months, api_key_id=api_key_id,
        subject=subject,
    )  # fmt: skip
    return UsageReport(organization_id=org, totals=totals)


@router.get("/audit", response_model=AuditPage, summary="The audit log, newest first")
def audit_log(
    request: Request,
    principal: Admin,
    resource_type: str | None = None,
    resource_id: str | None = None,
    organization_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Any:
    org = _target(principal, organization_id)
    page = state_of(request).audit.list(
        org, limit=limit, cursor=cursor, resource_type=resource_type, resource_id=resource_id
    )
    return AuditPage(items=page.items, next_cursor=page.next_cursor)
