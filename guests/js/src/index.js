// The dohost JavaScript SDK, as Durable Object classes see it. Guest code
// imports from "dohost" where Cloudflare's imports from "cloudflare:workers":
//
//   import { DurableObject } from "dohost";
//
// `dohost build` bundles a module with this SDK and turns it into a
// component: this file's `objectHandler` serves the module's exported
// classes (the `durable-object` world), `worker.js` its default export (the
// `worker` world).

import * as context from "dohost:object/context@0.1.0";
import { DurableObject, exportedClasses, rehearseBindings } from "./base.js";
import { DurableObjectId, exports, makeEnv } from "./env.js";
import { errorMessage, forwardableEvent, toWebRequest } from "./http.js";
import { answerFetch, blockConcurrencyWhile, events, finishWhen, installGlobals, resume } from "./ops.js";
import { rehearseClone } from "./clone.js";
import { applyReceived, callLent } from "./targets.js";
import { DurableObjectStorage, rehearseStorage } from "./storage.js";
import { WebSocket, installSocketGlobals } from "./sockets.js";
import { flushSends, forgetSocket, messageValue, socketHandle, socketMethods } from "./websocket.js";

export { DurableObject, RpcTarget, WorkerEntrypoint } from "./base.js";
export { CallError, SqlError, StorageError } from "./errors.js";
export { DurableObjectId, DurableObjectNamespace } from "./env.js";
export { WebSocket, WebSocketPair, WebSocketRequestResponsePair } from "./sockets.js";

/** `this.ctx` of a Durable Object (Cloudflare's DurableObjectState). */
export class DurableObjectState {
  #id;
  constructor() {
    this.storage = new DurableObjectStorage();
  }

  /** The object's id; `id.name` is the name it was reached by, if any. */
  get id() {
    this.#id ??= new DurableObjectId(context.id(), context.name());
    return this.#id;
  }

  /**
   * Runs `callback` and keeps every other event out of the object until
   * the promise it returns settles (events already running go on). In the
   * constructor, as in Cloudflare, initialisation finishes before any
   * request sees the object. If `callback` throws, the object is reset.
   */
  blockConcurrencyWhile(callback) {
    return blockConcurrencyWhile(callback);
  }

  /**
   * Resets the object: nothing after this call runs, the events it is
   * running fail with an error carrying `reason`, their writes are dropped,
   * and the next event starts a fresh instance on what is durable.
   */
  abort(reason) {
    context.abort(reason === undefined ? undefined : String(reason));
    throw new Error("abort returned");
  }

  /** Cloudflare's `ctx.props`: what the caller passed; dohost's callers pass none. */
  get props() {
    return {};
  }

  /** Cloudflare's `ctx.exports`: the namespace of each bound class (env.js). */
  get exports() {
    return exports;
  }

  /**
   * Lets `promise` run on after the event's response: the object stays in
   * memory while it does, within the event's wall-clock limit.
   */
  waitUntil(promise) {
    Promise.resolve(promise).catch(() => {});
  }
}

/**
 * `env` as a module export (`import { env } from "cloudflare:workers"`):
 * the same vars and bindings as `this.env`, read when first used.
 */
export const env = makeEnv();

/**
 * Objects made at build time and kept, so the engine snapshot keeps their
 * shapes. SpiderMonkey finds the shape of a new object (its prototype and
 * properties) in tables the snapshot's last GC empties of every shape no
 * living object has: left to die, each activation builds again the shapes
 * of `this.ctx`, its storage, the class's instance and the rehearsed
 * requests, about a third of constructing an empty class.
 */
const KEPT = [];

// acceptWebSocket, getWebSockets, getTags, setWebSocketAutoResponse,
// getWebSocketAutoResponse, getWebSocketAutoResponseTimestamp.
Object.assign(DurableObjectState.prototype, socketMethods);

// Methods every object has that are not RPC methods.
const NOT_RPC = new Set(["constructor", "fetch", "alarm", "webSocketMessage", "webSocketClose", "webSocketError"]);

function rpcMethod(instance, className, method) {
  const fn = instance[method];
  const inherited = method in DurableObject.prototype || method in Object.prototype;
  if (typeof fn !== "function" || NOT_RPC.has(method) || method.startsWith("#") || inherited) {
    throw new Error(`class ${className} has no RPC method ${JSON.stringify(method)}`);
  }
  return fn;
}

/**
 * Runs, at build time, the SDK code that needs no host call, so the engine
 * snapshot holds it compiled: SpiderMonkey compiles a function when it
 * first runs, and every activation would otherwise pay for that again.
 */
function rehearse() {
  rehearseBindings(context.id);
  rehearseStorage();
  rehearseClone();
  errorMessage(new TypeError("rehearsal"));
  new DurableObjectId("0".repeat(64), "rehearsal").equals(new DurableObjectId("0".repeat(64)));
  try {
    const request = toWebRequest({ method: "POST", url: "http://rehearsal/", headers: [["a", "b"]], body: new Uint8Array(1) });
    void [request.method, request.url, request.headers.get("a"), new URL(request.url).pathname];
    forwardableEvent(request);
    const response = new Response("rehearsal", { status: 200, headers: { a: "b" } });
    answerFetch(undefined, response, "rehearsal");
    KEPT.push(request, response);
  } catch {
    // Only a warm-up: an engine that cannot build these before it runs
    // builds them on the first request instead.
  }
}

/**
 * The `handler` export for the module `app`: constructs and drives its
 * classes. Each event export starts the handler and returns; the event ends
 * through `finish-*` once the handler's promise settles, in this call or a
 * later `resume` (see ops.js).
 */
export function objectHandler(app) {
  // Computed now, at build time (componentize-js runs the module's top
  // level before it snapshots the engine): reading a class's source to tell
  // classes from functions costs a few hundred microseconds per activation.
  const classes = exportedClasses(app);
  // By name without making the name a property key (an atom) on every
  // activation, as `app[name]` would.
  const classMap = new Map(classes.map((name) => [name, app[name]]));
  installGlobals();
  installSocketGlobals();
  rehearse();
  let instance;
  let className;
  const needs = (method) => {
    if (typeof instance[method] !== "function") throw new Error(`class ${className} has no ${method}() method`);
  };
  const handler = {
    classes() {
      return classes;
    },
    init(name) {
      try {
        const Class = classMap.get(name);
        if (Class === undefined) {
          throw new Error(`this module exports no class ${name}; it exports ${classes.join(", ") || "none"}`);
        }
        className = name;
        instance = new Class(new DurableObjectState(), env);
      } catch (e) {
        throw errorMessage(e);
      }
    },
    fetch(event, req) {
      finishWhen(events.finishFetch, event, runFetch(event, req));
    },
    alarm(event, info) {
      finishWhen(events.finishAlarm, event, runAlarm(info));
    },
    call(event, method, args) {
      finishWhen(events.finishCall, event, runCall(method, args));
    },
    callTarget(event, target, method, args) {
      finishWhen(events.finishCall, event, runTargetCall(target, method, args));
    },
    websocketMessage(event, socket, message) {
      finishWhen(events.finishSocket, event, runSocket("webSocketMessage", socket, [messageValue(message)], false));
    },
    websocketClose(event, socket, code, reason, wasClean) {
      finishWhen(events.finishSocket, event, runSocket("webSocketClose", socket, [code, reason, wasClean], true));
    },
    websocketError(event, socket, error) {
      finishWhen(events.finishSocket, event, runSocket("webSocketError", socket, [new Error(error)], true));
    },
    resume,
  };
  async function runFetch(event, req) {
    needs("fetch");
    const response = await instance.fetch(toWebRequest(req, event));
    flushSends();
    return answerFetch(event, response, `${className}.fetch`);
  }
  async function runAlarm(info) {
    needs("alarm");
    await instance.alarm({ retryCount: info.retryCount, isRetry: info.isRetry });
    flushSends();
  }
  async function runSocket(method, socket, args, ends) {
    const ws = socketHandle(socket);
    if (ends) WebSocket.markClosed(ws);
    try {
      // Only a message needs a handler; a close or an error without one is fine.
      if (typeof instance[method] === "function") await instance[method](ws, ...args);
      else if (!ends) needs(method);
      flushSends();
    } finally {
      if (ends) forgetSocket(socket);
    }
  }
  async function runCall(method, args) {
    const fn = rpcMethod(instance, className, method);
    return applyReceived(fn, instance, args, flushSends);
  }
  function runTargetCall(number, method, args) {
    return callLent(number, method, args, flushSends);
  }
  // The events too, with no object constructed, so that their functions are
  // compiled in the snapshot; each stops at its first check.
  try {
    handler.init("");
  } catch {
    // Expected: the module exports no class "".
  }
  for (const run of [runFetch, runAlarm, runCall]) run().catch(() => {});
  // The shapes of an object's state and of each class's instances (see
  // KEPT): the base constructor only, with the class as `new.target`, so no
  // code of the module runs.
  const state = new DurableObjectState();
  KEPT.push(state);
  for (const name of classes) KEPT.push(Reflect.construct(DurableObject, [state, env], app[name]));
  return handler;
}
