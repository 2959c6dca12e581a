"""Opaque keyset cursors: the last id of a page, tied to the listing that produced it."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any

from ..errors import InvalidCursor

__all__ = ["decode_cursor", "encode_cursor", "listing_key"]


def listing_key(params: Any) -> str:
    """A short digest of a listing's parameters, so a cursor cannot be replayed on another one."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=6).hexdigest()


def encode_cursor(last_id: uuid.UUID | str, key: str) -> str:
    raw = json.dumps({"a": str(last_id), "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, key: str) -> str:
    """Return the id the next page starts after; raise InvalidCursor for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = str(data["a"])
        if data["k"] != key:
            raise InvalidCursor(
                "this cursor belongs to a listing with other filters; start again without it"
            )
        return after
    except InvalidCursor:
        raise
    except Exception:
        raise InvalidCursor(
            "the cursor is not one this listing produced", details={"cursor": cursor[:64]}
        ) from None
