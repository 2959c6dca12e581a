"""``/v1/keys``: API keys of the caller's organization (admins); operators reach any organization."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from ...errors import InvalidInput, PermissionDenied
from ...models.security import ApiKey
from ...service.organizations import check_organization_id
from ..auth import require, state_of
from ..context import Principal
from ..schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPatch, KeyPage
from .common import ERRORS, JsonRoute, audit

router = APIRouter(route_class=JsonRoute, prefix="/v1/keys", tags=["keys"], responses=ERRORS)

Admin = Annotated[Principal, Depends(require("admin"))]


def _target(principal: Principal, org: str | None) -> str:
    if org is None or org == principal.organization:
        return principal.organization
    if not principal.operator:
        raise PermissionDenied(
            "only an admin of the server's home organization can manage other organizations' keys"
        )
    return check_organization_id(org)


@router.post("", status_code=201, response_model=ApiKeyCreated, summary="Create a key (shown once)")
def create_key(request: Request, body: ApiKeyCreate, principal: Admin) -> Any:
    org = _target(principal, body.organization_id)
    key, secret = state_of(request).keys.create(
        org, name=body.name, scopes=body.scopes, tier=body.tier, rate_limit=body.rate_limit,
        monthly_quota=body.monthly_quota, expires_at=body.expires_at,
        expires_in_days=body.expires_in_days, actor=principal.actor,
    )  # fmt: skip
    audit(request, principal, "create", "api_key", str(key.id),
          after={"id": str(key.id), "prefix": key.prefix}, organization=org)  # fmt: skip
    return ApiKeyCreated(key=secret, id=key.id, api_key=key)


@router.get("", response_model=KeyPage, summary="List keys, newest first (keyset pages)")
def list_keys(
    request: Request,
    principal: Admin,
    organization_id: str | None = None,
    include_revoked: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> Any:
    org = _target(principal, organization_id)
    page = state_of(request).keys.list(
        org, limit=limit, cursor=cursor, include_revoked=include_revoked
    )
    return KeyPage(items=page.items, next_cursor=page.next_cursor)


@router.get("/{key}", response_model=ApiKey, summary="One key, by id or prefix")
def get_key(
    request: Request, key: str, principal: Admin, organization_id: str | None = None
) -> Any:
    return state_of(request).keys.find(_target(principal, organization_id), key)


@router.patch(
    "/{key}", response_model=ApiKey,
    summary="Rename, disable or re-enable a key, or change its limits or expiry",
)  # fmt: skip
def update_key(
    request: Request,
    key: str,
    body: ApiKeyPatch,
    principal: Admin,
    organization_id: str | None = None,
) -> Any:
    org = _target(principal, organization_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("name", "") is None or changes.get("enabled", False) is None:
        raise InvalidInput("name and enabled cannot be null")
    updated = state_of(request).keys.update(org, key, changes, actor=principal.actor)
    audit(request, principal, "update", "api_key", str(updated.id), before={"id": str(updated.id)},
          after={"id": str(updated.id), "changed": sorted(changes)}, organization=org)  # fmt: skip
    return updated


@router.delete(
    "/{key}", response_model=ApiKey, summary="Revoke a key: refused from the next request"
)
def revoke_key(
    request: Request, key: str, principal: Admin, organization_id: str | None = None
) -> Any:
    org = _target(principal, organization_id)
    revoked = state_of(request).keys.revoke(org, key, actor=principal.actor)
    audit(request, principal, "revoke", "api_key", str(revoked.id),
          before={"id": str(revoked.id)}, organization=org)  # fmt: skip
    return revoked
