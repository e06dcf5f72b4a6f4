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
import { DurableObject, PendingWork, exportedClasses, rehearseBindings } from "./base.js";
import { DurableObjectId, makeEnv } from "./env.js";
import { errorMessage, fromWebResponse, readWebResponse, toWebRequest } from "./http.js";
import { DurableObjectStorage, rehearseStorage } from "./storage.js";

export { DurableObject, WorkerEntrypoint } from "./base.js";
export { CallError, SqlError, StorageError } from "./errors.js";
export { DurableObjectId, DurableObjectNamespace } from "./env.js";

/** `this.ctx` of a Durable Object (Cloudflare's DurableObjectState). */
export class DurableObjectState {
  #work;
  #id;
  /** @internal `work` is the object's PendingWork, which its events wait for. */
  constructor(work) {
    this.#work = work;
    this.storage = new DurableObjectStorage();
  }

  /** The object's id; `id.name` is the name it was reached by, if any. */
  get id() {
    this.#id ??= new DurableObjectId(context.id(), context.name());
    return this.#id;
  }

  /**
   * Runs `callback` and holds every event until it settles. The constructor
   * runs before the object's first event, so initialisation put here (as in
   * Cloudflare) finishes before any request sees the object.
   */
  blockConcurrencyWhile(callback) {
    let result;
    try {
      result = callback();
    } catch (e) {
      result = Promise.reject(e);
    }
    // An async callback's promise is held as it is, not wrapped in another.
    return this.#work.add(Promise.resolve(result));
  }

  /** Accepted as in Cloudflare; the work finishes within the current event. */
  waitUntil(promise) {
    this.#work.add(Promise.resolve(promise).catch(() => {}));
  }
}

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
  errorMessage(new TypeError("rehearsal"));
  new DurableObjectId("0".repeat(64), "rehearsal").equals(new DurableObjectId("0".repeat(64)));
  const work = new PendingWork();
  new DurableObjectState(work).blockConcurrencyWhile(async () => 1);
  if (work.pending) work.settle().catch(() => {});
  try {
    const request = toWebRequest({ method: "POST", url: "http://rehearsal/", headers: [["a", "b"]], body: new Uint8Array(1) });
    void [request.method, request.url, request.headers.get("a"), new URL(request.url).pathname];
    const response = new Response("rehearsal", { status: 200, headers: { a: "b" } });
    fromWebResponse(response, "rehearsal");
  } catch {
    // Only a warm-up: an engine that cannot build these before it runs
    // builds them on the first request instead.
  }
}

/**
 * The `handler` export for the module `app`: constructs and drives its
 * classes. Each event is one function that reports what it throws by its
 * message, and waits for the object's pending work only when there is some,
 * so that the SDK adds few promises to those of the guest's own code (see
 * PendingWork).
 */
export function objectHandler(app) {
  // Computed now, at build time (componentize-js runs the module's top
  // level before it snapshots the engine): reading a class's source to tell
  // classes from functions costs a few hundred microseconds per activation.
  const classes = exportedClasses(app);
  rehearse();
  const work = new PendingWork();
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
        if (!classes.includes(name)) {
          throw new Error(`this module exports no class ${name}; it exports ${classes.join(", ") || "none"}`);
        }
        className = name;
        instance = new app[name](new DurableObjectState(work), makeEnv());
      } catch (e) {
        throw errorMessage(e);
      }
      if (!work.pending) return undefined;
      return work.settle().catch((e) => {
        throw errorMessage(e);
      });
    },
    async fetch(req) {
      try {
        needs("fetch");
        const response = await instance.fetch(toWebRequest(req));
        if (work.pending) await work.settle();
        return fromWebResponse(response, `${className}.fetch`) ?? (await readWebResponse(response));
      } catch (e) {
        throw errorMessage(e);
      }
    },
    async alarm(info) {
      try {
        needs("alarm");
        await instance.alarm({ retryCount: info.retryCount, isRetry: info.isRetry });
        if (work.pending) await work.settle();
      } catch (e) {
        throw errorMessage(e);
      }
    },
    async call(method, args) {
      try {
        const fn = rpcMethod(instance, className, method);
        const parsed = JSON.parse(args);
        const result = await fn.apply(instance, Array.isArray(parsed) ? parsed : [parsed]);
        if (work.pending) await work.settle();
        return JSON.stringify(result ?? null);
      } catch (e) {
        throw errorMessage(e);
      }
    },
  };
  // The events too, with no object constructed, so that their functions are
  // compiled in the snapshot; each stops at its first check.
  try {
    handler.init("");
  } catch {
    // Expected: the module exports no class "".
  }
  for (const event of [handler.fetch, handler.alarm, handler.call]) event().catch(() => {});
  return handler;
}
