// WebSockets as guest code sees them: Cloudflare's `WebSocketPair`,
// `WebSocket` and `WebSocketRequestResponsePair`. This file imports nothing
// from the host, so an entry worker can pass a socket through (`return
// stub.fetch(request)`); what a socket does (send, close, attachments)
// goes through the backend the object role installs (websocket.js).
//
// The host holds the sockets: a `WebSocket` here is a handle with the
// host's number for it (a BigInt). `new WebSocketPair()` makes two ends
// with no number yet; `ctx.acceptWebSocket(server)` gives the server end
// one, which the client end shares, and `new Response(null, { status: 101,
// webSocket: client })` hands that number to the client's connection.

import { serialize } from "./clone.js";

let backend = null;

/** Installs what sockets do in an object (websocket.js). */
export function useSocketBackend(functions) {
  backend = functions;
}

function host() {
  if (backend === null) throw new Error("WebSockets can be used only in a Durable Object, not in a worker");
  return backend;
}

export class WebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  #id;
  #peer = null;
  #closed = false;

  /** Not for guest code: sockets come from `WebSocketPair` and `ctx.getWebSockets()`. */
  constructor(id = null) {
    this.#id = id;
  }

  /** The host's number for this socket, or its pair's; null before acceptWebSocket. */
  static idOf(ws) {
    if (!(ws instanceof WebSocket)) return null;
    return ws.#id ?? ws.#peer?.#id ?? null;
  }

  static pair() {
    const client = new WebSocket();
    const server = new WebSocket();
    client.#peer = server;
    server.#peer = client;
    return [client, server];
  }

  /** Gives this end, and its pair, the host's number. */
  static bind(ws, id) {
    ws.#id = id;
    if (ws.#peer !== null) ws.#peer.#id = id;
  }

  static markClosed(ws) {
    ws.#closed = true;
  }

  get readyState() {
    return this.#closed ? WebSocket.CLOSED : WebSocket.OPEN;
  }

  #number(what) {
    const id = WebSocket.idOf(this);
    if (id === null) throw new TypeError(`${what}: the WebSocket was not accepted (ctx.acceptWebSocket(ws))`);
    return id;
  }

  /** Sends a string as a text message, or bytes (ArrayBuffer, a typed array) as a binary one. */
  send(message) {
    const id = this.#number("send");
    let value;
    if (typeof message === "string") value = { tag: "text", val: message };
    else if (message instanceof ArrayBuffer) value = { tag: "binary", val: new Uint8Array(message) };
    else if (ArrayBuffer.isView(message)) {
      value = { tag: "binary", val: new Uint8Array(message.buffer, message.byteOffset, message.byteLength) };
    } else value = { tag: "text", val: String(message) };
    host().send(id, value);
  }

  /** Closes the socket with `code` (1000, or 3000 to 4999) and `reason`. */
  close(code = 1000, reason = "") {
    host().close(this.#number("close"), code, reason);
    this.#closed = true;
  }

  /** Keeps `value` (structured clone, at most 2,048 bytes) with the socket, across hibernation. */
  serializeAttachment(value) {
    host().setAttachment(this.#number("serializeAttachment"), value === undefined ? undefined : serialize(value));
  }

  /** What serializeAttachment kept, or null. */
  deserializeAttachment() {
    return host().attachment(this.#number("deserializeAttachment"));
  }

  /**
   * The standard API's `accept()` and event listeners: dohost offers the
   * Hibernation API (ctx.acceptWebSocket and the class's webSocket* methods).
   */
  accept() {
    throw new Error("dohost supports the WebSocket Hibernation API: call ctx.acceptWebSocket(server) instead of server.accept()");
  }

  addEventListener(type) {
    throw new Error(
      `dohost supports the WebSocket Hibernation API: handle "${type}" in the class's webSocketMessage/webSocketClose/webSocketError methods`,
    );
  }
}

/** Cloudflare's `new WebSocketPair()`: `const [client, server] = Object.values(pair)`. */
export class WebSocketPair {
  constructor() {
    const [client, server] = WebSocket.pair();
    this[0] = client;
    this[1] = server;
  }
}

/** A request and the response the host sends for it without waking the object. */
export class WebSocketRequestResponsePair {
  #request;
  #response;
  constructor(request, response) {
    if (typeof request !== "string" || typeof response !== "string") {
      throw new TypeError("WebSocketRequestResponsePair takes two strings: the request and the response");
    }
    this.#request = request;
    this.#response = response;
  }
  get request() {
    return this.#request;
  }
  get response() {
    return this.#response;
  }
}

/** Installs the WebSocket classes as globals, as the Workers runtime has them. */
export function installSocketGlobals() {
  globalThis.WebSocketPair = WebSocketPair;
  globalThis.WebSocketRequestResponsePair = WebSocketRequestResponsePair;
  globalThis.WebSocket ??= WebSocket;
}
