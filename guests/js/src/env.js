// `env`: the configuration's [vars] and Durable Object namespace bindings,
// with ids and stubs as in Cloudflare's Workers runtime.

import { ObjectNamespace } from "dohost:object/namespace@0.1.0";
import { var as getVar } from "dohost:object/env@0.1.0";
import { CallError } from "./errors.js";
import { fromWebRequest, toWebResponse } from "./http.js";

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
  constructor(hex, name) {
    this.#hex = hex;
    /** The name the id was made from, when it was made from one. */
    this.name = name;
  }
  toString() {
    return this.#hex;
  }
  toJSON() {
    return this.#hex;
  }
  equals(other) {
    return other instanceof DurableObjectId && other.#hex === this.#hex;
  }
}

/** One binding's namespace (Cloudflare's DurableObjectNamespace). */
export class DurableObjectNamespace {
  #ns;
  constructor(ns) {
    this.#ns = ns;
  }
  idFromName(name) {
    return new DurableObjectId(this.#ns.idFromName(String(name)), String(name));
  }
  newUniqueId() {
    return new DurableObjectId(this.#ns.newUniqueId());
  }
  idFromString(hex) {
    return new DurableObjectId(calling(() => this.#ns.idFromString(String(hex))));
  }
  /** A stub for `id` (an id from this namespace, or its string). */
  get(id) {
    if (id instanceof DurableObjectId && id.name !== undefined) return this.getByName(id.name);
    return makeStub(
      calling(() => this.#ns.get(String(id))),
      id instanceof DurableObjectId ? id : undefined,
    );
  }
  getByName(name) {
    const raw = this.#ns.getByName(String(name));
    return makeStub(raw, new DurableObjectId(raw.id(), String(name)));
  }
}

// Properties of a stub that are not RPC methods.
const NOT_METHODS = new Set(["then", "toJSON", "constructor"]);

/**
 * A stub (Cloudflare's DurableObjectStub): `fetch` sends an HTTP request;
 * any other method name calls the object's RPC method of that name with
 * JSON arguments and resolves to its JSON result.
 */
function makeStub(raw, id) {
  const stubId = id ?? new DurableObjectId(raw.id());
  const target = {
    id: stubId,
    name: stubId.name,
    async fetch(input, init) {
      const request = await fromWebRequest(input, init);
      return toWebResponse(calling(() => raw.fetch(request)));
    },
  };
  return new Proxy(target, {
    get(t, prop) {
      if (prop in t) return t[prop];
      if (typeof prop === "symbol" || NOT_METHODS.has(prop)) return undefined;
      return async (...args) => {
        const result = calling(() => raw.call(prop, JSON.stringify(args)));
        return JSON.parse(result);
      };
    },
  });
}

/**
 * The `env` object: `env.NAME` is the [vars] value NAME when there is one,
 * else the namespace binding NAME, else undefined.
 */
export function makeEnv() {
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
        return typeof prop === "string" && this.get(_, prop) !== undefined;
      },
    },
  );
}

function lookup(name) {
  const value = getVar(name);
  if (value !== undefined) return value;
  try {
    return new DurableObjectNamespace(ObjectNamespace.open(name));
  } catch {
    return undefined;
  }
}
