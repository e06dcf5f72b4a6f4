"""The asyncio event loop of a guest, driven by the host's turns.

The host delivers an event by calling an export; the guest runs until
everything it does waits on host operations and returns: one *turn*
(wit/events.wit). Here a turn is ``run_until_idle``: the loop runs every
ready callback, then returns. An operation (a call to another object, an
outbound ``fetch``, a timer) starts at once and gives a number; its
outcome comes in a later turn, through the ``resume`` export, which
settles the future waiting on that number and runs the loop again.

So ``await``, ``asyncio.gather``, ``asyncio.sleep`` and tasks work as in
any asyncio program, and between turns the object may take other events
(Cloudflare's input gate).
"""

import asyncio
import sys
import time
import traceback


class _HostTimer(asyncio.TimerHandle):
    """A timer on a host timer operation ``op``."""

    __slots__ = ("op",)


class TurnLoop(asyncio.AbstractEventLoop):
    """An event loop whose turns the host drives. Timers are host timers
    (``events.start-sleep``), so the object takes other events while one
    waits."""

    def __init__(self):
        self._ready = []
        self._running = False
        self._exception_handler = None
        # Operation number -> the future awaiting its outcome.
        self.waiting = {}
        self._sleep = None
        self._cancel = None

    def bind(self, start_sleep, cancel):
        """Gives the loop the host's timer calls (the ``events`` import)."""
        self._sleep = start_sleep
        self._cancel = cancel

    # -- turns -------------------------------------------------------------

    def run_until_idle(self):
        """Runs every ready callback, and those they make ready, then
        returns: one turn."""
        if self._running:
            return
        self._running = True
        asyncio.events._set_running_loop(self)
        try:
            while self._ready:
                ready = self._ready
                self._ready = []
                for handle in ready:
                    if not handle._cancelled:
                        handle._run()
        finally:
            asyncio.events._set_running_loop(None)
            self._running = False

    def op_future(self, op):
        """A future of operation ``op``'s outcome."""
        future = self.create_future()
        self.waiting[op] = future
        return future

    def settle(self, op, outcome):
        """Delivers ``outcome`` to the future of ``op`` (``resume``)."""
        future = self.waiting.pop(op, None)
        if future is not None and not future.done():
            future.set_result(outcome)
        self.run_until_idle()

    # -- what asyncio asks of a loop ---------------------------------------

    def get_debug(self):
        return False

    def is_running(self):
        return self._running

    def is_closed(self):
        return False

    def time(self):
        return time.monotonic()

    def call_soon(self, callback, *args, context=None):
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback, *args, context=None):
        return self.call_soon(callback, *args, context=context)

    def call_later(self, delay, callback, *args, context=None):
        return self.call_at(self.time() + max(0.0, delay), callback, *args, context=context)

    def call_at(self, when, callback, *args, context=None):
        if self._sleep is None:
            raise RuntimeError("timers need the host; none is bound at build time")
        handle = _HostTimer(when, callback, args, self, context)
        handle.op = self._sleep(max(0, int((when - self.time()) * 1000 + 0.999)))
        future = self.op_future(handle.op)
        future.add_done_callback(lambda _: handle._cancelled or self._ready.append(handle))
        return handle

    def _timer_handle_cancelled(self, handle):
        op = getattr(handle, "op", None)
        if op is not None and self.waiting.pop(op, None) is not None and self._cancel is not None:
            self._cancel(op)

    def create_future(self):
        return asyncio.Future(loop=self)

    def create_task(self, coro, *, name=None, context=None, **kwargs):
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def default_exception_handler(self, context):
        message = context.get("message", "an unhandled error in a task")
        exception = context.get("exception")
        if exception is not None:
            traceback.print_exception(exception)
        print(f"dohost: {message}", file=sys.stderr)

    def call_exception_handler(self, context):
        if self._exception_handler is not None:
            self._exception_handler(self, context)
        else:
            self.default_exception_handler(context)

    def set_exception_handler(self, handler):
        self._exception_handler = handler

    def get_exception_handler(self):
        return self._exception_handler

    def stop(self):
        pass

    def close(self):
        pass

    async def shutdown_asyncgens(self):
        pass


LOOP = TurnLoop()
asyncio.set_event_loop(LOOP)
