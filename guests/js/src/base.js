// The base classes guest code extends, and what both roles (objects and
// entry worker) share. They use no import, so the worker role can load a
// module that defines Durable Object classes too.

/**
 * The base class of a Durable Object class (Cloudflare's `DurableObject`
 * from "cloudflare:workers"): keeps `this.ctx` (the object's state: `id`,
 * `storage`, `blockConcurrencyWhile`) and `this.env` (vars and bindings).
 */
export class DurableObject {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

/**
 * Cloudflare's `RpcTarget`: the base class of objects passed over RPC by
 * reference. dohost cannot pass them yet: one in an RPC argument or result
 * throws a `DataCloneError` that says so.
 */
export class RpcTarget {}

/** The base class of a class-style entry worker (`export default class extends WorkerEntrypoint`). */
export class WorkerEntrypoint {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

/** The exported classes of a module: the Durable Object classes it may run. */
export function exportedClasses(app) {
  return Object.entries(app)
    .filter(([name, value]) => name !== "default" && isClass(value) && !(value.prototype instanceof WorkerEntrypoint))
    .map(([name]) => name);
}

function isClass(value) {
  return typeof value === "function" && /^class[\s{]/.test(Function.prototype.toString.call(value));
}

/**
 * Prepares, at build time, the realm the component's bindings run in.
 * componentize-js runs its import and export glue in a global of its own,
 * whose built-in classes (Promise, Uint8Array, DataView, String, ...)
 * SpiderMonkey creates on first use; left to the first event, that cost
 * about half a millisecond on every activation. `glue` is any import
 * function: its Function constructor evaluates code in that realm.
 */
export function rehearseBindings(glue) {
  try {
    const GlueFunction = Object.getPrototypeOf(glue).constructor;
    const rehearsal = new GlueFunction(`
      void [Promise, Uint8Array, DataView, ArrayBuffer, Map, Symbol, BigInt, FinalizationRegistry,
        Object, Array, String, Number, Boolean, JSON, Error, TypeError, RangeError];
      void ["x".charCodeAt(0), (1).toString(), [].length, Array.isArray([]), Number.isInteger(1),
        BigInt.asIntN(64, 1n), BigInt.asUintN(64, 1n), JSON.stringify({}), globalThis?.process?.env];
      const buffer = new ArrayBuffer(8);
      new DataView(buffer).setUint32(0, 1, true);
      return (async () => {
        await null;
        return new Uint8Array(buffer.slice(0, 4));
      })();
    `);
    rehearsal().catch(() => {});
  } catch {
    // Only a warm-up: an engine without a separate realm, or without the
    // Function constructor, does this work on the first event instead.
  }
}
