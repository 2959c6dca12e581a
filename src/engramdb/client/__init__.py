"""The HTTP client: ``engramdb.connect("http://host:port", api_key=…)`` returns a
:class:`RemoteEngram` with the library's methods and exceptions."""

from .remote import (
    AsyncRemoteEngram,
    RemoteEmbedder,
    RemoteEngram,
    connect_remote,
    connect_remote_async,
)

__all__ = [
    "AsyncRemoteEngram",
    "RemoteEmbedder",
    "RemoteEngram",
    "connect_remote",
    "connect_remote_async",
]
