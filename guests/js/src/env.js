// `env`: the configuration's [vars] and Durable Object namespace bindings,
// with ids and stubs as in Cloudflare's Workers runtime.

import { ObjectNamespace } from "dohost:object/namespace@0.1.0";
import { exports as boundClasses, jsonVars, var as getVar, unsupportedBinding } from "dohost:object/env@0.1.0";
import { CallError } from "./errors.js";
import { stubCall, stubFetch } from "./ops.js";

/** Runs a namespace or stub import, turning its `call-error` into a CallError. */
function calling(f) {
  try {
    return f();
  } catch (e) {
    if (e && e.payload && typeof e.payload.message === "string") throw new CallError(e.payload);
    throw e;
  }
}

/** An object's id (Cloudflare's DurableObjectId): 64 hex characters. */
export class DurableObjectId {
  #hex;
  #lookup;
  /**
   * The id `hex`; or, with `hex` undefined, the id `lookup()` returns,
   * asked of the host only when the hex is wanted: `get(idFromName(name))`
   * reaches the object by its name and never needs it.
   */
  constructor(hex, name, lookup) {
    this.#hex = hex;
    this.#lookup = lookup;
    /** The name the id was made from, when it was made from one. */
    this.name = name;
  }
  #id() {
    if (this.#hex === undefined) {
      this.#hex = this.#lookup();
      this.#lookup = undefined;
    }
    return this.#hex;
  }
  toString() {
    return this.#id();
  }
  toJSON() {
    return this.#id();
  }
  equals(other) {
    return other instanceof DurableObjectId && other.#id() === this.#id();
  }
}

/** One binding's namespace (Cloudflare's DurableObjectNamespace). */
export class DurableObjectNamespace {
  #ns;
  #binding;
  constructor(ns, binding) {
    this.#ns = ns;
    this.#binding = binding;
  }
  idFromName(name) {
    name = String(name);
    return new DurableObjectId(undefined, name, () => this.#ns.idFromName(name));
  }
  /** A new id; `options.jurisdiction` is accepted and has no effect (one server). */
  newUniqueId(options) {
    return new DurableObjectId(this.#ns.newUniqueId());
  }
  /** This namespace: a jurisdiction has no effect on one server. */
  jurisdiction(name) {
    return this;
  }
  idFromString(hex) {
    return new DurableObjectId(calling(() => this.#ns.idFromString(String(hex))));
  }
  /**
   * A stub for `id` (an id from this namespace, or its string).
   * `options.locationHint` is accepted and has no effect.
   */
  get(id, options) {
    if (id instanceof DurableObjectId && id.name !== undefined) return this.getByName(id.name);
    const hex = String(id);
    const key = `${this.#binding}\0id\0${hex}`;
    const open = () => calling(() => this.#ns.get(hex));
    // Opened now, so that a malformed id throws here, as in Cloudflare.
    const handle = stubHandle(key, open);
    const stubId = id instanceof DurableObjectId ? id : new DurableObjectId(objectHex(handle));
    return makeStub(key, open, stubId);
  }
  getByName(name, options) {
    name = String(name);
    const key = `${this.#binding}\0name\0${name}`;
    const open = () => this.#ns.getByName(name);
    const handle = stubHandle(key, open);
    return makeStub(key, open, new DurableObjectId(objectHex(handle), name));
  }
}

/** How many of the host's stub handles an instance holds at most (see stubHandle). */
const MAX_STUB_HANDLES = 256;

/** The host's stub handles, by binding and name or id, least recently used first. */
const stubHandles = new Map();

/**
 * The host's stub handle for `key`, opened with `open` when there is none.
 * A handle is a resource in the host's table, and componentize-js's glue
 * never gives one back: the engine runs no FinalizationRegistry callbacks,
 * and the glue unregisters a handle from its registry on every method call
 * anyway. A worker that made a stub per request, as the counter example's does, would
 * hold one more handle on every request. So a stub holds no handle of its
 * own: each call takes one from here, and past MAX_STUB_HANDLES the least
 * recently used is dropped. No JavaScript runs while a host call is
 * running, so no handle is dropped while it is in use.
 */
function stubHandle(key, open) {
  let handle = stubHandles.get(key);
  if (handle !== undefined) {
    stubHandles.delete(key);
  } else {
    handle = { raw: open(), hex: undefined };
    if (stubHandles.size >= MAX_STUB_HANDLES) {
      const [oldest, old] = stubHandles.entries().next().value;
      stubHandles.delete(oldest);
      old.raw[Symbol.dispose ?? Symbol.for("dispose")]();
    }
  }
  stubHandles.set(key, handle);
  return handle;
}

/** The hex id of the object a stub handle reaches, asked of the host once. */
function objectHex(handle) {
  handle.hex ??= handle.raw.id();
  return handle.hex;
}

// Properties of a stub that are not RPC methods.
const NOT_METHODS = new Set(["then", "toJSON", "constructor"]);

/**
 * A stub (Cloudflare's DurableObjectStub) for the object `id`, whose host
 * handle is `stubHandle(key, open)`: `fetch` sends an HTTP request; any
 * other method name calls the object's RPC method of that name with JSON
 * arguments and resolves to its JSON result.
 */
function makeStub(key, open, id) {
  const raw = () => stubHandle(key, open).raw;
  const target = {
    id,
    name: id.name,
    fetch(input, init) {
      return stubFetch(raw(), input, init);
    },
  };
  return new Proxy(target, {
    get(t, prop) {
      if (prop in t) return t[prop];
      if (typeof prop === "symbol" || NOT_METHODS.has(prop)) return undefined;
      return (...args) => stubCall(raw(), prop, args);
    },
  });
}

/**
 * The `env` object: `env.NAME` is the [vars] value NAME when there is one,
 * else the namespace binding NAME, else undefined.
 */
export function makeEnv() {
  return envProxy;
}

/**
 * Cloudflare's `ctx.exports`, where it means something here: for each
 * Durable Object class the configuration binds, its namespace (that of its
 * first binding), as `ctx.exports.Counter`. Other exports (the default
 * entrypoint) are not there.
 */
export const exports = new Proxy(
  {},
  {
    get(_, prop) {
      if (typeof prop !== "string") return undefined;
      const binding = classBindings().get(prop);
      return binding === undefined ? undefined : envProxy[binding];
    },
    has(_, prop) {
      return classBindings().has(prop);
    },
    ownKeys() {
      return [...classBindings().keys()];
    },
    getOwnPropertyDescriptor(target, prop) {
      const value = this.get(target, prop);
      return value === undefined ? undefined : { value, enumerable: true, configurable: true };
    },
  },
);

/** Bound class -> binding, asked of the host once. */
let bound;
function classBindings() {
  bound ??= new Map(boundClasses());
  return bound;
}

const envProxy = newEnv();

function newEnv() {
  const known = new Map();
  return new Proxy(
    {},
    {
      get(_, prop) {
        if (typeof prop === "symbol") return undefined;
        if (!known.has(prop)) known.set(prop, lookup(prop));
        return known.get(prop);
      },
      has(_, prop) {
        if (typeof prop !== "string") return false;
        try {
          return this.get(_, prop) !== undefined;
        } catch {
          return true; // declared, but of a product dohost lacks
        }
      },
    },
  );
}

/** The names of the vars whose values are JSON, asked of the host once. */
let jsonNames;

function lookup(name) {
  const value = getVar(name);
  if (value !== undefined) {
    jsonNames ??= new Set(jsonVars());
    return jsonNames.has(name) ? JSON.parse(value) : value;
  }
  try {
    return new DurableObjectNamespace(ObjectNamespace.open(name), name);
  } catch {
    // A KV namespace, an R2 bucket, ... the configuration declares: an
    // error naming it rather than an undefined that fails further on.
    const why = unsupportedBinding(name);
    if (why !== undefined) throw new Error(why);
    return undefined;
  }
}
