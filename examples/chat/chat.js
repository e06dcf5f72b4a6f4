// A chat room per room name: the ChatRoom Durable Object holds its members'
// WebSockets with Cloudflare's Hibernation API (so a quiet room leaves
// memory while its members stay connected) and keeps the last 100 messages
// in SQL. The entry worker serves the page and sends
// /rooms/<name>/websocket to the room's object.

import { DurableObject } from "dohost";
import page from "./page.html";

const HISTORY = 100;

export class ChatRoom extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(
      "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL)",
    );
    // Keep-alives are answered by the host without waking the room.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  async fetch(request) {
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("this is a chat room: connect with a WebSocket", { status: 426 });
    }
    const name = (new URL(request.url).searchParams.get("name") ?? "").trim().slice(0, 32) || "anonymous";
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment({ name });
    server.send(JSON.stringify({ type: "history", messages: this.history() }));
    this.broadcast({ type: "joined", name });
    this.broadcast({ type: "members", members: this.members() });
    return new Response(null, { status: 101, webSocket: client });
  }

  async webSocketMessage(ws, message) {
    const { name } = ws.deserializeAttachment();
    let text;
    try {
      text = String(JSON.parse(message).text ?? "").trim().slice(0, 1000);
    } catch {
      ws.send(JSON.stringify({ type: "error", error: 'send JSON: {"text": "..."}' }));
      return;
    }
    if (!text) return;
    const at = Date.now();
    this.sql.exec("INSERT INTO messages (name, text, at) VALUES (?, ?, ?)", name, text, at);
    this.sql.exec("DELETE FROM messages WHERE id <= (SELECT MAX(id) FROM messages) - ?", HISTORY);
    this.broadcast({ type: "message", name, text, at });
  }

  async webSocketClose(ws) {
    const { name } = ws.deserializeAttachment();
    this.broadcast({ type: "left", name });
    this.broadcast({ type: "members", members: this.members() });
  }

  history() {
    return this.sql.exec("SELECT name, text, at FROM messages ORDER BY id DESC LIMIT ?", HISTORY).toArray().reverse();
  }

  members() {
    return this.ctx.getWebSockets().map((ws) => ws.deserializeAttachment().name);
  }

  broadcast(message) {
    const text = JSON.stringify(message);
    for (const ws of this.ctx.getWebSockets()) ws.send(text);
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/") {
      return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
    }
    const room = url.pathname.match(/^\/rooms\/([^/]+)\/websocket$/);
    if (room) {
      return env.ROOMS.getByName(room[1]).fetch(request);
    }
    return new Response("not found", { status: 404 });
  },
};
