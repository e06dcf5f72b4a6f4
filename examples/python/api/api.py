# A tour of the Python SDK, one route per part of the API. The entry worker
# sends /<name>/<route> to the Api object called <name>; a route answers what
# it returns as JSON, or the Response it returns. tests/all/python.rs checks
# each of them.
import asyncio
import datetime
import time

from workers import CallError, DurableObject, Response, RpcTarget, SqlError, StorageError, WorkerEntrypoint, fetch


class Api(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        # Runs before any event reaches the object: count the activations.
        ctx.blockConcurrencyWhile(self.start)

    async def start(self):
        self.starts = (await self.ctx.storage.get("starts") or 0) + 1
        await self.ctx.storage.put("starts", self.starts)

    async def fetch(self, request):
        route = request.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        query = dict(part.split("=", 1) for part in request.url.partition("?")[2].split("&") if "=" in part)
        handler = getattr(self, "route_" + route, None)
        if handler is None:
            return Response.json({"error": f"no route {route}"}, status=404)
        result = await handler(request, query)
        return result if isinstance(result, Response) else Response.json(result)

    # Key-value storage: one key, many keys, list options, delete.
    async def route_kv(self, request, query):
        storage = self.ctx.storage
        await storage.put("a", 1)
        await storage.put({"b": [2, "two"], "c": {"three": 3.5}, "d": None})
        one = await storage.get("a")
        many = await storage.get(["a", "b", "missing"])
        listed = await storage.list(prefix="", limit=3, reverse=True)
        after = await storage.list({"startAfter": "a", "end": "d"})
        deleted = await storage.delete("a")
        deleted_many = await storage.delete(["b", "missing"])
        left = list((await storage.list()).keys())
        sync = storage.kv.get("c")
        try:
            await storage.put("k" * 3000, 1)
            too_long = None
        except StorageError as e:
            too_long = e.kind
        return {
            "one": one,
            "many": many,
            "listed": list(listed),
            "after": list(after),
            "deleted": deleted,
            "deleted_many": deleted_many,
            "left": left,
            "sync": sync,
            "too_long": too_long,
        }

    # Values other SDKs read: what JSON holds, and what it does not.
    async def route_values(self, request, query):
        when = datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc)
        shared = [1, 2]
        value = {
            "bytes": b"\x00\x01",
            "set": {3},
            "when": when,
            "big": 2**70,
            "map": {1: "one"},
            "shared": [shared, shared],
            "float": float("inf"),
        }
        await self.ctx.storage.put("value", value)
        back = await self.ctx.storage.get("value")
        return {
            "same": back == value,
            "shared_kept": back["shared"][0] is back["shared"][1],
            "types": sorted(f"{k}:{type(v).__name__}" for k, v in back.items()),
        }

    # A value another SDK stored (?key=...), as Python reads it: each
    # entry's type and value.
    async def route_read(self, request, query):
        value = await self.ctx.storage.get(query.get("key", ""))
        if not isinstance(value, dict):
            return {"value": f"{type(value).__name__}: {value!r}"}
        return {key: f"{type(item).__name__}: {item!r}" for key, item in value.items()}

    # Transactions: commit, explicit rollback, rollback on an exception.
    async def route_txn(self, request, query):
        storage = self.ctx.storage

        async def commit(txn):
            await txn.put("t1", "kept")
            return "committed"

        async def rollback(txn):
            await txn.put("t2", "dropped")
            txn.rollback()

        def fails(txn):
            txn.put("t3", "dropped")
            raise ValueError("no")

        result = await storage.transaction(commit)
        await storage.transaction(rollback)
        try:
            await storage.transaction(fails)
        except ValueError:
            pass
        sync_result = storage.transactionSync(lambda: storage.sql.exec("SELECT 7 AS n").one().n)
        return {
            "result": result,
            "sync_result": sync_result,
            "kept": await storage.get(["t1", "t2", "t3"]),
        }

    # SQL: statements with bindings, rows as dicts with attributes, raw rows.
    async def route_sql(self, request, query):
        sql = self.ctx.storage.sql
        sql.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT, score REAL, data BLOB)")
        for body, score in (("first", 1.5), ("second", 2.5)):
            sql.exec("INSERT INTO notes (body, score, data) VALUES (?, ?, ?)", body, score, body.encode())
        cursor = sql.exec("SELECT id, body, score FROM notes ORDER BY id")
        rows = cursor.toArray()
        total = sql.exec("SELECT COUNT(*) AS n, SUM(score) AS s FROM notes").one()
        raw = list(sql.exec("SELECT body, data FROM notes ORDER BY id LIMIT 1").raw())
        try:
            sql.exec("SELECT * FROM nowhere")
            error = None
        except SqlError as e:
            error = str(e)
        return {
            "columns": cursor.columnNames,
            "rows": rows,
            "count": total.n,
            "sum": total["s"],
            "raw": [[raw[0][0], raw[0][1].decode()]],
            "rows_read": cursor.rows_read > 0,
            "size": sql.databaseSize > 0,
            "error": error,
        }

    # The alarm: set it, read it; alarm() records that it fired.
    async def route_alarm(self, request, query):
        if request.method == "POST":
            at = int(time.time() * 1000) + int(query.get("in", "100"))
            await self.ctx.storage.setAlarm(at)
        return {
            "alarm": await self.ctx.storage.getAlarm(),
            "fired": await self.ctx.storage.get("fired") or 0,
            "retry": await self.ctx.storage.get("retry"),
        }

    async def alarm(self, alarm_info):
        await self.ctx.storage.put("fired", (await self.ctx.storage.get("fired") or 0) + 1)
        await self.ctx.storage.put("retry", alarm_info.retryCount)

    # RPC: calls to another Api object, concurrently, and its errors.
    async def route_rpc(self, request, query):
        peer = self.env.API.getByName(query.get("peer", "peer"))
        added, echoed = await asyncio.gather(peer.add(2, 3), peer.echo({"nested": [1, {"x": None}]}))
        try:
            await peer.fail("on purpose")
            failure = None
        except CallError as e:
            failure = {"message": str(e), "remote": e.remote}
        try:
            await peer.nope()
            missing = None
        except CallError as e:
            missing = str(e)
        return {"added": added, "echoed": echoed, "failure": failure, "missing": missing, "total": await peer.total()}

    async def add(self, a, b):
        total = (await self.ctx.storage.get("total") or 0) + a + b
        await self.ctx.storage.put("total", total)
        return a + b

    def echo(self, value):
        return value

    async def total(self):
        return await self.ctx.storage.get("total")

    async def fail(self, why):
        raise RuntimeError(why)

    # RpcTargets and functions by reference, as Workers RPC passes them: the
    # peer returns a Counter (an RpcTarget) whose methods run in the peer; a
    # function passed to the peer runs here when the peer calls it; a stub
    # received as an argument is disposed when the call ends unless kept
    # with dup(); a disposed stub raises; storage refuses an RpcTarget.
    async def route_targets(self, request, query):
        # ?binding=JS: a peer of another binding (the JavaScript tour's Api).
        peer = self.env[query.get("binding", "API")].getByName(f"{self.ctx.id.name}-peer")
        counter = await peer.makeCounter(10)
        counted = [await counter.increment(2), await counter.increment(3)]
        calls = []

        def triple(x):
            calls.append(x)
            return x * 3

        tripled = await peer.applyTwice(triple, 2)
        tripled_calls = len(calls)
        await peer.keep(lambda x: f"kept {x}", False)
        dropped = await _failure(peer.callKept("a"))
        await peer.keep(lambda x: f"kept {x}", True)
        kept = await peer.callKept("b")
        counter.dispose()
        disposed = await _failure(counter.increment(1))
        try:
            await self.ctx.storage.put("target", Counter(0))
            stored = "stored"
        except TypeError as e:
            stored = f"TypeError: {e}"
        echoed = await (await peer.echo(triple))(5)
        # A target goes with the instance that lent it.
        second = await peer.makeCounter(0)
        await _failure(peer.reset())
        after_reset = await _failure(second.increment(1))
        return {
            "counted": counted,
            "tripled": tripled,
            "calls": tripled_calls,
            "dropped": dropped,
            "kept": kept,
            "disposed": disposed,
            "stored": stored,
            "echoed": echoed,
            "after_reset": after_reset,
        }

    # RPC methods for route_targets.
    def make_counter(self, start):
        return Counter(start)

    async def apply_twice(self, fn, x):
        return await fn(await fn(x))

    def keep(self, fn, dup):
        self.kept = fn.dup() if dup else fn

    async def call_kept(self, x):
        return await self.kept(x)

    def reset(self):
        self.ctx.abort("reset by its peer")

    # An exception answers 500; the object goes on serving.
    async def route_error(self, request, query):
        await self.ctx.storage.put("before_error", True)
        raise ValueError("this route always fails")

    # The object's id, its vars and the activations counted in __init__.
    async def route_state(self, request, query):
        return {
            "id": str(self.ctx.id),
            "name": self.ctx.id.name,
            "starts": self.starts,
            "greeting": self.env.GREETING,
            "limits": self.env.LIMITS if "LIMITS" in self.env else None,
            "before_error": await self.ctx.storage.get("before_error"),
        }

    # Timers and outbound requests: the object takes other events meanwhile.
    async def route_wait(self, request, query):
        seconds = int(query.get("ms", "200")) / 1000
        started = time.monotonic()
        await asyncio.gather(asyncio.sleep(seconds), asyncio.sleep(seconds))
        return {"waited_ms": round((time.monotonic() - started) * 1000)}

    # A streamed body (server-sent events): the head and the first event
    # leave at once, the last once /release is called; with ?fail=1 the
    # stream breaks after the first event (the client's connection is cut).
    async def route_stream(self, request, query):
        async def events():
            yield "data: first\n\n"
            if "fail" in query:
                raise RuntimeError("the stream broke")
            while not await self.ctx.storage.get("released"):
                await asyncio.sleep(0.02)
            await self.ctx.storage.delete("released")
            yield b"data: last\n\n"

        return Response(events(), headers={"content-type": "text/event-stream"})

    async def route_release(self, request, query):
        await self.ctx.storage.put("released", True)
        return {"released": True}

    # Another object's stream, relayed chunk by chunk as it comes.
    async def route_relay(self, request, query):
        upstream = await self.env.API.getByName(query["from"]).fetch("http://api/stream")
        return Response(upstream.chunks(), headers={"content-type": upstream.headers.get("content-type")})

    async def route_outbound(self, request, query):
        response = await fetch(self.env.UPSTREAM + "/hello")
        return {"status": response.status, "body": await response.text()}


class PyApi(Api):
    """The same tour under another class name, for a server that also binds
    the JavaScript tour's Api (tests/all/python.rs): a class is bound once."""


class Counter(RpcTarget):
    """Passed by reference: its methods run in the object that made it."""

    def __init__(self, count):
        self.count = count

    def increment(self, by):
        self.count += by
        return self.count


async def _failure(awaitable):
    """What ``awaitable`` raised, as ``Type: message``."""
    try:
        await awaitable
        return None
    except Exception as e:  # noqa: BLE001 - the tour reports any failure
        return f"{type(e).__name__}: {e}"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("://", 1)[-1].partition("/")[2]
        name = path.split("/", 1)[0] or "tour"
        if path.endswith("/lend"):
            # The worker lends a function too, while its request runs.
            applied = await self.env.API.getByName(name).applyTwice(lambda x: x * 10, 2)
            return Response.json({"applied": applied})
        return await self.env.API.getByName(name).fetch(request)
