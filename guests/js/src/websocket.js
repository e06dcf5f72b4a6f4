// What WebSockets do in an object: the host's `websocket` interface behind
// the classes of sockets.js, `ctx`'s WebSocket methods, and the events.

import * as host from "dohost:object/websocket@0.1.0";
import { deserialize } from "./clone.js";
import { WebSocket, WebSocketRequestResponsePair, useSocketBackend } from "./sockets.js";

function call(f) {
  try {
    return f();
  } catch (e) {
    if (e && e.payload !== undefined) throw new Error(e.payload);
    throw e;
  }
}

/** Socket number -> its handle, while the object is in memory. */
const handles = new Map();

/** The handle of socket `id`. */
export function socketHandle(id) {
  let ws = handles.get(id);
  if (ws === undefined) {
    ws = new WebSocket(id);
    handles.set(id, ws);
  }
  return ws;
}

/** Forgets socket `id`'s handle (its close or error event ended). */
export function forgetSocket(id) {
  const ws = handles.get(id);
  if (ws !== undefined) WebSocket.markClosed(ws);
  handles.delete(id);
}

// Sends are kept and handed to the host together in a microtask, before
// the turn ends: a broadcast, the same message to many sockets, is one host
// call. The host sends nothing before the turn ends anyway (the output
// gate), so this changes no order. A socket its client closed meanwhile is
// skipped. A message over the size limit is not sent, and the error is
// thrown where the event's handler ends (`flushSends`).
let pending = [];
let failure = null;

function send(id, message) {
  const last = pending[pending.length - 1];
  if (last !== undefined && last.message.val === message.val && last.message.tag === message.tag) {
    last.ids.push(id);
  } else {
    if (pending.length === 0) queueMicrotask(flushLater);
    pending.push({ message, ids: [id] });
  }
}

function flushLater() {
  try {
    flushSends();
  } catch (e) {
    failure ??= e;
  }
}

/** Hands the kept sends to the host; throws what a send failed with. */
export function flushSends() {
  const batch = pending;
  pending = [];
  for (const { message, ids } of batch) call(() => host.sendMany(new BigUint64Array(ids), message));
  if (failure !== null) {
    const error = failure;
    failure = null;
    throw error;
  }
}

useSocketBackend({
  send,
  close(id, code, reason) {
    flushSends();
    call(() => host.close(id, code, reason));
  },
  setAttachment: (id, bytes) => call(() => host.setAttachment(id, bytes)),
  attachment(id) {
    const bytes = host.attachment(id);
    return bytes === undefined ? null : deserialize(bytes);
  },
});

/** `ctx`'s WebSocket methods (Cloudflare's DurableObjectState). */
export const socketMethods = {
  acceptWebSocket(ws, tags = []) {
    if (!(ws instanceof WebSocket)) throw new TypeError("acceptWebSocket takes the server end of a WebSocketPair");
    if (WebSocket.idOf(ws) !== null) throw new TypeError("this WebSocket was accepted already");
    const id = call(() => host.accept([...tags].map(String)));
    WebSocket.bind(ws, id);
    handles.set(id, ws);
  },
  getWebSockets(tag) {
    // A list<u64> arrives as a BigUint64Array, whose map() makes another.
    return Array.from(host.sockets(tag === undefined ? undefined : String(tag)), socketHandle);
  },
  getTags(ws) {
    const id = WebSocket.idOf(ws);
    return id === null ? [] : host.tags(id);
  },
  setWebSocketAutoResponse(pair) {
    if (pair !== undefined && pair !== null && !(pair instanceof WebSocketRequestResponsePair)) {
      throw new TypeError("setWebSocketAutoResponse takes a WebSocketRequestResponsePair");
    }
    call(() => host.setAutoResponse(pair ? { request: pair.request, response: pair.response } : undefined));
  },
  getWebSocketAutoResponse() {
    const pair = host.getAutoResponse();
    return pair === undefined ? null : new WebSocketRequestResponsePair(pair.request, pair.response);
  },
  getWebSocketAutoResponseTimestamp(ws) {
    const id = WebSocket.idOf(ws);
    const at = id === null ? undefined : host.autoResponseTimestamp(id);
    return at === undefined ? null : new Date(Number(at));
  },
};

/** A message as the handler receives it: a string, or an ArrayBuffer. */
export function messageValue(message) {
  if (message.tag === "text") return message.val;
  const bytes = message.val;
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}
