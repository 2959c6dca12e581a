"""Per-kind structure of a memory's ``data``: episodic events and semantic facts (pure code).

Known keys are checked for type and range; other keys are kept as they are, so callers can add
their own. Nothing is required, so a plain ``kind="episodic"`` memory stays valid.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EpisodicData", "SemanticData", "validate_kind_data"]


class EpisodicData(BaseModel):
    """An event: what happened (``event_type``: ``task_complete``, ``decision``, ``error``,
    ``learning``, ``milestone``, …), a summary, details, context and the decision taken."""

    model_config = ConfigDict(extra="allow")

    event_type: str | None = Field(None, pattern=r"^[a-z][a-z0-9_.\-]{0,99}$")
    summary: str | None = Field(None, max_length=4000)
    details: dict[str, Any] | list[Any] | str | None = None
    context: dict[str, Any] | None = None
    decision: str | None = Field(None, max_length=4000)
    related_memories: list[uuid.UUID] | None = None


class SemanticData(BaseModel):
    """A fact: the concept it is about, its category, where it came from, how sure it is."""

    model_config = ConfigDict(extra="allow")

    concept: str | None = Field(None, min_length=1, max_length=200)
    category: str | None = Field(None, max_length=100)
    source: str | None = Field(None, max_length=200)
    confidence: float | None = Field(None, ge=0, le=1)


_KINDS: dict[str, type[BaseModel]] = {"episodic": EpisodicData, "semantic": SemanticData}


def validate_kind_data(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Check ``data`` for ``kind``; raises pydantic's ValidationError naming the bad field.

    Returns the data unchanged in shape (JSON-compatible values), so stored documents keep the
    caller's keys.
    """
    model = _KINDS.get(kind)
    if model is None or not data:
        return data
    checked = model.model_validate(data)
    dumped = checked.model_dump(mode="json", exclude_unset=True)
    return {**data, **dumped}
