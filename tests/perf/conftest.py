"""Fixtures for the performance-correctness tests: a PostgreSQL store loaded with the small
clustered workload (tests/perf/workload.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engramdb import Engram, Settings, connect
from engramdb.embeddings.none import NoEmbedder
from engramdb.service.importer import import_records
from tests.conftest import TEST_DIMENSIONS
from tests.perf.workload import Workload, generate

#: Filters matching at most this many rows are searched exactly; the workload's big users,
#: its agents and the unfiltered searches are above it, so both paths run at test size.
EXACT_MAX_ROWS = 100


@pytest.fixture(scope="module")
def workload() -> Workload:
    return generate(n=4000, dim=TEST_DIMENSIONS)


def open_loaded(url: str, w: Workload, **settings: Any) -> Engram:
    db = connect(
        url,
        embedder=NoEmbedder(TEST_DIMENSIONS),
        settings=Settings(**{"exact_search_max_rows": EXACT_MAX_ROWS, **settings}),
    )
    records = (
        (
            i + 1,
            {
                "content": f"memory {i}",
                "user_id": w.users[i],
                "agent_id": w.agents[i],
                "metadata": {"n": i},
                "embedding": w.vectors[i].tolist(),
            },
        )
        for i in range(len(w.users))
    )
    import_records(db.memories, records)
    return db


@pytest.fixture
def loaded(pg_url: str, workload: Workload) -> Iterator[Engram]:
    db = open_loaded(pg_url, workload)
    yield db
    db.close()
