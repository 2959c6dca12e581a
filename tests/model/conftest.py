"""The data-model suite runs on the library backends.

Declared here, in one place: the HTTP client reaches only users, agents and rooms (generic named
routes) so far; the routes for the rest of the data model (config, messages, blocks, tools,
goals, relationships, decisions, sessions, workflows, logs) are not written yet.
"""

from __future__ import annotations

import pytest

from tests.conftest import BACKENDS

LIBRARY_BACKENDS = [b for b in BACKENDS if b != "http"]


@pytest.fixture(params=LIBRARY_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
