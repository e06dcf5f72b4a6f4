// The WebSocket benchmark's room (bench/run.sh ONLY=ws), the same file
// workerd runs: the entry worker sends /rooms/<name>/websocket to the Room
// named <name>, which accepts hibernatable WebSockets and sends each message
// it receives to every socket in the room (the sender too, as its ack).

import { DurableObject } from "cloudflare:workers";

export class Room extends DurableObject {
  async fetch(request) {
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response(`${this.ctx.getWebSockets().length} sockets\n`);
    }
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    return new Response(null, { status: 101, webSocket: client });
  }

  async webSocketMessage(ws, message) {
    for (const socket of this.ctx.getWebSockets()) socket.send(message);
  }
}

export default {
  async fetch(request, env) {
    const room = new URL(request.url).pathname.match(/^\/rooms\/([^/]+)(\/websocket)?$/);
    if (!room) return new Response("ok\n");
    return env.ROOM.getByName(room[1]).fetch(request);
  },
};
