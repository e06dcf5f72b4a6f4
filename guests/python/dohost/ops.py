"""Operations: what guest code awaits that is not storage. Calls to other
objects, ``fetch()`` to the outside world, timers and body reads each
start a host operation that returns its number at once; the outcome comes
through the ``resume`` export and settles the future awaiting it (see
_loop.py). Events end through ``finish-*`` once their handler is done."""

import asyncio
import inspect
import sys
import traceback

from componentize_py_types import Err, Ok
from wit_world.imports import body as bodies
from wit_world.imports import events, outbound

from . import http
from ._loop import LOOP
from .errors import CallError, FetchError

LOOP.bind(events.start_sleep, events.cancel)


def error_message(error):
    """What an event's error says: the exception's type and message."""
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def report(error):
    """Prints ``error`` with its traceback to the guest's standard error,
    which the host logs with the object."""
    traceback.print_exception(error, file=sys.stderr)


async def _await_op(op):
    outcome = await LOOP.op_future(op)
    if isinstance(outcome, events.Outcome_Cancelled):
        raise asyncio.CancelledError(outcome.value)
    return outcome


async def maybe_await(value):
    """``value``, awaited when it is awaitable (a handler may be ``def`` or
    ``async def``)."""
    if inspect.isawaitable(value):
        return await value
    return value


def wait_until(awaitable):
    """``waitUntil``: lets ``awaitable`` run on after the event's response,
    within the event's wall-clock limit."""
    if inspect.isawaitable(awaitable):
        LOOP.create_task(maybe_await(awaitable))


def finish_when(finish, event, coro, encode=lambda v: v):
    """Runs ``coro`` as a task and ends event ``event`` with its result
    (``encode``d) or its error through ``finish``."""

    def done(task):
        if task.cancelled():
            finish(event, Err("the event was cancelled"))
            return
        error = task.exception()
        if error is not None:
            report(error)
            finish(event, Err(error_message(error)))
            return
        result = task.result()
        if result is FORWARDED:
            return
        try:
            finish(event, Ok(encode(result)))
        except Exception as e:  # noqa: BLE001 - the event must end either way
            report(e)
            finish(event, Err(error_message(e)))

    task = LOOP.create_task(coro)
    task.add_done_callback(done)
    LOOP.run_until_idle()


# What a fetch handler's task returns when it answered by number.
FORWARDED = object()


def answer_fetch(event, response, what):
    """The record to end fetch event ``event`` with, or FORWARDED when the
    response is a stub's, handed on unchanged and the host still holds it."""
    if isinstance(response, http.Response) and http.unchanged(response):
        if events.finish_fetch_forward(event, response._op):
            return FORWARDED
    return http.from_response(response, what)


def resume(op, outcome):
    """The ``resume`` export."""
    LOOP.settle(op, outcome)


def _ok(result, error_type):
    if isinstance(result, Err):
        raise error_type(result.value)
    return result.value


async def stream_chunks(stream):
    """The chunks of streamed body ``stream``, which the host gave this
    guest, read as they come."""
    while True:
        outcome = await _await_op(bodies.start_read(stream))
        chunk = _ok(outcome.value, lambda why: OSError(f"the body failed: {why}"))
        if chunk is None:
            return
        yield chunk


async def read_stream(stream):
    """The whole of streamed body ``stream``."""
    return b"".join([chunk async for chunk in stream_chunks(stream)])


class _ReaderGone(Exception):
    """The reader of a body this guest writes went away."""


def write_stream(chunks):
    """A new body that a task writes ``chunks`` to (an async iterable or an
    iterable of ``str`` or ``bytes``), one at a time, each once the reader
    has room; its number, for the response."""
    number = bodies.open()
    LOOP.create_task(_pump(number, chunks))
    return number


async def _pump(number, chunks):
    try:
        if hasattr(chunks, "__aiter__"):
            async for chunk in chunks:
                await _write(number, chunk)
        else:
            for chunk in chunks:
                await _write(number, chunk)
        bodies.close(number, None)
    except _ReaderGone:
        # The client left: nothing to tell it, and no fault of the code.
        bodies.close(number, "the reader went away")
    except BaseException as error:  # noqa: BLE001 - the body must end either way
        report(error)
        bodies.close(number, error_message(error))
    finally:
        # As WSGI servers do: what the chunks came from is closed.
        if hasattr(chunks, "aclose"):
            await chunks.aclose()
        elif callable(getattr(chunks, "close", None)):
            chunks.close()


async def _write(number, chunk):
    if isinstance(chunk, str):
        chunk = chunk.encode()
    elif isinstance(chunk, (bytes, bytearray, memoryview)):
        chunk = bytes(chunk)
    else:
        raise TypeError(f"a response body's chunks must be str or bytes, not {type(chunk).__name__}")
    if chunk:
        outcome = await _await_op(bodies.start_write(number, chunk))
        if isinstance(outcome.value, Err):
            raise _ReaderGone(outcome.value.value)


_REDIRECTS = {
    "follow": outbound.Redirect.FOLLOW,
    "manual": outbound.Redirect.MANUAL,
    "error": outbound.Redirect.ERROR,
}


async def fetch(url, method="GET", headers=None, body=None, redirect="follow"):
    """Sends a request to the outside world through the host (its egress
    policy and the event's subrequest limits apply) and returns the
    ``Response``. The request leaves once the writes made before it are
    durable. ``url`` may be a ``Request``."""
    request = url if isinstance(url, http.Request) and body is None and headers is None else None
    if request is None:
        request = http.Request(url, method=method, headers=headers, body=body)
    if redirect not in _REDIRECTS:
        raise ValueError(f'redirect must be "follow", "manual" or "error", not {redirect!r}')
    op = outbound.start_fetch(http.from_request(request), _REDIRECTS[redirect])
    outcome = await _await_op(op)
    fetched = _ok(outcome.value, FetchError)
    response = http.to_response(fetched.response)
    response.url = fetched.url
    response.redirected = fetched.redirected
    return response


async def stub_fetch(raw, url, method="GET", headers=None, body=None):
    """Sends a request to an object through the stub handle ``raw``: the
    request an event received, unchanged, by its event's number."""
    op = None
    if isinstance(url, http.Request) and url._event is not None and headers is None and body is None:
        op = raw.start_forward(url._event)
    if op is None:
        request = url if isinstance(url, http.Request) and headers is None and body is None else None
        if request is None:
            request = http.Request(url, method=method, headers=headers, body=body)
        op = raw.start_fetch(http.from_request(request))
    outcome = await _await_op(op)
    return http.to_response(_ok(outcome.value, CallError), op)


async def stub_call(raw, method, args):
    """Calls RPC method ``method`` through the stub handle ``raw``."""
    return await rpc_call(lambda message: raw.start_call(method, message), args)


async def rpc_call(start, args):
    """An RPC call's result: ``start(message)`` starts it with ``args`` as
    a message (RpcTargets and functions lent), and its outcome comes back
    as one (stubs in it kept until disposed)."""
    from .values import deserialize_message, serialize_message

    outcome = await _await_op(start(serialize_message(list(args))))
    return deserialize_message(_ok(outcome.value, CallError))


def block_concurrency_while(callback):
    """Runs ``callback()`` (a function, a coroutine function or a
    coroutine) and keeps every new event out of the object until it is
    done; returns a task of its result. If it raises, the object is reset,
    as on Cloudflare."""
    events.block_concurrency()

    async def run():
        try:
            value = callback() if callable(callback) else callback
            result = await maybe_await(value)
        except BaseException as e:
            events.allow_concurrency(error_message(e))
            raise
        events.allow_concurrency(None)
        return result

    return LOOP.create_task(run())
