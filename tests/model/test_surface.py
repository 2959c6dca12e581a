"""The routes table agrees with the library: every row names a real method, its positional
parameters in order, and path parameters the method takes; every resource is mounted."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest

from engramdb import Engram, Settings, connect
from engramdb.embeddings.hashing import HashEmbedder
from engramdb.surface import ROUTES, Route


@pytest.fixture(scope="module")
def library() -> Iterator[Engram]:
    db = connect("sqlite://:memory:", embedder=HashEmbedder(16), settings=Settings())
    yield db
    db.close()


CASES = [(resource, route) for resource, routes in ROUTES.items() for route in routes]


@pytest.mark.parametrize(("resource", "route"), CASES, ids=[f"{r}.{x.method}" for r, x in CASES])
def test_route_matches_the_library_method(library: Engram, resource: str, route: Route) -> None:
    fn = getattr(getattr(library, resource), route.method)
    params = inspect.signature(fn).parameters
    positional = [
        name for name, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    assert list(route.args) == positional[: len(route.args)], (resource, route.method)
    assert len(route.args) == len(positional), (resource, route.method, positional)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for name in route.path_params:
        assert name in params or takes_any, (resource, route.method, name)
    assert route.summary and route.path.startswith("/v1/")


def test_every_resource_has_routes(library: Engram) -> None:
    named = {"users", "agents", "rooms"}  # generic routes (server/routes/resources.py)
    assert set(library.RESOURCES) <= set(ROUTES) | named
    # Within one verb, a static path never follows a parameterised one it would be taken for.
    for routes in ROUTES.values():
        seen: list[Route] = []
        for r in routes:
            for earlier in seen:
                if earlier.verb == r.verb and earlier.path.count("/") == r.path.count("/"):
                    a, b = earlier.path.split("/"), r.path.split("/")
                    shadowed = all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))
                    assert not shadowed, (earlier.path, r.path)
            seen.append(r)
