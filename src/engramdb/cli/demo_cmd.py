"""``engramdb demo``: stores a few memories and recalls them, to show the library end to end."""

from __future__ import annotations

import argparse

from ..api import connect
from ..settings import Settings
from .main import emit

FACTS = [
    ("Alice prefers window seats on long flights", "semantic", ["travel"]),
    ("Alice is vegetarian and allergic to peanuts", "semantic", ["food"]),
    ("Booked Alice's flight to Lisbon for 12 March", "episodic", ["travel", "booking"]),
    ("Alice's manager is Bob; expense reports go to him", "semantic", ["work"]),
]


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", nargs="?", default="where does Alice like to sit?")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings=settings) as db:
        for content, kind, tags in FACTS:
            db.memories.add(content, agent_id="travel-bot", user_id="alice", kind=kind, tags=tags)
        hits = db.memories.search(args.query, agent_id="travel-bot", top_k=3, explain=True)
        lines = [f"query: {args.query}"]
        lines += [f"  {h.score:.3f}  {h.memory.content}" for h in hits]
        emit(args, "\n".join(lines), [h.model_dump(mode="json") for h in hits])
    return 0


COMMAND = (_add, _run)
