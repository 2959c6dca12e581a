"""``/v1/organizations``: tenants. Callers see their own; operators (admins of the server's home
organization) list, create, delete and purge any (but their own)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from ...errors import Conflict, NotFound
from ...models.security import Organization
from ..auth import require, state_of
from ..context import Principal
from ..schemas import OrganizationCreate, OrganizationPage, OrganizationPatch
from .common import ERRORS, JsonRoute, audit

router = APIRouter(
    route_class=JsonRoute, prefix="/v1/organizations", tags=["organizations"], responses=ERRORS
)

Reader = Annotated[Principal, Depends(require("read"))]
Admin = Annotated[Principal, Depends(require("admin"))]
Operator = Annotated[Principal, Depends(require("operator"))]


def _visible(principal: Principal, org: str) -> None:
    # Another tenant's organization is reported missing, not forbidden: no existence oracle.
    if org != principal.organization and not principal.operator:
        raise NotFound(f"organization {org!r} not found", details={"id": org})


@router.get("", response_model=OrganizationPage, summary="Organizations the caller can see")
def list_organizations(
    request: Request, principal: Reader, limit: int = 50, cursor: str | None = None
) -> Any:
    state = state_of(request)
    if principal.operator:
        page = state.organizations.list(limit=limit, cursor=cursor)
        return OrganizationPage(items=page.items, next_cursor=page.next_cursor)
    return OrganizationPage(items=[state.organizations.get(principal.organization)])


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=Organization,
    summary="Create an organization (operators)",
)  # fmt: skip
def create_organization(request: Request, body: OrganizationCreate, principal: Operator) -> Any:
    org = state_of(request).organizations.create(body.id, name=body.name, metadata=body.metadata)
    audit(request, principal, "create", "organization", org.id, after={"id": org.id},
          organization=org.id)  # fmt: skip
    return org


@router.get("/{org_id}", response_model=Organization, summary="One organization")
def get_organization(request: Request, org_id: str, principal: Reader) -> Any:
    _visible(principal, org_id)
    return state_of(request).organizations.get(org_id)


@router.patch("/{org_id}", response_model=Organization, summary="Rename, or set metadata")
def update_organization(
    request: Request, org_id: str, body: OrganizationPatch, principal: Admin
) -> Any:
    _visible(principal, org_id)
    org = state_of(request).organizations.update(org_id, name=body.name, metadata=body.metadata)
    audit(request, principal, "update", "organization", org_id, before={"id": org_id},
          after={"id": org_id}, organization=org_id)  # fmt: skip
    return org


@router.delete(
    "/{org_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, response_model=None,
    summary="Soft delete an organization (operators): its keys stop working at once; "
    "?purge=true forgets it: every row of it, in every table, goes for good",
)  # fmt: skip
def delete_organization(
    request: Request,
    org_id: str,
    principal: Operator,
    purge: Annotated[
        bool,
        Query(description="Delete the organization and all its data (memories, history, "
              "data model, keys, usage, audit) for good, in one transaction; also when it "
              "is already soft-deleted. The default organization and the caller's own are "
              "refused (409)."),
    ] = False,
) -> Any:  # fmt: skip
    if purge and org_id == principal.organization:
        # The caller's keys, and the audit entry of this purge, live there.
        raise Conflict(
            "an operator cannot purge the organization it calls from",
            details={"id": org_id},
        )
    state_of(request).organizations.delete(org_id, purge=purge)
    # A purged organization's own audit log went with it: the entry is the operator's.
    audit(request, principal, "purge" if purge else "delete", "organization", org_id,
          before={"id": org_id}, organization=principal.organization if purge else org_id)  # fmt: skip
    return Response(status_code=status.HTTP_204_NO_CONTENT)
