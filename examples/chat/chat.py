# The chat rooms of chat.js in Python: the ChatRoom Durable Object holds
# its members' WebSockets with Cloudflare's Hibernation API (so a quiet room
# leaves memory while its members stay connected) and keeps the last 100
# messages in SQL. The entry worker serves the page and sends
# /rooms/<name>/websocket to the room's object.
import json
import os
import re
import time
from urllib.parse import parse_qs, urlparse

from workers import (
    DurableObject,
    Response,
    WebSocketPair,
    WebSocketRequestResponsePair,
    WorkerEntrypoint,
)

HISTORY = 100

# Read when the module is built (its top level runs then), so the page is
# in the component: a guest has no files at run time.
with open(os.path.join(os.path.dirname(__file__), "page.html")) as f:
    PAGE = f.read()


class ChatRoom(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "name TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL)"
        )
        # Keep-alives are answered by the host without waking the room.
        ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair("ping", "pong"))

    async def fetch(self, request):
        if request.headers.get("Upgrade") != "websocket":
            return Response("this is a chat room: connect with a WebSocket", status=426)
        query = parse_qs(urlparse(request.url).query)
        name = query.get("name", [""])[0].strip()[:32] or "anonymous"
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        server.serializeAttachment({"name": name})
        server.send(json.dumps({"type": "history", "messages": self.history()}))
        self.broadcast({"type": "joined", "name": name})
        self.broadcast({"type": "members", "members": self.members()})
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        name = ws.deserializeAttachment()["name"]
        try:
            text = str(json.loads(message).get("text") or "").strip()[:1000]
        except (ValueError, AttributeError):
            ws.send(json.dumps({"type": "error", "error": 'send JSON: {"text": "..."}'}))
            return
        if not text:
            return
        at = int(time.time() * 1000)
        self.sql.exec("INSERT INTO messages (name, text, at) VALUES (?, ?, ?)", name, text, at)
        self.sql.exec("DELETE FROM messages WHERE id <= (SELECT MAX(id) FROM messages) - ?", HISTORY)
        self.broadcast({"type": "message", "name": name, "text": text, "at": at})

    async def webSocketClose(self, ws, code, reason, was_clean):
        name = ws.deserializeAttachment()["name"]
        self.broadcast({"type": "left", "name": name})
        self.broadcast({"type": "members", "members": self.members()})

    def history(self):
        rows = self.sql.exec("SELECT name, text, at FROM messages ORDER BY id DESC LIMIT ?", HISTORY).toArray()
        return rows[::-1]

    def members(self):
        return [ws.deserializeAttachment()["name"] for ws in self.ctx.getWebSockets()]

    def broadcast(self, message):
        text = json.dumps(message)
        for ws in self.ctx.getWebSockets():
            ws.send(text)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlparse(request.url).path
        if path == "/":
            return Response(PAGE, headers={"content-type": "text/html; charset=utf-8"})
        room = re.fullmatch(r"/rooms/([^/]+)/websocket", path)
        if room:
            return await self.env.ROOMS.getByName(room.group(1)).fetch(request)
        return Response("not found", status=404)
