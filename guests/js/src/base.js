// The base classes guest code extends. They use no import, so the worker
// role can load a module that defines Durable Object classes too.

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
