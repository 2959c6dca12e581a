"""The examples run as a user would run them, so they never rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAMDB_")}
    env.update(ENGRAMDB_EMBEDDER="hash", ENGRAMDB_EMBEDDING_DIMENSIONS="64")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_agent_walkthrough(where: str, request: pytest.FixtureRequest) -> None:
    url = "sqlite://:memory:" if where == "sqlite" else request.getfixturevalue("pg_url")
    out = _run("agent_walkthrough.py", url)
    sections = {
        head: body.strip()
        for head, _, body in (part.partition("\n") for part in out.split("== ")[1:])
    }
    assert "Vegetarian. Prefers aisle seats." in sections["core memory (prompt text)"]
    assert sections["where does Alice like to sit? (now)"].startswith("Alice prefers aisle seats")
    assert sections["where did Alice like to sit? (as of before the change)"] == (
        "Alice prefers window seats"
    )
    episodic = sections["what happened on this trip (episodic)"]
    assert "[decision] Decided: TAP 7:05" in episodic and "[task_complete]" in episodic
    assert "vegetarian" in sections["what was said about food"]
    assert "goal: Get Alice to Lisbon (in_progress); done: book a flight" in sections
    assert "decisions: 1, success rate 100%" in sections
    assert "the block's history: ['append', 'str_replace', 'current']" in sections
    if where == "postgres":  # a second run starts from scratch on the same database
        assert _run("agent_walkthrough.py", url) == out
