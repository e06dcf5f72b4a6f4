"""The ``handler`` export (the ``durable-object`` world): constructs the
module's ``DurableObject`` classes and runs their events. Each event
export starts the handler as a task and returns when the loop is idle; the
event ends through ``finish-*`` once the task is done, in this turn or in
a later ``resume`` (see _loop.py)."""

import inspect

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import context, events

from . import DurableObject, env, ops, targets
from ._loop import LOOP
from ._names import snake_case, with_snake_case
from .env import DurableObjectId
from .http import to_request
from .storage import DurableObjectStorage
from .websocket import SocketMethods, forget_socket, message_value, socket_handle


@with_snake_case
class DurableObjectState(SocketMethods):
    """``self.ctx`` of a Durable Object (Cloudflare's DurableObjectState)."""

    def __init__(self):
        #: The object's storage: KV, SQL (``storage.sql``) and the alarm.
        self.storage = DurableObjectStorage()
        self._id = None

    @property
    def id(self):
        """The object's id; ``id.name`` is the name it was reached by."""
        if self._id is None:
            self._id = DurableObjectId(context.id(), context.name())
        return self._id

    def blockConcurrencyWhile(self, callback):
        """Runs ``callback`` (a function or coroutine function) and keeps
        every other event out of the object until it is done; an awaitable
        of its result. In the constructor, initialisation finishes before
        any request sees the object. If it raises, the object is reset."""
        return ops.block_concurrency_while(callback)

    def abort(self, reason=None):
        """Resets the object: nothing after this call runs, the events it
        is running fail with ``reason``, their writes are dropped, and the
        next event starts a fresh instance on what is durable."""
        context.abort(None if reason is None else str(reason))
        raise RuntimeError("abort returned")

    def waitUntil(self, awaitable):
        """Lets ``awaitable`` run on after the event's response, within the
        event's wall-clock limit."""
        ops.wait_until(awaitable)


# Methods every object has that are not RPC methods.
_NOT_RPC = {"fetch", "alarm", "webSocketMessage", "webSocketClose", "webSocketError"}
_NOT_RPC |= {snake_case(name) for name in _NOT_RPC}


def _object_classes(app):
    """The module's DurableObject subclasses, by name."""
    return {
        name: value
        for name, value in vars(app).items()
        if isinstance(value, type) and issubclass(value, DurableObject) and value is not DurableObject
    }


class _AlarmInfo:
    """What an alarm handler is told: ``retryCount`` and ``isRetry``."""

    def __init__(self, info):
        self.retryCount = self.retry_count = info.retry_count
        self.isRetry = self.is_retry = info.is_retry


def _takes_argument(method):
    try:
        return any(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
            for p in inspect.signature(method).parameters.values()
        )
    except (TypeError, ValueError):
        return True


def handler_class(app):
    """The class componentize-py exports as ``handler`` for module ``app``."""
    classes = _object_classes(app)
    state = {"instance": None, "class": None}

    def needs(method):
        instance = state["instance"]
        found = getattr(instance, method, None)
        if not callable(found):
            raise TypeError(f"class {state['class']} has no {method}() method")
        return found

    async def run_fetch(event, req):
        response = await ops.maybe_await(needs("fetch")(to_request(req, event)))
        return ops.answer_fetch(event, response, f"{state['class']}.fetch")

    async def run_alarm(info):
        alarm = needs("alarm")
        args = (_AlarmInfo(info),) if _takes_argument(alarm) else ()
        await ops.maybe_await(alarm(*args))

    def rpc_method(method):
        """The instance's RPC method ``method``, or its snake_case spelling
        (a JavaScript caller's ``getCount`` finds ``get_count``)."""
        instance = state["instance"]
        for name in (method, snake_case(method)):
            found = getattr(type(instance), name, None)
            if not name.startswith("_") and name not in _NOT_RPC and callable(found) and not hasattr(DurableObject, name):
                return getattr(instance, name)
        raise TypeError(f"class {state['class']} has no RPC method {method!r}")

    async def run_call(method, args):
        return await targets.call_with_message(rpc_method(method), args)

    def socket_handler(method):
        """The object's ``method`` (or its snake_case spelling), if any."""
        instance = state["instance"]
        found = getattr(instance, method, None) or getattr(instance, snake_case(method), None)
        return found if callable(found) else None

    async def run_socket(method, socket, args, ends):
        ws = socket_handle(socket)
        if ends:
            ws._closed = True
        try:
            handler = socket_handler(method)
            # Only a message needs a handler; a close or an error without
            # one is fine.
            if handler is None and not ends:
                raise TypeError(f"class {state['class']} has no {method}() method")
            if handler is not None:
                await ops.maybe_await(handler(ws, *args))
        finally:
            if ends:
                forget_socket(socket)

    class Handler(exports.Handler):
        def classes(self):
            return list(classes)

        def init(self, class_name):
            cls = classes.get(class_name)
            if cls is None:
                raise Err(f"this module has no DurableObject class {class_name}; it has {', '.join(classes) or 'none'}")
            state["class"] = class_name
            ctx = DurableObjectState()
            try:
                instance = cls.__new__(cls)
                instance.ctx = ctx
                instance.env = env
                instance.__init__(ctx, env)
            except Exception as e:
                ops.report(e)
                raise Err(ops.error_message(e)) from None
            state["instance"] = instance
            LOOP.run_until_idle()

        def fetch(self, event, req):
            ops.finish_when(events.finish_fetch, event, run_fetch(event, req))

        def alarm(self, event, info):
            ops.finish_when(events.finish_alarm, event, run_alarm(info))

        def call(self, event, method, args):
            ops.finish_when(events.finish_call, event, run_call(method, args))

        def call_target(self, event, target, method, args):
            ops.finish_when(events.finish_call, event, targets.call_lent(target, method, args))

        def websocket_message(self, event, socket, message):
            run = run_socket("webSocketMessage", socket, (message_value(message),), False)
            ops.finish_when(events.finish_socket, event, run)

        def websocket_close(self, event, socket, code, reason, was_clean):
            run = run_socket("webSocketClose", socket, (code, reason, was_clean), True)
            ops.finish_when(events.finish_socket, event, run)

        def websocket_error(self, event, socket, error):
            run = run_socket("webSocketError", socket, (RuntimeError(error),), True)
            ops.finish_when(events.finish_socket, event, run)

        def resume(self, op, outcome):
            ops.resume(op, outcome)

    return Handler
