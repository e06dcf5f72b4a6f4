# The Counter Durable Object and its entry worker, in Python, as Cloudflare's
# Python Workers write them: `from workers import ...` is the dohost SDK.
from workers import DurableObject, Response, WorkerEntrypoint


class Counter(DurableObject):
    async def fetch(self, request):
        value = (await self.ctx.storage.get("value") or 0) + 1
        await self.ctx.storage.put("value", value)
        return Response(str(value))


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        stub = self.env.COUNTER.get(self.env.COUNTER.idFromName("my-counter"))
        return await stub.fetch(request)
