"""``engramdb orgs``: list organizations, delete one, or purge one (forget the whole tenant),
working on the database directly."""

from __future__ import annotations

import argparse
import sys

from ..errors import InvalidInput
from ..models.security import Organization
from ..service.audit import AuditLog
from ..service.organizations import DEFAULT_ORGANIZATION, Organizations, check_organization_id
from ..settings import Settings
from ..store import open_store
from .main import emit

HELP = "organizations: list, delete (soft), delete --purge (every row of it, for good)"

_ACTOR = "engramdb orgs"


def _add(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = sub.add_parser("list", help="live organizations, by id")
    delete = sub.add_parser(
        "delete",
        help="soft delete (its keys and tokens are refused, its data stays); with --purge, "
        "the organization and all its data go for good",
    )
    delete.add_argument("org", metavar="ORG")
    delete.add_argument(
        "--purge",
        action="store_true",
        help="forget the tenant: memories, history, vectors, the data model, keys, usage and "
        "audit, in one transaction (also for an organization already soft-deleted)",
    )
    delete.add_argument("--yes", action="store_true", help="purge without asking to confirm")
    for p_ in (lst, delete):
        p_.add_argument("--json", action="store_true", default=argparse.SUPPRESS)


def _confirmed(org: str) -> bool:
    """Asks on a terminal; a script must say --yes (nothing to answer the question there)."""
    if not sys.stdin.isatty():
        return False
    answer = input(f"Purge organization {org!r} and all its data for good? Type its id: ")
    return answer.strip() == org


def _line(org: Organization) -> str:
    return f"{org.id:<24} {org.name:<32} created {org.created_at.isoformat(timespec='seconds')}"


def _run(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    try:
        orgs = Organizations(store)
        if args.action == "list":
            found: list[Organization] = []
            cursor: str | None = None
            while True:
                page = orgs.list(limit=500, cursor=cursor)
                found.extend(page.items)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            rows = [o.model_dump(mode="json") for o in found]
            emit(args, "\n".join(_line(o) for o in found) or "no organizations", rows)
            return 0
        org = check_organization_id(args.org)
        if args.purge and not (args.yes or _confirmed(org)):
            raise InvalidInput(
                f"purging deletes every row of {org!r} for good: add --yes to confirm",
                details={"id": org},
            )
        # Like the server: a purge is recorded in the home organization (the purged one's own
        # log goes with it), a soft delete in the organization itself.
        home = settings.organization if settings.organization != org else DEFAULT_ORGANIZATION
        if args.purge:
            store.ensure_organization(home)  # as connect() does; the entry must have a home
        orgs.delete(org, purge=args.purge)
        AuditLog(store).record(
            home if args.purge else org, actor_type="cli", actor_id=_ACTOR,
            action="purge" if args.purge else "delete", resource_type="organization",
            resource_id=org, before={"id": org},
        )  # fmt: skip
        if args.purge:
            human = f"purged organization {org}: it and all its data are gone"
        else:
            human = f"deleted organization {org}: its keys are refused, its data stays"
        emit(args, human, {"id": org, "deleted": True, "purged": bool(args.purge)})
        return 0
    finally:
        store.close()


COMMAND = (_add, _run)
