# Parent-child coordination in Python: a Workspace object owns Document
# objects, with the routes, RPC methods and stored values of the Rust
# example in examples/workspace (and of the JavaScript Document in
# examples/js/patterns). So either side may be Python, Rust or JavaScript:
# dohost.toml serves Python Documents; rust.toml and js.toml keep this
# Python Workspace and worker and serve the Rust or the JavaScript Document.
#
# Routes (the worker forwards /workspaces/<name>/... to the Workspace <name>):
#   POST /workspaces/<name>/documents   {"id": ..., "name": ...}   201, or 409
#   GET  /workspaces/<name>/documents
#   GET  /workspaces/<name>/documents/<id>   the Document's describe()
#   PUT  /workspaces/<name>/documents/<id>   text: the Document's write(text)
#   GET  /workspaces/<name>/contents   every Document's describe(), at once
import asyncio
import time

from workers import DurableObject, Response, WorkerEntrypoint


class Workspace(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.storage.sql.exec(
            """CREATE TABLE IF NOT EXISTS documents (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                object_id TEXT NOT NULL,
                created_at INTEGER NOT NULL
            )"""
        )

    async def fetch(self, request):
        path = request.url.split("://", 1)[-1].partition("/")[2].split("?")[0]
        rest = path.split("/")[2:]
        match (request.method, rest):
            case ("POST", ["documents"]):
                return await self.create(await request.json())
            case ("GET", ["documents"]):
                return Response.json(self.list())
            case ("GET", ["contents"]):
                children = [self.child(doc["id"]) for doc in self.list()]
                infos = await asyncio.gather(*(child.describe() for child in children))
                return Response.json([[doc["id"], info] for doc, info in zip(self.list(), infos)])
            case ("GET", ["documents", id]) if self.known(id):
                return Response.json(await self.child(id).describe())
            case ("PUT", ["documents", id]) if self.known(id):
                return Response.json({"version": await self.child(id).write(await request.text())})
            case (_, ["documents", id]):
                return Response(f"no document {id!r} in this workspace\n", status=404)
        return Response("routes: POST|GET /workspaces/<name>/documents, GET|PUT .../documents/<id>\n", status=404)

    def child(self, id):
        """The stub of the document ``id`` of this workspace."""
        return self.env.DOCUMENT.getByName(f"{self.ctx.id}:{id}")

    def known(self, id):
        return self.ctx.storage.sql.exec("SELECT COUNT(*) AS n FROM documents WHERE id = ?", id).one().n > 0

    def list(self):
        return self.ctx.storage.sql.exec(
            "SELECT id, name, object_id, created_at FROM documents ORDER BY created_at, id"
        ).toArray()

    async def create(self, new):
        id, name = new.get("id", ""), new.get("name", "")
        if not id or "/" in id:
            return Response("a document id is a non-empty string without '/'\n", status=400)
        if self.known(id):
            return Response(f"document {id!r} already exists\n", status=409)
        child = self.child(id)
        info = await child.initialize(name)
        listed = {"id": id, "name": info["name"], "object_id": str(child.id), "created_at": info["created_at"]}
        inserted = self.ctx.storage.sql.exec(
            "INSERT INTO documents (id, name, object_id, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            *listed.values(),
        )
        if inserted.rowsWritten == 0:
            return Response(f"document {id!r} already exists\n", status=409)
        return Response.json(listed, status=201)


class Document(DurableObject):
    """A child: one document, reached through its workspace's RPC calls."""

    async def fetch(self, request):
        return Response.json(await self.describe())

    async def initialize(self, name):
        existing = await self.ctx.storage.get("name")
        if existing is not None and existing != name:
            raise ValueError(f"this document is already initialized as {existing!r}")
        if existing is None:
            await self.ctx.storage.put({"name": name, "created_at": int(time.time() * 1000)})
        return await self.describe()

    async def describe(self):
        stored = await self.ctx.storage.get(["name", "created_at", "version", "text"])
        if "name" not in stored:
            raise ValueError("this document was never initialized")
        return {
            "name": stored["name"],
            "object_name": self.ctx.id.name,
            "created_at": stored.get("created_at", 0),
            "version": stored.get("version", 0),
            "text": stored.get("text", ""),
        }

    async def write(self, text):
        version = (await self.describe())["version"] + 1
        await self.ctx.storage.put({"text": text, "version": version})
        return version


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("://", 1)[-1].partition("/")[2]
        parts = path.split("/")
        if len(parts) >= 2 and parts[0] == "workspaces" and parts[1]:
            return await self.env.WORKSPACE.getByName(parts[1]).fetch(request)
        return Response("not found: this app serves /workspaces/<workspace>/documents[/<id>]\n", status=404)
