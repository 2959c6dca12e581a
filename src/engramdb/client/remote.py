"""``RemoteEngram`` (sync) and ``AsyncRemoteEngram``: the library's API over HTTP.

Both run the same :mod:`calls` descriptions; they differ only in how a request is sent.
Errors come back as the library's exception classes (mapped from the error ``code``).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import pydantic_core

from ..errors import AuthenticationError, ConfigurationError, InvalidInput, Unavailable
from ..models.common import loads_json
from ..surface import ROUTES
from .calls import Call, EngramCalls, MemoryCalls, NamedCalls, named_models, raise_for_error
from .routes import RouteCalls
from .transport import ConnectionPool, HttpReply, uses_proxy

__all__ = ["AsyncRemoteEngram", "RemoteEmbedder", "RemoteEngram", "connect_remote",
           "connect_remote_async"]  # fmt: skip

DEFAULT_TIMEOUT = 60.0

#: TCP_NODELAY on the client's sockets. httpx writes a request's headers and its body in two
#: sends; with Nagle's algorithm the body then waits for the server to acknowledge the headers,
#: which a server still waiting for the body may hold back (delayed ACK, 40 ms on Linux once a
#: connection has settled into request and response). Every POST here has a body.
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


@dataclass(frozen=True)
class RemoteEmbedder:
    """What the server embeds with (``db.embedder.model`` / ``.dimensions``, as in-process)."""

    model: str
    dimensions: int


class _Resource:
    """Every public method of a calls object, run through ``run``."""

    def __init__(self, calls: Any, run: Callable[[Call], Any]) -> None:
        self._calls = calls
        self._run = run

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        build = getattr(self._calls, name)

        @functools.wraps(build)
        def method(*args: Any, **kwargs: Any) -> Any:
            return self._run(build(*args, **kwargs))

        return method

    def __dir__(self) -> list[str]:
        return [n for n in dir(self._calls) if not n.startswith("_")]


def _resources(info: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"memories": RouteCalls("memories", MemoryCalls())}
    models = named_models()
    for name in info.get("resources", []):
        if name == "memories":
            continue
        if name in models:
            out[name] = RouteCalls(name, NamedCalls(name, models[name]))
        elif name in ROUTES:
            out[name] = RouteCalls(name)
        else:
            out[name] = NamedCalls(name, lambda b: b)
    return out


def _headers(api_key: str | None) -> dict[str, str]:
    key = api_key or os.environ.get("ENGRAMDB_API_KEY")
    if not key:
        raise AuthenticationError(
            "an engramdb server needs an API key: connect(url, api_key=…) or ENGRAMDB_API_KEY"
        )
    from .. import __version__

    return {"Authorization": f"Bearer {key}", "User-Agent": f"engramdb-python/{__version__}"}


def _encode(value: Any) -> bytes:
    """``value`` as JSON. pydantic-core writes float arrays ten times faster than
    :func:`json.dumps` (about 0.3 ms saved per 384-dimension vector on the benchmark machine);
    its output is only kept when it cannot hold a non-finite number, which it would write as
    ``NaN`` or ``Infinity``; otherwise ``json.dumps`` decides (those letters may be text)."""
    try:
        body = pydantic_core.to_json(value)
    except ValueError:
        body = b"NaN"  # a type only json.dumps can judge: let it raise as before
    if b"NaN" not in body and b"Infinity" not in body:
        return body
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:
        # JSON has no NaN or infinity; in-process, such a vector is InvalidInput too.
        raise InvalidInput("the request contains NaN or infinite numbers") from None


def _request_args(call: Call) -> dict[str, Any]:
    args: dict[str, Any] = {"params": call.params}
    if call.json is not None:
        args["content"] = _encode(call.json)
        args["headers"] = {"Content-Type": "application/json"}
    return args


#: What sending a request may raise when the server cannot be reached or breaks off.
_TRANSPORT_ERRORS = (httpx.TransportError, OSError, http.client.HTTPException)


def _decode(response: HttpReply) -> Any:
    return loads_json(response.content)  # what json.loads reads, faster (pydantic-core)


def _parse(call: Call, response: HttpReply) -> Any:
    raise_for_error(response)
    if response.status_code == 204 or not response.content:
        return call.parse(None)
    if call.parse_json is not None:
        return call.parse_json(response.content)
    return call.parse(_decode(response))


class _Base:
    organization: str
    embedder: RemoteEmbedder
    RESOURCES: tuple[str, ...]

    def _setup(self, info: dict[str, Any], run: Callable[[Call], Any]) -> None:
        self.organization = str(info["organization"])
        self.scopes = tuple(info.get("scopes", ()))
        self.embedder = RemoteEmbedder(
            str(info["embedder"]["model"]), int(info["embedder"]["dimensions"])
        )
        resources = _resources(info)
        self.RESOURCES = tuple(resources)
        for name, calls in resources.items():
            setattr(self, name, _Resource(calls, run))


class RemoteEngram(_Base):
    """A connection to an engramdb server, with the methods of :class:`engramdb.Engram`."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        _key_id: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._options: dict[str, Any] = {"timeout": timeout, "transport": transport}
        self._http: httpx.Client | ConnectionPool
        if transport is None and not uses_proxy(self.url):
            # The standard library's http.client: half the client time of httpx (transport.py).
            self._http = ConnectionPool(self.url, _headers(api_key), timeout)
        else:
            self._http = httpx.Client(
                base_url=self.url,
                headers=_headers(api_key),
                timeout=timeout,
                transport=transport or httpx.HTTPTransport(socket_options=NO_DELAY),
            )
        self._own_key_id = _key_id
        self._views: list[RemoteEngram] = []
        self._parent: RemoteEngram | None = None
        self._calls = EngramCalls()
        try:
            self._setup(self._run(self._calls.info()), self._run)
        except BaseException:
            self._http.close()
            raise

    def _run(self, call: Call) -> Any:
        try:
            response = self._http.request(call.method, call.path, **_request_args(call))
        except _TRANSPORT_ERRORS as exc:
            raise Unavailable(f"cannot reach the engramdb server at {self.url}: {exc}") from exc
        return _parse(call, response)

    def for_organization(self, organization: str, *, actor: str | None = None) -> RemoteEngram:
        """A connection to another organization: needs an operator key (an admin of the server's
        home organization), which mints a key for that organization; closing the view (or this
        connection) revokes it."""
        del actor  # the server names the actor after the key
        made = self._run(self._calls.view_key(organization, f"client view of {organization}"))
        view = RemoteEngram(self.url, made["key"], _key_id=str(made["id"]), **self._options)
        self._views.append(view)
        return view

    def flush(self) -> None:
        """Ask the server to write pending background work (access counts) now."""
        self._run(self._calls.flush())

    def close(self) -> None:
        for view in self._views:
            view.close()
        self._views.clear()
        if self._own_key_id is not None and not self._http.is_closed:
            # The key may be revoked already, or the server gone: nothing left to undo.
            with contextlib.suppress(Unavailable, AuthenticationError):
                self._run(self._calls.revoke_key(self._own_key_id))
            self._own_key_id = None
        self._http.close()
        if self._parent is not None:
            self._parent.close()
            self._parent = None

    def __enter__(self) -> RemoteEngram:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncRemoteEngram(_Base):
    """The async client: the same resources and methods, as coroutines, on one event loop."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        _key_id: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._options: dict[str, Any] = {"timeout": timeout, "transport": transport}
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport or httpx.AsyncHTTPTransport(socket_options=NO_DELAY),
        )
        self._own_key_id = _key_id
        self._views: list[AsyncRemoteEngram] = []
        self._calls = EngramCalls()

    async def _open(self) -> AsyncRemoteEngram:
        try:
            info = await self._run(self._calls.info())
        except BaseException:
            await self._http.aclose()
            raise
        self._setup(info, self._run)
        return self

    async def _run(self, call: Call) -> Any:
        try:
            response = await self._http.request(call.method, call.path, **_request_args(call))
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the engramdb server at {self.url}: {exc}") from exc
        return _parse(call, response)

    async def for_organization(
        self, organization: str, *, actor: str | None = None
    ) -> AsyncRemoteEngram:
        del actor
        made = await self._run(self._calls.view_key(organization, f"client view of {organization}"))
        view = AsyncRemoteEngram(self.url, made["key"], _key_id=str(made["id"]), **self._options)
        self._views.append(await view._open())
        return view

    async def flush(self) -> None:
        await self._run(self._calls.flush())

    async def close(self) -> None:
        for view in self._views:
            await view.close()
        self._views.clear()
        if self._own_key_id is not None and not self._http.is_closed:
            with contextlib.suppress(Unavailable, AuthenticationError):
                await self._run(self._calls.revoke_key(self._own_key_id))
            self._own_key_id = None
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRemoteEngram:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_CLIENT_OPTIONS = {"timeout", "transport"}


def _client_options(options: dict[str, Any]) -> dict[str, Any]:
    # connect() passes library options too; only the client's own ones mean anything here.
    unknown = set(options) - _CLIENT_OPTIONS - {"embedder", "settings"}
    if unknown:
        raise ConfigurationError(f"unknown options for a remote connection: {sorted(unknown)}")
    return {k: v for k, v in options.items() if k in _CLIENT_OPTIONS}


def connect_remote(
    url: str, api_key: str | None = None, organization: str | None = None, **options: Any
) -> RemoteEngram:
    """Connect to an engramdb server (what ``engramdb.connect("http://…")`` calls)."""
    db = RemoteEngram(url, api_key, **_client_options(options))
    if organization is None or organization == db.organization:
        return db
    try:
        view = db.for_organization(organization)
    except BaseException:
        db.close()
        raise
    db._views.remove(view)
    view._parent = db  # closing the view closes (and revokes through) the operator connection
    return view


def connect_remote_async(
    url: str, api_key: str | None = None, **options: Any
) -> Awaitable[AsyncRemoteEngram]:
    """``db = await connect_remote_async(url, api_key=…)``: the native async client."""
    return AsyncRemoteEngram(url, api_key, **_client_options(options))._open()
