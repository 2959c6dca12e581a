"""The data model's methods over HTTP, built from :data:`engramdb.surface.ROUTES`: the same table
the server mounts its routes from, so a method and its route cannot disagree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..models import Page
from ..surface import Route, routes_of
from .calls import Call, _query, _seg, jsonable

__all__ = ["RouteCalls"]


def _parser(route: Route) -> Callable[[Any], Any]:
    model: Any = route.model
    one: Callable[[Any], Any] = (
        (lambda v: v) if model is None or model is str else model.model_validate
    )
    if route.result == "none":
        return lambda _body: None
    if route.result == "page":
        return lambda b: Page(items=[one(i) for i in b["items"]], next_cursor=b["next_cursor"])
    if route.result == "items":
        return lambda b: [one(i) for i in b["items"]]
    if route.result == "hits":
        return lambda b: [one(i) for i in b["results"]]
    if route.result == "text":
        return lambda b: b["text"]
    return one


def _builder(resource: str, route: Route) -> Callable[..., Call]:
    parse = _parser(route)

    def build(*args: Any, **kwargs: Any) -> Call:
        if len(args) > len(route.args):
            raise TypeError(
                f"{resource}.{route.method}() takes {len(route.args)} positional arguments "
                f"but {len(args)} were given"
            )
        values = dict(zip(route.args, args, strict=False))
        twice = sorted(set(values) & set(kwargs))
        if twice:
            raise TypeError(f"{resource}.{route.method}() got multiple values for {twice}")
        values.update(kwargs)
        segments = {}
        for name in route.path_params:
            if name not in values:
                raise TypeError(f"{resource}.{route.method}() missing argument {name!r}")
            segments[name] = _seg(values.pop(name))
        path = route.path.format(**segments)
        if route.takes_body:
            # ``None`` is sent as null: for some methods it means "clear" (set_config, set_state).
            return Call(route.verb, path, parse, json=jsonable(values))
        return Call(route.verb, path, parse, _query(values))

    build.__name__ = route.method
    build.__doc__ = f"{route.summary} (``{route.verb} {route.path}``)."
    return build


class RouteCalls:
    """A resource's methods from the routes table, over an optional hand-written base (the
    memories' or named resources' calls), which wins for the methods it has."""

    def __init__(self, resource: str, base: Any = None) -> None:
        self._resource = resource
        self._base = base
        self._routes = routes_of(resource)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._base is not None and hasattr(self._base, name):
            return getattr(self._base, name)
        route = self._routes.get(name)
        if route is None:
            raise AttributeError(f"{self._resource} has no method {name!r}")
        return _builder(self._resource, route)

    def __dir__(self) -> list[str]:
        names = set(self._routes)
        if self._base is not None:
            names |= {n for n in dir(self._base) if not n.startswith("_")}
        return sorted(names)
