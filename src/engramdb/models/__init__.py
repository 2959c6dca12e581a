"""Domain models: typed objects in and out of every store, no I/O."""

from .common import IMPORTANCE_LEVELS, Page, importance_value, new_id, utcnow
from .memory import KNOWN_KINDS, Memory, MemoryInput, MemoryVersion, Metric, SearchHit, SearchMode

__all__ = [
    "IMPORTANCE_LEVELS",
    "KNOWN_KINDS",
    "Memory",
    "MemoryInput",
    "MemoryVersion",
    "Metric",
    "Page",
    "SearchHit",
    "SearchMode",
    "importance_value",
    "new_id",
    "utcnow",
]
