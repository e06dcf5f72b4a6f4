"""RpcTargets and functions passed by reference over RPC
(wit/targets.wit), as Cloudflare's Workers RPC passes them: the receiver
gets a stub whose calls run on the original, in the object that passed it.

An object *lends* a target: the host gives a capability for it, which the
message carries in its place (docs/values.md). Calls through a stub are
events of the lending object (``handler.call-target``). A stub received
in a call's arguments is disposed when that call ends, unless the callee
keeps it with ``stub.dup()``; one received in a result lasts until it is
disposed (``stub.dispose()``, or ``with stub:``) or the lending object's
instance ends."""

from componentize_py_types import Err
from wit_world.imports import targets

from . import ops
from ._names import snake_case


class RpcTarget:
    """The base class of objects passed by reference over RPC: the
    receiver calls their public methods, which run here."""


# Targets this guest lent, by the number it lent them under, and each lent
# target's number by its identity (the target is kept, so the id holds).
_lent = {}
_numbers = {}


def _kind(value):
    """"target" or "function" when ``value`` passes by reference over RPC,
    else None."""
    if isinstance(value, _Stub):
        return value._kind
    if isinstance(value, RpcTarget):
        return "target"
    if callable(value) and not isinstance(value, type):
        return "function"
    return None


def capability_of(value):
    """The capability and kind to put in a message for ``value``, or None
    when it does not pass by reference: a stub received is passed on (a
    copy of its capability); an RpcTarget or a function is lent."""
    kind = _kind(value)
    if kind is None:
        return None
    try:
        if isinstance(value, _Stub):
            return targets.copy(value._live()), kind
        number = _numbers.get(id(value))
        if number is None:
            number = len(_numbers) + 1
            _numbers[id(value)] = number
            _lent[number] = value
        return targets.lend(number), kind
    except Err as e:
        raise TypeError(f"{type(value).__name__} could not be passed by reference: {e.value}") from None


def _method(target, method):
    if not isinstance(target, RpcTarget):
        if method != "":
            raise TypeError(f"a function passed by reference has no method {method!r}")
        return target
    for name in (method, snake_case(method)):
        found = getattr(type(target), name, None)
        if name and not name.startswith("_") and callable(found) and not hasattr(RpcTarget, name):
            return getattr(target, name)
    raise TypeError(f"{type(target).__name__} has no RPC method {method!r}")


async def call_lent(number, method, args):
    """Runs a call to the target this guest lent under ``number``: a method
    of an RpcTarget, or a function (``method`` empty). The result as an RPC
    message."""
    target = _lent.get(number)
    if target is None:
        raise RuntimeError("the RpcTarget is gone: the instance that passed it was reset")
    return await call_with_message(_method(target, method), args)


async def call_with_message(fn, args):
    """Calls ``fn`` with the RPC arguments ``args`` (a message) and returns
    its result as a message. The stubs the arguments brought are disposed
    when it ends, unless kept with ``dup()``, as on Cloudflare."""
    from .values import deserialize_message, serialize_message

    received = []
    try:
        arguments = deserialize_message(args, received)
        if not isinstance(arguments, list):
            raise TypeError("the arguments of an RPC call must be a list")
        return serialize_message(await ops.maybe_await(fn(*arguments)))
    finally:
        for stub in received:
            if not stub._kept:
                stub.dispose()


async def call_capability(capability, method, args):
    """Calls ``method`` of the target behind ``capability`` (empty: the
    function) with ``args``; its result, stubs in it kept until disposed."""
    return await ops.rpc_call(lambda message: targets.start_call(capability, method, message), args)


class _Stub:
    """What both stubs share: the capability, ``dispose`` and ``dup``."""

    def __init__(self, capability, kind):
        self._capability = capability
        self._kind = kind
        self._disposed = False
        # Kept past the call that brought it (``dup()``).
        self._kept = False

    def _live(self):
        if self._disposed:
            raise RuntimeError("Attempted to use an RPC stub after it was disposed")
        return self._capability

    def dispose(self):
        """Gives the stub up: calls through it fail from now on."""
        if not self._disposed:
            self._disposed = True
            targets.release(self._capability)

    def dup(self):
        """Keeps a stub received in a call's arguments past the call."""
        self._kept = True
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.dispose()


class RpcStub(_Stub):
    """A stub for an RpcTarget passed by reference: ``await
    stub.method(*args)`` calls it where it lives."""

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)

        # A disposed stub raises when the call is awaited, as in JavaScript.
        async def call(*args):
            return await call_capability(self._live(), method, args)

        call.__name__ = method
        return call


class FunctionStub(_Stub):
    """A stub for a function passed by reference: ``await stub(*args)``."""

    async def __call__(self, *args):
        return await call_capability(self._live(), "", args)


def stub_for(capability, kind, received=None):
    """A stub for ``capability`` (``kind`` "function" or "target"), added
    to ``received`` when given."""
    stub = FunctionStub(capability, kind) if kind == "function" else RpcStub(capability, kind)
    if received is not None:
        received.append(stub)
    return stub
