// RpcTargets and functions passed by reference over RPC (wit/targets.wit),
// as Cloudflare's Workers RPC passes them: the receiver gets a stub whose
// calls run on the original, in the object that passed it.
//
// An object *lends* a target: the host gives a capability for it, which the
// message carries in its place (docs/values.md). Calls through a stub are
// events of the lending object (`callTarget` in index.js). A stub received
// in a call's arguments is disposed when that call ends, unless the callee
// keeps it with `stub.dup()`; one received in a result lasts until it is
// disposed (`stub[Symbol.dispose]()`, or `using`) or the lending object's
// instance ends.

import * as targets from "dohost:object/targets@0.1.0";
import { RpcTarget } from "./base.js";
import { deserialize, serializeMessage } from "./clone.js";
import { awaitOp } from "./ops.js";

const DISPOSE = Symbol.dispose ?? Symbol.for("dispose");

/** Targets this guest lent, by the number it lent them under. */
const lent = new Map();
/** The number each lent target is kept under. */
const numbers = new Map();
let lastNumber = 0;

/** Stubs this guest received -> their capability. */
const capabilities = new WeakMap();
/** Stubs kept past the call that brought them (`dup()`). */
const kept = new WeakSet();

/**
 * The capability to put in a message for `value`, an RpcTarget or a
 * function: a stub received is passed on as it is; anything else is lent.
 */
export function capabilityOf(value) {
  try {
    const passedOn = capabilities.get(value);
    if (passedOn !== undefined) return targets.copy(passedOn);
    let number = numbers.get(value);
    if (number === undefined) {
      number = ++lastNumber;
      numbers.set(value, number);
      lent.set(number, value);
    }
    return targets.lend(BigInt(number));
  } catch (e) {
    const message = `${value?.constructor?.name ?? "this value"} could not be passed by reference: ${e?.payload ?? e}`;
    throw typeof DOMException === "function" ? new DOMException(message, "DataCloneError") : new TypeError(message);
  }
}

/**
 * Runs a call to the target this guest lent under `number`: a method of an
 * RpcTarget, or a function (`method` empty). `after` runs once it returned.
 */
export async function callLent(number, method, args, after) {
  const target = lent.get(Number(number));
  if (target === undefined) throw new Error("the RpcTarget is gone: the instance that passed it was reset");
  if (typeof target === "function") {
    if (method !== "") throw new Error(`a function passed by reference has no method ${JSON.stringify(method)}`);
    return applyReceived(target, undefined, args, after);
  }
  const fn = target[method];
  if (typeof fn !== "function" || method === "constructor" || method in Object.prototype || method in RpcTarget.prototype) {
    throw new Error(`${target.constructor?.name ?? "the RpcTarget"} has no RPC method ${JSON.stringify(method)}`);
  }
  return applyReceived(fn, target, args, after);
}

/**
 * Calls `fn` on `self` with the RPC arguments `args`, then `after`; the
 * stubs the arguments brought are disposed when it ends, unless kept with
 * `dup()`, as on Cloudflare. The result as an RPC message.
 */
export async function applyReceived(fn, self, args, after) {
  const received = [];
  try {
    const parsed = deserializeMessage(args, received);
    const result = await fn.apply(self, Array.isArray(parsed) ? parsed : [parsed]);
    after?.();
    return await serializeMessage(result);
  } finally {
    disposeReceived(received);
  }
}

/** What a received stub's prototype is: not a plain object. */
class RpcStub {}

// Properties of a stub that are not RPC methods.
const NOT_METHODS = new Set(["then", "toJSON", "constructor"]);

/**
 * A stub for the target behind `capability` (`kind` "function" or
 * "target"), added to `received` when given.
 */
export function stubFor(capability, kind, received) {
  let disposed = false;
  const dispose = () => {
    if (disposed) return;
    disposed = true;
    targets.release(capability);
  };
  const call = async (method, args) => {
    if (disposed) throw new Error("Attempted to use an RPC stub after it was disposed");
    const bytes = await serializeMessage(args);
    return deserializeMessage(await awaitOp(targets.startCall(capability, method, bytes)));
  };
  let stub;
  const dup = () => {
    kept.add(stub);
    return stub;
  };
  if (kind === "function") {
    stub = (...args) => call("", args);
    stub[DISPOSE] = dispose;
    stub.dup = dup;
  } else {
    stub = new Proxy(new RpcStub(), {
      get(_, prop) {
        if (prop === DISPOSE) return dispose;
        if (prop === "dup") return dup;
        if (typeof prop === "symbol" || NOT_METHODS.has(prop)) return undefined;
        return (...args) => call(prop, args);
      },
    });
  }
  capabilities.set(stub, capability);
  received?.push(stub);
  return stub;
}

/** An RPC message's value, its stubs made by `stubFor`. */
export function deserializeMessage(bytes, received) {
  return deserialize(bytes, (capability, kind) => stubFor(capability, kind, received));
}

/** Disposes the stubs a call received, but those it kept (`dup()`). */
function disposeReceived(received) {
  for (const stub of received) if (!kept.has(stub)) stub[DISPOSE]();
}

/** Whether `value` is a stub this guest received. */
export function isStub(value) {
  return capabilities.has(value);
}

