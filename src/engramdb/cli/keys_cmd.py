"""``engramdb keys``: create, list and revoke API keys, working on the database directly."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import NotFound
from ..models.security import SCOPES, TIERS, ApiKey
from ..service.keys import ApiKeys
from ..service.organizations import Organizations, check_organization_id
from ..settings import Settings
from ..store import open_store
from ..store.base import Store
from .main import emit

HELP = "API keys: create (secret shown once), list, revoke"


def _add(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="a new key; its secret is printed once")
    create.add_argument("--org", default=None, help="organization (created if new; default: home)")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="read", help=f"comma-separated: {','.join(SCOPES)}")
    create.add_argument("--tier", default="free", choices=list(TIERS))
    create.add_argument("--rate-limit", type=int, help="requests per minute (default: the tier's)")
    create.add_argument("--quota", type=int, help="requests per month (default: the tier's)")
    create.add_argument("--expires-in", type=float, metavar="DAYS")
    lst = sub.add_parser("list", help="keys of an organization (or --all)")
    lst.add_argument("--org", default=None)
    lst.add_argument("--all", action="store_true", help="every organization")
    lst.add_argument("--revoked", action="store_true", help="include revoked keys")
    revoke = sub.add_parser("revoke", help="revoke a key by id or prefix; refused from then on")
    revoke.add_argument("key", metavar="ID_OR_PREFIX")
    revoke.add_argument("--org", default=None, help="organization (default: search all)")
    for p_ in (create, lst, revoke):
        p_.add_argument("--json", action="store_true", default=argparse.SUPPRESS)


@contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings)
    try:
        yield store
    finally:
        store.close()


def _row(key: ApiKey) -> dict[str, Any]:
    return key.model_dump(mode="json")


def _line(key: ApiKey) -> str:
    state = "revoked" if key.revoked_at else ("disabled" if not key.enabled else "active")
    limits = f"{key.rate_limit or '∞'}/min {key.monthly_quota or '∞'}/month"
    used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never"
    return (f"{key.prefix}  {key.organization_id:<16} {key.name:<24} {','.join(key.scopes):<16} "
            f"{key.tier:<10} {limits:<22} {state:<8} used {used}  id {key.id}")  # fmt: skip


def _orgs(store: Store, settings: Settings, org: str | None, every: bool) -> list[str]:
    if org is not None:
        return [check_organization_id(org)]
    if not every:
        return [settings.organization]
    out: list[str] = []
    cursor: str | None = None
    service = Organizations(store)
    while True:
        page = service.list(limit=500, cursor=cursor)
        out.extend(o.id for o in page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def _run(args: argparse.Namespace, settings: Settings) -> int:
    with _store(settings) as store:
        keys = ApiKeys(store)
        if args.action == "create":
            org = check_organization_id(args.org or settings.organization)
            key, secret = keys.create(
                org, name=args.name, scopes=args.scopes, tier=args.tier,
                rate_limit=args.rate_limit, monthly_quota=args.quota,
                expires_in_days=args.expires_in, actor="engramdb keys",
            )  # fmt: skip
            human = (f"{secret}\n\nAPI key {key.prefix} ({key.name}) for organization {org}, "
                     f"scopes {','.join(key.scopes)}. The secret above is shown only once: "
                     "store it now.")  # fmt: skip
            emit(args, human, {"key": secret, "id": str(key.id), **_row(key)})
            return 0
        if args.action == "list":
            found: list[ApiKey] = []
            for org in _orgs(store, settings, args.org, args.all):
                cursor = None
                while True:
                    page = keys.list(org, limit=500, cursor=cursor, include_revoked=args.revoked)
                    found.extend(page.items)
                    if page.next_cursor is None:
                        break
                    cursor = page.next_cursor
            emit(args, "\n".join(_line(k) for k in found) or "no keys", [_row(k) for k in found])
            return 0
        for org in _orgs(store, settings, args.org, args.org is None):
            try:
                revoked = keys.revoke(org, args.key, actor="engramdb keys")
            except NotFound:
                continue
            emit(args, f"revoked {revoked.prefix} ({revoked.name}) of {org}", _row(revoked))
            return 0
        raise NotFound(f"no API key {args.key!r}", details={"key": args.key})


COMMAND = (_add, _run)
