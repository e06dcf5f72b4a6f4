"""``env``: the configuration's [vars] and Durable Object namespace
bindings, with ids and stubs as in Cloudflare's Workers runtime."""

import json

from componentize_py_types import Err
from wit_world.imports import env as env_api
from wit_world.imports import namespace

from . import ops
from ._names import with_snake_case
from .errors import CallError, calling


class DurableObjectId:
    """An object's id: 64 hex characters (``str(id)``); ``name`` is the name
    it was made from, when it was made from one."""

    def __init__(self, hex, name=None, lookup=None):
        self._hex = hex
        self._lookup = lookup
        self.name = name

    def _id(self):
        if self._hex is None:
            self._hex = self._lookup()
            self._lookup = None
        return self._hex

    def __str__(self):
        return self._id()

    def toString(self):
        return self._id()

    def __eq__(self, other):
        return isinstance(other, DurableObjectId) and other._id() == self._id()

    def equals(self, other):
        return self == other

    def __hash__(self):
        return hash(self._id())

    def __repr__(self):
        return f"DurableObjectId({self._id()!r})"


# How many of the host's stub handles an instance keeps for reuse.
_MAX_HANDLES = 256
_handles = {}


def _handle(key, open_handle):
    """The host's stub handle for ``key``, opened with ``open_handle`` when
    there is none; the least recently used ones beyond _MAX_HANDLES are let
    go (the host's resource is dropped with its last reference)."""
    handle = _handles.pop(key, None)
    if handle is None:
        handle = open_handle()
        if len(_handles) >= _MAX_HANDLES:
            _handles.pop(next(iter(_handles)))
    _handles[key] = handle
    return handle


@with_snake_case
class DurableObjectNamespace:
    """One binding's namespace (Cloudflare's DurableObjectNamespace)."""

    def __init__(self, raw, binding):
        self._raw = raw
        self._binding = binding

    def idFromName(self, name):
        name = str(name)
        return DurableObjectId(None, name, lambda: self._raw.id_from_name(name))

    def newUniqueId(self, options=None):
        """A new id; ``jurisdiction`` has no effect on one server."""
        return DurableObjectId(self._raw.new_unique_id())

    def idFromString(self, hex):
        return DurableObjectId(calling(self._raw.id_from_string, str(hex), error=CallError))

    def jurisdiction(self, name):
        return self

    def get(self, id, options=None):
        """A stub for ``id`` (an id of this namespace, or its string)."""
        if isinstance(id, DurableObjectId) and id.name is not None:
            return self.getByName(id.name)
        hex = str(id)
        key = (self._binding, "id", hex)

        def open_handle():
            return calling(self._raw.get, hex, error=CallError)

        # Opened now, so that a malformed id raises here, as on Cloudflare.
        _handle(key, open_handle)
        stub_id = id if isinstance(id, DurableObjectId) else DurableObjectId(hex)
        return DurableObjectStub(key, open_handle, stub_id)

    def getByName(self, name, options=None):
        """A stub for the object called ``name``."""
        name = str(name)
        key = (self._binding, "name", name)

        def open_handle():
            return self._raw.get_by_name(name)

        return DurableObjectStub(key, open_handle, DurableObjectId(None, name, lambda: _handle(key, open_handle).id()))


class DurableObjectStub:
    """A stub (Cloudflare's DurableObjectStub): ``await stub.fetch(...)``
    sends an HTTP request; any other method name calls the object's RPC
    method of that name, ``await stub.increment(2)``."""

    def __init__(self, key, open_handle, id):
        self._key = key
        self._open = open_handle
        self.id = id
        self.name = id.name

    def _raw(self):
        return _handle(self._key, self._open)

    def fetch(self, url, method="GET", headers=None, body=None):
        """Sends a request (a ``Request``, or a URL with ``method``,
        ``headers`` and ``body``) to the object; awaits its ``Response``."""
        return ops.stub_fetch(self._raw(), url, method=method, headers=headers, body=body)

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args):
            return ops.stub_call(self._raw(), method, args)

        call.__name__ = method
        return call


class Env:
    """``self.env``: ``env.NAME`` is the [vars] value NAME when there is one
    (parsed when the configuration gives it as a number, list or table),
    else the namespace binding NAME."""

    def __init__(self):
        self._known = {}
        self._json = None

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        known = self.__dict__["_known"]
        if name not in known:
            known[name] = self._lookup(name)
        return known[name]

    def __getitem__(self, name):
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def __contains__(self, name):
        try:
            getattr(self, name)
            return True
        except AttributeError:
            return False

    def _lookup(self, name):
        value = env_api.var(name)
        if value is not None:
            if self._json is None:
                self._json = set(env_api.json_vars())
            return json.loads(value) if name in self._json else value
        try:
            return DurableObjectNamespace(namespace.ObjectNamespace.open(name), name)
        except Err:
            why = env_api.unsupported_binding(name)
            if why is not None:
                raise AttributeError(why) from None
            raise AttributeError(f"env has no variable or binding {name!r}") from None


env = Env()
