"""The dohost Python SDK: Durable Objects and entry workers in Python, with
the names of Cloudflare's Python Workers. Guest code imports from
``workers`` (as on Cloudflare) or ``dohost``, which are the same::

    from workers import DurableObject, Response, WorkerEntrypoint

    class Counter(DurableObject):
        async def fetch(self, request):
            count = (await self.ctx.storage.get("count") or 0) + 1
            await self.ctx.storage.put("count", count)
            return Response(str(count))

    class Default(WorkerEntrypoint):
        async def fetch(self, request):
            stub = self.env.COUNTER.getByName("my-counter")
            return await stub.fetch(request)

``dohost build`` (or ``dohost serve``) turns the module into a component:
its ``DurableObject`` subclasses run as objects (the ``durable-object``
world, _object.py), its ``Default`` class or ``on_fetch`` function as the
entry worker (the ``worker`` world, _worker.py). Every camelCase name also
has its snake_case spelling (``id_from_name``).
"""

from .env import DurableObjectId, DurableObjectNamespace, DurableObjectStub, env
from .errors import CallError, FetchError, SqlError, StorageError
from .http import Headers, Request, Response
from .ops import fetch
from .targets import RpcStub, RpcTarget
from .websocket import WebSocket, WebSocketPair, WebSocketRequestResponsePair


class DurableObject:
    """The base class of a Durable Object: ``self.ctx`` is its state
    (``id``, ``storage``, ``blockConcurrencyWhile``, ...), ``self.env`` its
    vars and bindings. Subclasses define ``fetch(request)``,
    ``alarm(alarm_info)`` and RPC methods, each ``def`` or ``async def``."""

    def __init__(self, ctx, env):
        self.ctx = ctx
        self.env = env


class WorkerEntrypoint:
    """The base class of the entry worker (``class Default``): its
    ``fetch(request)`` receives every HTTP request."""

    def __init__(self, ctx, env):
        self.ctx = ctx
        self.env = env


__all__ = [
    "CallError",
    "DurableObject",
    "DurableObjectId",
    "DurableObjectNamespace",
    "DurableObjectStub",
    "FetchError",
    "Headers",
    "Request",
    "Response",
    "RpcStub",
    "RpcTarget",
    "SqlError",
    "StorageError",
    "WebSocket",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "WorkerEntrypoint",
    "env",
    "fetch",
]
