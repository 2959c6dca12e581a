"""How Python values are stored in SQLite: UUIDs, times, JSON, vectors, and memory rows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from ...models import Memory
from ...models.common import dumps_json

__all__ = [
    "MEMORY_FIELDS",
    "blob_to_vector",
    "from_micros",
    "from_uuid",
    "memory_columns",
    "row_to_memory",
    "to_json",
    "to_micros",
    "to_uuid",
    "vector_to_blob",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

#: The columns a Memory is read from, in this order (the same names as on PostgreSQL).
MEMORY_FIELDS = [
    "id", "organization_id", "kind", "content", "agent_id", "user_id", "room_id", "data",
    "importance", "tags", "metadata", "scope", "level", "content_hash", "is_unique",
    "related_ids", "access_count", "last_accessed_at", "valid_from", "valid_to", "expires_at",
    "version", "embedding_model", "created_at", "updated_at", "created_by_id",
    "last_updated_by_id", "deleted_at",
]  # fmt: skip
_JSON = ("data", "tags", "metadata", "related_ids")
_TIMES = ("last_accessed_at", "valid_from", "valid_to", "expires_at", "created_at", "updated_at",
          "deleted_at")  # fmt: skip


def memory_columns(alias: str = "m", with_embedding: bool = False) -> str:
    names = [*MEMORY_FIELDS, "embedding"] if with_embedding else MEMORY_FIELDS
    prefix = f"{alias}." if alias else ""  # RETURNING takes bare column names
    return ", ".join(prefix + n for n in names)


def to_micros(moment: datetime | None) -> int | None:
    """Times are integer microseconds since the epoch (UTC): exact, and they sort as numbers."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MICRO


def from_micros(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(microseconds=value)


def to_uuid(value: uuid.UUID) -> bytes:
    """UUIDs are 16-byte big-endian BLOBs, so time-ordered ids sort by creation (memcmp)."""
    return value.bytes


def from_uuid(value: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=bytes(value))


def to_json(value: Any) -> str:
    """JSON columns are written as PostgreSQL's store writes them (dumps_json)."""
    return dumps_json(value).decode()


def vector_to_blob(vector: Sequence[float] | npt.NDArray[Any]) -> bytes:
    """Vectors are little-endian float32 BLOBs (4 bytes a dimension), as pgvector keeps them."""
    return np.asarray(vector, dtype="<f4").tobytes()


def blob_to_vector(blob: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def row_to_memory(row: Sequence[Any]) -> Memory:
    """A Memory from a row selected with :func:`memory_columns`."""
    values = dict(zip(MEMORY_FIELDS, row, strict=False))
    values["id"] = from_uuid(values["id"])
    for name in _JSON:
        values[name] = json.loads(values[name])
    for name in _TIMES:
        values[name] = from_micros(values[name])
    values["is_unique"] = bool(values["is_unique"])
    if len(row) > len(MEMORY_FIELDS):
        blob = row[len(MEMORY_FIELDS)]
        values["embedding"] = None if blob is None else blob_to_vector(blob).tolist()
    return Memory.model_validate(values)
