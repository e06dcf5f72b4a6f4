// Operations: what guest code awaits that is not storage. Calls to other
// objects, `fetch()` to the outside world and timers each start a host
// operation that returns its number at once; the host later calls the
// component's `resume` export with the outcome, which settles the promise
// the operation was given here. Between the two the object may take other
// events (Cloudflare's input gate; see wit/events.wit).
//
// The events themselves end through `finish-*` imports, called when the
// handler's promise settles, which may be in a later `resume`.

import * as events from "dohost:object/events@0.1.0";
import { startFetch } from "dohost:object/outbound@0.1.0";
import { serializeMessage } from "./clone.js";
import { deserializeMessage } from "./targets.js";
import { CallError } from "./errors.js";
import {
  errorMessage,
  forwardableEvent,
  forwardableOp,
  fromWebRequest,
  fromWebResponse,
  readWebResponse,
  toWebResponse,
} from "./http.js";

/** Operation number -> the settling functions of the promise awaiting it. */
const waiting = new Map();

/** A promise of operation `op`'s outcome. */
export function awaitOp(op) {
  return new Promise((resolve, reject) => waiting.set(op, { resolve, reject }));
}

/** The `resume` export: settles the promise of operation `op`. */
export function resume(op, outcome) {
  const settle = waiting.get(op);
  if (settle === undefined) return;
  waiting.delete(op);
  const { resolve, reject } = settle;
  switch (outcome.tag) {
    case "stub-fetch":
    case "stub-call":
      if (outcome.val.tag === "ok") resolve(outcome.val.val);
      else reject(new CallError(outcome.val.val));
      break;
    case "http":
      if (outcome.val.tag === "ok") resolve(outcome.val.val);
      else reject(fetchError(outcome.val.val));
      break;
    case "slept":
      resolve();
      break;
    case "written":
    case "read":
      if (outcome.val.tag === "ok") resolve(outcome.val.val);
      else reject(new TypeError(outcome.val.val));
      break;
    default:
      reject(new Error(String(outcome.val)));
  }
}

/** What a fetch handler's promise settles to when it answered by number (see answerFetch). */
export const FORWARDED = Symbol("forwarded");

/**
 * Ends event `event` with what `promise` settles to, through `finish`
 * (nothing more once it answered by number: FORWARDED).
 */
export function finishWhen(finish, event, promise) {
  promise.then(
    (value) => value === FORWARDED || finish(event, { tag: "ok", val: value }),
    (error) => finish(event, { tag: "err", val: errorMessage(error) }),
  );
}

/** `fetch()` failed as the web platform's does: a TypeError, naming why. */
function fetchError({ kind, message }) {
  const error = new TypeError(message);
  error.kind = kind;
  return error;
}

/**
 * The global `fetch()`: sends the request through the host, under its
 * egress policy and the event's subrequest limits. The request leaves once
 * the writes made before it are durable.
 */
export async function fetch(input, init) {
  // The signal is checked here (the engine's own throwIfAborted traps; see
  // installGlobals) and its abort handled below, so the Request is made
  // without it.
  const signal = init?.signal ?? (input instanceof Request ? input.signal : undefined);
  if (signal?.aborted) throw signal.reason;
  const request =
    input instanceof Request && init === undefined ? input : new Request(input, init && { ...init, signal: undefined });
  const redirect = init?.redirect ?? request.redirect ?? "follow";
  if (!["follow", "manual", "error"].includes(redirect)) {
    throw new TypeError(`fetch: redirect must be "follow", "manual" or "error", not ${JSON.stringify(redirect)}`);
  }
  const record = await fromWebRequest(request);
  const op = startFetch(record, redirect);
  const fetched = awaitOp(op);
  if (signal) {
    signal.addEventListener("abort", () => {
      const settle = waiting.get(op);
      if (settle === undefined) return;
      waiting.delete(op);
      events.cancel(op);
      settle.reject(signal.reason ?? new DOMException("The operation was aborted.", "AbortError"));
    });
  }
  const { response, url, redirected } = await fetched;
  const web = toWebResponse(response);
  Object.defineProperty(web, "url", { value: url });
  Object.defineProperty(web, "redirected", { value: redirected });
  return web;
}

/** Timer number -> its operation, while it waits. */
const timers = new Map();
let lastTimer = 0;

/**
 * Arms timer `id` for `delay` ms on a host timer; `fire` runs when it is
 * due, unless the timer was cleared or armed again meanwhile.
 */
function arm(id, delay, fire) {
  const ms = Math.max(0, Math.floor(Number(delay) || 0));
  const op = events.startSleep(BigInt(ms));
  timers.set(id, op);
  awaitOp(op).then(() => {
    if (timers.get(id) === op) fire();
  });
}

/** `setTimeout` through a host timer, so the object takes events meanwhile. */
export function setTimeout(callback, delay = 0, ...args) {
  const id = ++lastTimer;
  arm(id, delay, () => {
    timers.delete(id);
    if (typeof callback === "function") callback(...args);
  });
  return id;
}

/** `setInterval` as repeated host timers. */
export function setInterval(callback, delay = 0, ...args) {
  const id = ++lastTimer;
  const tick = () =>
    arm(id, delay, () => {
      tick();
      if (typeof callback === "function") callback(...args);
    });
  tick();
  return id;
}

/** `clearTimeout` and `clearInterval`: gives up the timer's operation. */
export function clearTimeout(id) {
  const op = timers.get(id);
  if (op === undefined) return;
  timers.delete(id);
  waiting.delete(op);
  events.cancel(op);
}

/**
 * Installs `fetch` and the timers as globals, as the Workers runtime has
 * them, and an `AbortSignal.prototype.throwIfAborted` that throws the
 * signal's reason: the engine's own traps (an `unreachable` in
 * StarlingMonkey) instead of throwing.
 */
export function installGlobals() {
  if (typeof AbortSignal === "function") {
    AbortSignal.prototype.throwIfAborted = function throwIfAborted() {
      if (this.aborted) throw this.reason;
    };
  }
  globalThis.fetch = fetch;
  globalThis.setTimeout = setTimeout;
  globalThis.setInterval = setInterval;
  globalThis.clearTimeout = clearTimeout;
  globalThis.clearInterval = clearTimeout;
}

/**
 * Sends a request to an object through its stub handle `raw`: the
 * request an event received, unchanged, by its event's number (the host
 * holds it), any other as a record.
 */
export async function stubFetch(raw, input, init) {
  const event = init === undefined ? forwardableEvent(input) : undefined;
  let op = event === undefined ? undefined : raw.startForward(event);
  if (op === undefined) op = raw.startFetch(await fromWebRequest(input, init));
  return toWebResponse(await awaitOp(op), op);
}

/**
 * Calls RPC method `method` through the stub handle `raw`: the arguments
 * and the result are structured clones (docs/values.md), Requests and
 * Responses with their bodies.
 */
export async function stubCall(raw, method, args) {
  const bytes = await serializeMessage(args);
  return deserializeMessage(await awaitOp(raw.startCall(method, bytes)));
}

/**
 * Ends fetch event `event` with `response`, which `what` returned: by
 * number when it is a stub's response handed on unchanged and the host
 * still holds it (FORWARDED), else the response's record.
 */
export function answerFetch(event, response, what) {
  const op = forwardableOp(response);
  if (op !== undefined && events.finishFetchForward(event, op)) return FORWARDED;
  // A promise only when the body must be read: each one costs ticks.
  return fromWebResponse(response, what) ?? readWebResponse(response);
}

/** `blockConcurrencyWhile`: keeps new events out until `callback` settles. */
export function blockConcurrencyWhile(callback) {
  events.blockConcurrency();
  let result;
  try {
    result = Promise.resolve(callback());
  } catch (e) {
    result = Promise.reject(e);
  }
  return result.then(
    (value) => {
      events.allowConcurrency(undefined);
      return value;
    },
    (error) => {
      events.allowConcurrency(errorMessage(error));
      throw error;
    },
  );
}

export { events };
