"""The ``worker-handler`` export (the ``worker`` world): the module's entry
worker answers every HTTP request. It is a ``WorkerEntrypoint`` subclass
named ``Default`` (Cloudflare's ``class Default(WorkerEntrypoint)``), or a
function ``on_fetch(request, env)`` (or ``on_fetch(request, env, ctx)``)."""

import inspect

from wit_world import exports
from wit_world.imports import events

from . import WorkerEntrypoint, env, ops, targets
from .http import to_request


class ExecutionContext:
    """``ctx`` of an entry worker's request (Cloudflare's ExecutionContext)."""

    def waitUntil(self, awaitable):
        """Lets ``awaitable`` run on after the response, within the
        request's wall-clock limit."""
        ops.wait_until(awaitable)

    wait_until = waitUntil

    def passThroughOnException(self):
        pass


def _entry(app):
    entry = getattr(app, "Default", None)
    if isinstance(entry, type) and issubclass(entry, WorkerEntrypoint):
        return lambda request, ctx: entry(ctx, env).fetch(request)
    on_fetch = getattr(app, "on_fetch", None)
    if callable(on_fetch):
        takes_ctx = len(inspect.signature(on_fetch).parameters) >= 3
        return lambda request, ctx: on_fetch(request, env, ctx) if takes_ctx else on_fetch(request, env)
    return None


def worker_handler_class(app):
    """The class componentize-py exports as ``worker-handler``."""
    entry = _entry(app)

    async def run(event, req):
        if entry is None:
            raise TypeError(
                "the module has no entry worker: define class Default(WorkerEntrypoint) with fetch(self, request), "
                "or on_fetch(request, env)"
            )
        response = await ops.maybe_await(entry(to_request(req, event), ExecutionContext()))
        return ops.answer_fetch(event, response, "the entry worker's fetch")

    class WorkerHandler(exports.WorkerHandler):
        def fetch(self, event, req):
            ops.finish_when(events.finish_fetch, event, run(event, req))

        def call_target(self, event, target, method, args):
            ops.finish_when(events.finish_call, event, targets.call_lent(target, method, args))

        def resume(self, op, outcome):
            ops.resume(op, outcome)

    return WorkerHandler
