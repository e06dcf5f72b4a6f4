# The Counter Durable Object and the entry worker, written as for
# Cloudflare's Python Workers: `workers` is the dohost SDK, put into the
# component by the build.
from workers import DurableObject, Response, WorkerEntrypoint


class Counter(DurableObject):
    """Counts the requests it gets, in its storage."""

    async def fetch(self, request):
        value = (await self.ctx.storage.get("value") or 0) + 1
        await self.ctx.storage.put("value", value)
        return Response(str(value))


class Default(WorkerEntrypoint):
    """Sends every request to the counter named "counter"."""

    async def fetch(self, request):
        stub = self.env.COUNTER.get(self.env.COUNTER.idFromName("counter"))
        return await stub.fetch(request)
