// Requests and responses between the host's plain records (dohost:object/types)
// and the web's Request and Response, which the engine provides.

const NO_BODY_METHODS = new Set(["GET", "HEAD"]);
const NO_BODY_STATUSES = new Set([101, 204, 205, 304]);

import { WebSocket } from "./sockets.js";
import { bodyNumber, receivedStream } from "./streams.js";

const encoder = new TextEncoder();

/**
 * The body each `Response` was made with, when it is one the host can take
 * as it is: a string (or no body) from guest code, or bytes the SDK made.
 * Reading a body back through the engine's stream costs several promises
 * and about a tenth of a hot request, so `fromWebResponse` takes the body
 * from here when the guest has not read it.
 */
const knownBodies = new WeakMap();

/** Responses made with a ReadableStream body -> that stream: streamed out. */
const streamedBodies = new WeakMap();

// `Response` stays the engine's class (same prototype, statics and
// `instanceof`); constructing one also notes its body. Status 101 with a
// `webSocket` (which the web's Response refuses) is made as a 200 that
// reports 101 and carries the socket, as in Cloudflare's Workers.
globalThis.Response = new Proxy(Response, {
  construct(target, args, newTarget) {
    const init = args[1];
    if (init && init.status === 101) {
      if (!(init.webSocket instanceof WebSocket)) {
        throw new RangeError("a 101 response needs a webSocket: the client end of a WebSocketPair");
      }
      const response = Reflect.construct(target, [null, { ...init, status: 200 }], newTarget);
      Object.defineProperty(response, "status", { value: 101 });
      Object.defineProperty(response, "ok", { value: false });
      Object.defineProperty(response, "webSocket", { value: init.webSocket });
      knownBodies.set(response, "");
      return response;
    }
    const response = Reflect.construct(target, args, newTarget);
    const body = args[0];
    if (body === undefined || body === null || typeof body === "string") knownBodies.set(response, body ?? "");
    else if (body instanceof ReadableStream) streamedBodies.set(response, body);
    return response;
  },
});

/**
 * The number of the fetch event an incoming request came with, and of the
 * operation that brought a response received from a stub, kept on each
 * under a symbol (cheaper than a WeakMap in the engine's interpreter). Handed on unchanged (`stub.fetch(request)`,
 * `return response`), they go back to the host by number, not copied
 * through the engine again (wit/namespace.wit `start-forward`,
 * wit/events.wit `finish-fetch-forward`).
 */
const INCOMING_EVENT = Symbol("dohost incoming event");
const RECEIVED_OP = Symbol("dohost received op");

/** Headers guest code changed (set, append, delete): theirs are no longer the host's. */
const changedHeaders = new WeakSet();
for (const method of ["set", "append", "delete"]) {
  const original = Headers.prototype[method];
  Object.defineProperty(Headers.prototype, method, {
    value: {
      [method](...args) {
        changedHeaders.add(this);
        return original.apply(this, args);
      },
    }[method],
    writable: true,
    configurable: true,
  });
}

/**
 * The event whose request `input` is, when it is the request that event
 * received, unchanged (what the host can send on by number); else undefined.
 */
export function forwardableEvent(input) {
  const event = input?.[INCOMING_EVENT];
  if (event === undefined || input.bodyUsed || changedHeaders.has(input.headers)) return undefined;
  return event;
}

/**
 * The operation whose response `response` is, when it is the response a
 * stub's fetch brought, unchanged; else undefined.
 */
export function forwardableOp(response) {
  const op = response?.[RECEIVED_OP];
  if (op === undefined || response.bodyUsed || changedHeaders.has(response.headers)) return undefined;
  return op;
}

/** The host's request record as a web `Request`; `event`, its fetch event's number. */
export function toWebRequest(req, event) {
  const init = { method: req.method, headers: req.headers };
  if (!NO_BODY_METHODS.has(req.method) && req.body.length > 0) {
    init.body = req.body;
  }
  const request = new Request(req.url, init);
  if (req.headers.some(isUpgrade)) {
    // The web's Request drops `Upgrade` and `Connection` (forbidden
    // request headers in browsers); a Worker sees them, so a WebSocket
    // upgrade can be recognised and forwarded.
    Object.defineProperty(request, "headers", { value: new Headers(req.headers) });
  }
  if (event !== undefined) request[INCOMING_EVENT] = event;
  return request;
}

function isUpgrade([name]) {
  return name.length === 7 && name.toLowerCase() === "upgrade";
}

/** A web `Request` (or what `fetch` takes) as the host's request record. */
export async function fromWebRequest(input, init) {
  const request = input instanceof Request && init === undefined ? input : new Request(input, init);
  const body = NO_BODY_METHODS.has(request.method) ? new Uint8Array(0) : new Uint8Array(await request.arrayBuffer());
  return {
    method: request.method,
    url: request.url,
    headers: [...request.headers],
    body,
  };
}

/** The host's response record as a web `Response`; `op`, the stub fetch that brought it. */
export function toWebResponse(res, op) {
  if (res.status === 101 && res.websocket !== undefined && res.websocket !== null) {
    return new Response(null, { status: 101, headers: res.headers, webSocket: new WebSocket(res.websocket) });
  }
  if (res.stream !== undefined && res.stream !== null) {
    return new Response(receivedStream(res.stream), { status: res.status, headers: res.headers });
  }
  const body = NO_BODY_STATUSES.has(res.status) ? null : res.body;
  const response = new Response(body, { status: res.status, headers: res.headers });
  // The host's bytes, which nothing else holds.
  if (body !== null) knownBodies.set(response, body);
  if (op !== undefined) response[RECEIVED_OP] = op;
  return response;
}

/**
 * What a handler returned, which must be a `Response`, as the host's
 * record: at once when its body is known (see knownBodies), else
 * `undefined`, and `readWebResponse` reads it.
 */
export function fromWebResponse(response, what) {
  if (!(response instanceof Response)) {
    throw new TypeError(`${what} must return a Response, not ${describe(response)}`);
  }
  const stream = streamedBodies.get(response);
  if (stream !== undefined && !response.bodyUsed) {
    return { ...responseRecord(response, new Uint8Array(0)), stream: bodyNumber(stream) };
  }
  const known = knownBodies.get(response);
  if (known === undefined || response.bodyUsed) return undefined;
  return responseRecord(response, typeof known === "string" ? encoder.encode(known) : known);
}

/** A `Response` as the host's record, its body read through the engine. */
export async function readWebResponse(response) {
  return responseRecord(response, new Uint8Array(await response.arrayBuffer()));
}

function responseRecord(response, body) {
  const socket = response.status === 101 ? WebSocket.idOf(response.webSocket) : null;
  if (response.status === 101 && socket === null) {
    throw new TypeError("the 101 response's webSocket was not accepted: call ctx.acceptWebSocket(server) first");
  }
  return { status: response.status, headers: [...response.headers], body, stream: undefined, websocket: socket ?? undefined };
}

/** A short description of a value for error messages. */
export function describe(value) {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "an object";
  return typeof value;
}

/**
 * The message the host reports for an error thrown by guest code: the
 * error's message, or what was thrown.
 */
export function errorMessage(error) {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
