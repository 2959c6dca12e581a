"""Routes of the data model beyond memories' CRUD: one endpoint per row of :data:`ROUTES`.

Each endpoint calls the library method its row names, with the path parameters, and the query
string (``GET``, ``DELETE``) or the JSON body (otherwise) as keyword arguments: the HTTP API and
the library take the same arguments and raise the same errors. Query values are typed from the
method's annotations (``limit=3`` → 3, ``newest_first=false`` → False, a repeated name → a list).
"""

import functools
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Request, Response
from pydantic import BaseModel, create_model

from ...errors import InvalidInput
from ...surface import ROUTES, Route
from ..auth import require
from ..context import Principal
from ..schemas import PageOf
from .common import ERRORS, JsonRoute, audit, view

__all__ = ["mount_data_model"]

Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]
JsonBody = Annotated[dict[str, Any] | None, Body()]


class Text(BaseModel):
    """Text, as an LLM prompt would include it."""

    text: str


def _envelope(resource: str, route: Route) -> Any:
    """The response model of a route, for validation and the OpenAPI document."""
    model: Any = route.model
    if route.result == "one":
        return model
    if route.result == "page":
        return PageOf[model]
    if route.result == "text":
        return Text
    name = "".join(p.title() for p in (resource, *route.method.split("_")))
    field = "results" if route.result == "hits" else "items"
    doc = "Search results, best first." if route.result == "hits" else "The whole list."
    fields: dict[str, Any] = {field: (list[model], ...)}
    made: Any = create_model(name, __doc__=doc, **fields)
    return made


# -- query strings typed from the method's annotations ---------------------------------------------


def _flat(hint: Any) -> list[Any]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [a for arg in args for a in _flat(arg)]
    return [hint]


def _shape(hint: Any) -> str:
    """How a query value is read: bool, int, float, list (of strings) or str."""
    kinds = _flat(hint)
    if bool in kinds:
        return "bool"
    if str not in kinds and int in kinds:
        return "int"
    if str not in kinds and float in kinds:
        return "float"
    origins = {typing.get_origin(k) for k in kinds}
    if origins & {list, tuple, set, frozenset, Sequence}:
        return "list"
    return "str"


@functools.cache
def _shapes(cls: type[object], method: str) -> dict[str, str]:
    hints = typing.get_type_hints(getattr(cls, method))
    return {name: _shape(hint) for name, hint in hints.items() if name != "return"}


def _read(name: str, shape: str, values: list[str]) -> Any:
    if shape == "list":
        return values if len(values) > 1 else values[0]
    if len(values) > 1:
        raise InvalidInput(f"{name} is given more than once", details={"parameter": name})
    value = values[0]
    try:
        if shape == "bool":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if shape == "int":
            return int(value)
        if shape == "float":
            return float(value)
    except ValueError:
        raise InvalidInput(
            f"{name} must be {'a boolean' if shape == 'bool' else 'a number'}, not {value!r}",
            details={"parameter": name},
        ) from None
    return value


def _query_args(request: Request, fn: Any) -> dict[str, Any]:
    shapes = _shapes(fn.__self__.__class__, fn.__name__)
    out: dict[str, Any] = {}
    for name in dict.fromkeys(request.query_params.keys()):
        out[name] = _read(name, shapes.get(name, "str"), request.query_params.getlist(name))
    return out


# -- endpoints --------------------------------------------------------------------------------------


def _call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Call a library method; arguments it does not take are a 422 (not a 500)."""
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as exc:
        raise InvalidInput(f"invalid parameters: {exc}") from None
    return fn(**kwargs)


def _answer(route: Route, result: Any) -> Any:
    if route.result == "none":
        return Response(status_code=route.status)
    if route.result == "page":
        return {"items": result.items, "next_cursor": result.next_cursor}
    if route.result == "items":
        return {"items": result}
    if route.result == "hits":
        return {"results": result}
    if route.result == "text":
        return {"text": result}
    return result


#: The audit log names resources in the singular, as the other routes do.
_SINGULAR = {"memories": "memory", "agents": "agent", "rooms": "room", "messages": "message",
             "blocks": "block", "tools": "tool", "goals": "goal", "relationships": "relationship",
             "decisions": "decision", "sessions": "session", "workflows": "workflow",
             "logs": "log"}  # fmt: skip


def _run(
    request: Request,
    principal: Principal,
    resource: str,
    route: Route,
    body: dict[str, Any] | None,
) -> Any:
    fn = getattr(getattr(view(request, principal), resource), route.method)
    path = {name: request.path_params[name] for name in route.path_params}
    given = _query_args(request, fn) if body is None else dict(body)
    clash = sorted(set(given) & set(path))
    if clash:
        raise InvalidInput(f"{clash} are given in the path already", details={"fields": clash})
    result = _call(fn, {**path, **given})
    if route.writes:
        ident = next(iter(path.values()), None) or getattr(result, "id", None)
        noun = _SINGULAR.get(resource, resource)
        audit(request, principal, route.method, noun, None if ident is None else str(ident),
              after={"path": path})  # fmt: skip
    return _answer(route, result)


def _endpoint(resource: str, route: Route) -> Callable[..., Any]:
    if route.takes_body:

        def with_body(request: Request, principal: Writer, body: JsonBody = None) -> Any:
            return _run(request, principal, resource, route, body or {})

        return with_body
    if route.writes:

        def write(request: Request, principal: Writer) -> Any:
            return _run(request, principal, resource, route, None)

        return write

    def read(request: Request, principal: Reader) -> Any:
        return _run(request, principal, resource, route, None)

    return read


_SCHEMAS = {
    "bool": {"type": "boolean"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "list": {"type": "array", "items": {"type": "string"}},
    "str": {"type": "string"},
}


def _arguments(fn: Callable[..., Any], route: Route) -> list[inspect.Parameter]:
    return [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.name not in route.path_params and p.kind is not inspect.Parameter.VAR_POSITIONAL
    ]


def _describe(resource: str, route: Route, fn: Callable[..., Any]) -> str:
    """The library method's documentation and its arguments, as the route's description."""
    where = "in the JSON body" if route.takes_body else "as query parameters"
    lines = [f"`db.{resource}.{route.method}(...)` in the library; arguments {where}:", ""]
    for p in _arguments(fn, route):
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            lines.append("- other fields, as the documentation above names them")
            continue
        default = "required" if p.default is inspect.Parameter.empty else f"default `{p.default!r}`"
        lines.append(f"- `{p.name}`: `{p.annotation}` ({default})")
    doc = inspect.getdoc(fn) or ""
    return f"{doc}\n\n" + "\n".join(lines) if doc else "\n".join(lines)


def _openapi(route: Route, fn: Callable[..., Any]) -> dict[str, Any]:
    """Path and query parameters for the OpenAPI document (the endpoint reads them from the
    request itself, so FastAPI cannot see them)."""
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.path_params
    ]
    if not route.takes_body:
        shapes = _shapes(fn.__self__.__class__, fn.__name__)  # type: ignore[attr-defined]
        for p in _arguments(fn, route):
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                continue
            params.append(
                {"name": p.name, "in": "query", "required": p.default is inspect.Parameter.empty,
                 "schema": _SCHEMAS[shapes.get(p.name, "str")]}
            )  # fmt: skip
    return {"parameters": params} if params else {}


def _router(resource: str, service: Any, routes: Sequence[Route]) -> APIRouter:
    router = APIRouter(route_class=JsonRoute, tags=[resource], responses=ERRORS)
    for route in routes:
        fn = getattr(service, route.method)
        answer: dict[str, Any] = (
            {"response_model": None, "response_class": Response}
            if route.result == "none"
            else {"response_model": _envelope(resource, route)}
        )
        router.add_api_route(
            route.path,
            _endpoint(resource, route),
            methods=[route.verb],
            status_code=route.status,
            summary=route.summary,
            description=_describe(resource, route, fn),
            name=f"{resource}_{route.method}",
            openapi_extra=_openapi(route, fn),
            **answer,
        )
    return router


def mount_data_model(app: FastAPI, engram: Any) -> list[str]:
    """Mount the routes of every resource ``engram`` (the library object) has; returns their
    names."""
    mounted = []
    for resource, routes in ROUTES.items():
        if resource in engram.RESOURCES:
            app.include_router(_router(resource, getattr(engram, resource), routes))
            mounted.append(resource)
    return mounted
