// Values as Cloudflare's structured clone keeps them, in bytes both SDKs
// read: stored values and WebSocket attachments.
//
// A value JSON holds exactly (finite numbers other than -0, strings,
// booleans, null, plain arrays without holes and plain objects, with no
// object reached twice) is written as JSON text, as dohost always wrote
// values: the engine's JSON is native and fast, and Rust's serde_json reads
// it. Any other value is CBOR (RFC 8949) after the self-describe tag 55799
// (bytes d9 d9 f7, which no JSON text starts with), with registered tags
// for what JSON lacks:
//
//   undefined          CBOR undefined (f7)
//   NaN, ±Infinity, -0 float64
//   BigInt             tag 2 / 3, the magnitude's bytes (bignum)
//   Date               tag 1, seconds since 1970 as float64 (NaN if invalid)
//   Map                tag 259, a map with keys of any type
//   Set                tag 258, an array
//   RegExp             tag 21066, [source, flags]
//   ArrayBuffer        a byte string
//   typed arrays       RFC 8746 tags (64 Uint8Array, 69 Uint16Array, ...), a byte string
//   DataView, Error, Boolean/Number/String objects
//                      tag 27, [type name, ...] (Error: [name, message, stack, cause?])
//   Request, Response  (RPC only) tag 27, ["Request", method, url, headers, body]
//                      or ["Response", status, statusText, headers, body]
//   an object reached twice (cycles too)
//                      tag 28 on its first appearance, tag 29 + its number later
//
// Plain objects and class instances are maps with text keys (their own
// enumerable properties); arrays are arrays (holes become undefined).
// Functions and symbols cannot be cloned: DataCloneError, as in the web
// platform. The format is documented in docs/values.md.

import { RpcTarget } from "./base.js";
import { capabilityOf, isStub } from "./targets.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The self-describe tag that marks a CBOR value. */
const MAGIC = [0xd9, 0xd9, 0xf7];

const TAG_DATE = 1;
const TAG_BIGNUM = 2;
const TAG_NEGATIVE_BIGNUM = 3;
const TAG_OBJECT = 27;
const TAG_SHAREABLE = 28;
const TAG_SHARED_REF = 29;
const TAG_SET = 258;
const TAG_MAP = 259;
const TAG_REGEXP = 21066;

/** RFC 8746's tags for typed arrays (little-endian), by constructor name. */
const TYPED_TAGS = {
  Uint8Array: 64,
  Uint8ClampedArray: 68,
  Uint16Array: 69,
  Uint32Array: 70,
  BigUint64Array: 71,
  Int8Array: 72,
  Int16Array: 77,
  Int32Array: 78,
  BigInt64Array: 79,
  Float32Array: 85,
  Float64Array: 86,
};
const TYPED_BY_TAG = new Map(Object.entries(TYPED_TAGS).map(([name, tag]) => [tag, globalThis[name]]));

const ERRORS = ["Error", "EvalError", "RangeError", "ReferenceError", "SyntaxError", "TypeError", "URIError"];

/** The web platform's error for a value that cannot be cloned. */
function cloneError(what) {
  const message = `${what} could not be cloned`;
  return typeof DOMException === "function" ? new DOMException(message, "DataCloneError") : new TypeError(message);
}

/** Whether `value` is written as JSON (see the top of this file). */
function jsonSafe(value, seen) {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(value) && !Object.is(value, -0);
    case "object": {
      if (value === null) return true;
      if (seen.has(value)) return false;
      seen.add(value);
      const proto = Object.getPrototypeOf(value);
      if (proto === Array.prototype) {
        for (let i = 0; i < value.length; i++) {
          if (!(i in value) || !jsonSafe(value[i], seen)) return false;
        }
        return true;
      }
      if (proto !== Object.prototype && proto !== null) return false;
      if ("toJSON" in value) return false;
      for (const key in value) {
        if (Object.hasOwn(value, key) && !jsonSafe(value[key], seen)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/**
 * The bytes of `value` (see the top of this file). A Request or Response in
 * it cannot be cloned, as in storage; RPC uses `serializeMessage`.
 */
export function serialize(value) {
  if (jsonSafe(value, new Set())) return encoder.encode(JSON.stringify(value));
  return cbor(value, undefined);
}

/**
 * `value` as CBOR; `bodies` holds the body of each Request and Response in
 * it, and `lend` is given for a message, which may pass RpcTargets and
 * functions by reference (targets.js).
 */
function cbor(value, bodies, lend) {
  const writer = new Writer();
  writer.raw(MAGIC);
  const refs = sharedObjects(value);
  refs.bodies = bodies;
  refs.lend = lend;
  writer.value(value, refs);
  return writer.finish();
}

const isMessage = (v) =>
  (typeof Request === "function" && v instanceof Request) || (typeof Response === "function" && v instanceof Response);

/**
 * The bytes of an RPC call's arguments or result: as `serialize`, with the
 * bodies of the Requests and Responses in it read first, since a call
 * carries them whole. A value JSON holds has none to read.
 */
export async function serializeMessage(value) {
  if (jsonSafe(value, new Set())) return encoder.encode(JSON.stringify(value));
  return cbor(value, await readBodies(value), capabilityOf);
}

/** The bodies of the Requests and Responses in `value`, at any depth. */
async function readBodies(value) {
  const bodies = new Map();
  const seen = new Set();
  const visit = async (v) => {
    if (typeof v !== "object" || v === null || seen.has(v)) return;
    seen.add(v);
    if (isMessage(v)) {
      bodies.set(v, v.body === null ? null : await v.arrayBuffer());
    } else if (Array.isArray(v) || v instanceof Set) {
      for (const item of v) await visit(item);
    } else if (v instanceof Map) {
      for (const [k, item] of v) {
        await visit(k);
        await visit(item);
      }
    } else if (Object.getPrototypeOf(v) === Object.prototype) {
      for (const key of Object.keys(v)) await visit(v[key]);
    }
  };
  await visit(value);
  return bodies;
}

/**
 * The value of `bytes`, written by `serialize` (or as JSON by any SDK).
 * In an RPC message, `receive(capability, kind)` makes the stub of each
 * target passed by reference.
 */
export function deserialize(bytes, receive) {
  if (bytes.length >= 3 && bytes[0] === MAGIC[0] && bytes[1] === MAGIC[1] && bytes[2] === MAGIC[2]) {
    const reader = new Reader(bytes, 3);
    reader.receive = receive;
    const value = reader.value();
    if (reader.at !== bytes.length) throw new TypeError("a stored value has bytes after its end");
    return value;
  }
  return JSON.parse(decoder.decode(bytes));
}

/** The objects `value` reaches more than once: each gets tag 28. */
function sharedObjects(value) {
  const seen = new Set();
  const shared = new Set();
  const visit = (v) => {
    if (typeof v !== "object" || v === null) return;
    if (seen.has(v)) {
      shared.add(v);
      return;
    }
    seen.add(v);
    if (Array.isArray(v)) {
      for (const item of v) visit(item);
    } else if (v instanceof Map) {
      for (const [k, item] of v) {
        visit(k);
        visit(item);
      }
    } else if (v instanceof Set) {
      for (const item of v) visit(item);
    } else if (v instanceof Error) {
      if ("cause" in v) visit(v.cause);
    } else if (!isMessage(v) && !ArrayBuffer.isView(v) && !(v instanceof ArrayBuffer) && !(v instanceof Date) && !(v instanceof RegExp)) {
      for (const key in v) if (Object.hasOwn(v, key)) visit(v[key]);
    }
  };
  visit(value);
  return { shared, numbers: new Map() };
}

class Writer {
  constructor() {
    this.bytes = new Uint8Array(256);
    this.view = new DataView(this.bytes.buffer);
    this.length = 0;
  }

  reserve(n) {
    if (this.length + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.bytes.subarray(0, this.length));
    this.bytes = bigger;
    this.view = new DataView(bigger.buffer);
  }

  raw(bytes) {
    this.reserve(bytes.length);
    this.bytes.set(bytes, this.length);
    this.length += bytes.length;
  }

  byte(b) {
    this.reserve(1);
    this.bytes[this.length++] = b;
  }

  /** A head: major type `major` with argument `n` (a safe integer). */
  head(major, n) {
    const m = major << 5;
    this.reserve(9);
    if (n < 24) {
      this.bytes[this.length++] = m | n;
    } else if (n < 0x100) {
      this.bytes[this.length++] = m | 24;
      this.bytes[this.length++] = n;
    } else if (n < 0x10000) {
      this.bytes[this.length++] = m | 25;
      this.view.setUint16(this.length, n);
      this.length += 2;
    } else if (n < 0x100000000) {
      this.bytes[this.length++] = m | 26;
      this.view.setUint32(this.length, n);
      this.length += 4;
    } else {
      this.bytes[this.length++] = m | 27;
      this.view.setBigUint64(this.length, BigInt(n));
      this.length += 8;
    }
  }

  tag(n) {
    this.head(6, n);
  }

  float(x) {
    this.reserve(9);
    this.bytes[this.length++] = 0xfb;
    this.view.setFloat64(this.length, x);
    this.length += 8;
  }

  text(s) {
    const bytes = encoder.encode(s);
    this.head(3, bytes.length);
    this.raw(bytes);
  }

  byteString(view) {
    this.head(2, view.byteLength);
    this.raw(new Uint8Array(view.buffer ?? view, view.byteOffset ?? 0, view.byteLength));
  }

  bigint(n) {
    const negative = n < 0n;
    let magnitude = negative ? -1n - n : n;
    const digits = [];
    while (magnitude > 0n) {
      digits.unshift(Number(magnitude & 0xffn));
      magnitude >>= 8n;
    }
    this.tag(negative ? TAG_NEGATIVE_BIGNUM : TAG_BIGNUM);
    this.byteString(new Uint8Array(digits));
  }

  value(v, refs) {
    switch (typeof v) {
      case "undefined":
        return this.byte(0xf7);
      case "boolean":
        return this.byte(v ? 0xf5 : 0xf4);
      case "number":
        if (Number.isSafeInteger(v) && !Object.is(v, -0)) return v >= 0 ? this.head(0, v) : this.head(1, -1 - v);
        return this.float(v);
      case "bigint":
        return this.bigint(v);
      case "string":
        return this.text(v);
      case "object":
        if (v === null) return this.byte(0xf6);
        if (refs.shared.has(v)) {
          const number = refs.numbers.get(v);
          if (number !== undefined) {
            this.tag(TAG_SHARED_REF);
            return this.head(0, number);
          }
          refs.numbers.set(v, refs.numbers.size);
          this.tag(TAG_SHAREABLE);
        }
        return this.object(v, refs);
      case "function":
        if (refs.lend) return this.byReference(v, refs);
        throw cloneError(`function ${v.name || "(anonymous)"}`);
      default:
        throw cloneError(String(v));
    }
  }

  /** An RpcTarget, function or received stub: its capability (targets.js). */
  byReference(v, refs) {
    this.tag(TAG_OBJECT);
    this.head(4, 3);
    this.text("RpcStub");
    this.text(refs.lend(v));
    this.text(typeof v === "function" ? "function" : "target");
  }

  object(v, refs) {
    if (Array.isArray(v)) {
      this.head(4, v.length);
      for (let i = 0; i < v.length; i++) this.value(v[i], refs);
    } else if (v instanceof Date) {
      this.tag(TAG_DATE);
      this.float(v.getTime() / 1000);
    } else if (v instanceof Map) {
      this.tag(TAG_MAP);
      this.head(5, v.size);
      for (const [key, item] of v) {
        this.value(key, refs);
        this.value(item, refs);
      }
    } else if (v instanceof Set) {
      this.tag(TAG_SET);
      this.head(4, v.size);
      for (const item of v) this.value(item, refs);
    } else if (v instanceof RegExp) {
      this.tag(TAG_REGEXP);
      this.head(4, 2);
      this.text(v.source);
      this.text(v.flags);
    } else if (v instanceof ArrayBuffer) {
      this.byteString(new Uint8Array(v));
    } else if (v instanceof DataView) {
      this.tag(TAG_OBJECT);
      this.head(4, 2);
      this.text("DataView");
      this.byteString(v);
    } else if (ArrayBuffer.isView(v)) {
      const tag = TYPED_TAGS[v.constructor.name];
      if (tag === undefined) throw cloneError(v.constructor.name);
      this.tag(tag);
      this.byteString(v);
    } else if (v instanceof Error) {
      const name = ERRORS.includes(v.name) ? v.name : "Error";
      const hasCause = "cause" in v;
      this.tag(TAG_OBJECT);
      this.head(4, hasCause ? 5 : 4);
      this.text("Error");
      this.text(name);
      this.text(String(v.message));
      this.value(typeof v.stack === "string" ? v.stack : undefined, refs);
      if (hasCause) this.value(v.cause, refs);
    } else if (isMessage(v)) {
      if (!refs.bodies?.has(v)) throw cloneError(v.constructor.name);
      const request = v instanceof Request;
      this.tag(TAG_OBJECT);
      this.head(4, 5);
      this.text(request ? "Request" : "Response");
      if (request) {
        this.text(v.method);
        this.text(v.url);
      } else {
        this.value(v.status, refs);
        this.text(v.statusText);
      }
      const headers = [...v.headers];
      this.head(4, headers.length);
      for (const [name, value] of headers) {
        this.head(4, 2);
        this.text(name);
        this.text(value);
      }
      const body = refs.bodies.get(v);
      if (body === null) this.byte(0xf6);
      else this.byteString(new Uint8Array(body));
    } else if (v instanceof Boolean || v instanceof Number || v instanceof String) {
      this.tag(TAG_OBJECT);
      this.head(4, 2);
      this.text(v.constructor.name);
      this.value(v.valueOf(), refs);
    } else if (v instanceof RpcTarget || isStub(v)) {
      if (refs.lend) return this.byReference(v, refs);
      throw cloneError(`${v.constructor?.name ?? "an RPC stub"}, an RpcTarget (only RPC passes one, by reference),`);
    } else if (typeof v.then === "function" || v instanceof WeakMap || v instanceof WeakSet) {
      throw cloneError(v.constructor?.name ?? "this object");
    } else {
      const keys = Object.keys(v);
      this.head(5, keys.length);
      for (const key of keys) {
        this.text(key);
        this.value(v[key], refs);
      }
    }
  }

  finish() {
    return this.bytes.slice(0, this.length);
  }
}

class Reader {
  constructor(bytes, at) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = at;
    /** Tag 28's objects, by number (filled as they are made, for cycles). */
    this.shared = [];
  }

  fail(why) {
    return new TypeError(`a stored value is not valid: ${why} at byte ${this.at}`);
  }

  /** The argument of a head whose low bits are `info`. */
  argument(info) {
    if (info < 24) return info;
    const at = this.at;
    if (info === 24) {
      this.at += 1;
      return this.bytes[at];
    }
    if (info === 25) {
      this.at += 2;
      return this.view.getUint16(at);
    }
    if (info === 26) {
      this.at += 4;
      return this.view.getUint32(at);
    }
    if (info === 27) {
      this.at += 8;
      const n = this.view.getBigUint64(at);
      return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
    }
    throw this.fail(`length or value encoding ${info} (indefinite lengths are not read)`);
  }

  /** The next item; `slot` is the tag-28 number it fills, if any. */
  value(slot) {
    if (this.at >= this.bytes.length) throw this.fail("it ends early");
    const first = this.bytes[this.at++];
    const major = first >> 5;
    const info = first & 0x1f;
    if (major === 7) return this.simple(info, slot);
    const n = this.argument(info);
    switch (major) {
      case 0:
        return this.fill(slot, n);
      case 1:
        return this.fill(slot, typeof n === "bigint" ? -1n - n : -1 - n);
      case 2: {
        // Made here, not sliced from the host's bytes: those may belong to
        // the glue's realm, whose ArrayBuffer is not this one.
        const buffer = new ArrayBuffer(n);
        new Uint8Array(buffer).set(this.bytes.subarray(this.at, this.at + n));
        this.at += n;
        return this.fill(slot, buffer);
      }
      case 3: {
        const text = decoder.decode(this.bytes.subarray(this.at, this.at + n));
        this.at += n;
        return this.fill(slot, text);
      }
      case 4: {
        const array = this.fill(slot, new Array(n));
        for (let i = 0; i < n; i++) array[i] = this.value();
        return array;
      }
      case 5: {
        const object = this.fill(slot, {});
        for (let i = 0; i < n; i++) {
          const key = String(this.value());
          const item = this.value();
          if (key === "__proto__") Object.defineProperty(object, key, { value: item, enumerable: true, writable: true, configurable: true });
          else object[key] = item;
        }
        return object;
      }
      case 6:
        return this.tagged(n, slot);
    }
    throw this.fail(`major type ${major}`);
  }

  fill(slot, value) {
    if (slot !== undefined) this.shared[slot] = value;
    return value;
  }

  simple(info, slot) {
    switch (info) {
      case 20:
        return this.fill(slot, false);
      case 21:
        return this.fill(slot, true);
      case 22:
        return this.fill(slot, null);
      case 23:
        return this.fill(slot, undefined);
      case 25: {
        const half = this.view.getUint16(this.at);
        this.at += 2;
        return this.fill(slot, halfFloat(half));
      }
      case 26: {
        const x = this.view.getFloat32(this.at);
        this.at += 4;
        return this.fill(slot, x);
      }
      case 27: {
        const x = this.view.getFloat64(this.at);
        this.at += 8;
        return this.fill(slot, x);
      }
    }
    throw this.fail(`simple value ${info}`);
  }

  tagged(tag, slot) {
    switch (tag) {
      case TAG_SHAREABLE: {
        const number = this.shared.length;
        this.shared.push(undefined);
        return this.value(number);
      }
      case TAG_SHARED_REF: {
        const number = this.value();
        if (!(number in this.shared)) throw this.fail(`a reference to shared value ${number}, not seen before`);
        return this.shared[number];
      }
      case TAG_DATE:
        return this.fill(slot, new Date(Math.round(this.value() * 1000)));
      case TAG_BIGNUM:
      case TAG_NEGATIVE_BIGNUM: {
        let n = 0n;
        for (const byte of new Uint8Array(this.value())) n = (n << 8n) | BigInt(byte);
        return this.fill(slot, tag === TAG_BIGNUM ? n : -1n - n);
      }
      case TAG_MAP: {
        const first = this.bytes[this.at++];
        if (first >> 5 !== 5) throw this.fail("tag 259 on something other than a map");
        const n = this.argument(first & 0x1f);
        const map = this.fill(slot, new Map());
        for (let i = 0; i < n; i++) {
          const key = this.value();
          map.set(key, this.value());
        }
        return map;
      }
      case TAG_SET: {
        const first = this.bytes[this.at++];
        if (first >> 5 !== 4) throw this.fail("tag 258 on something other than an array");
        const n = this.argument(first & 0x1f);
        const set = this.fill(slot, new Set());
        for (let i = 0; i < n; i++) set.add(this.value());
        return set;
      }
      case TAG_REGEXP: {
        const [source, flags] = this.value();
        return this.fill(slot, new RegExp(source, flags));
      }
      case TAG_OBJECT:
        return this.fill(slot, this.typed(this.value()));
    }
    const Typed = TYPED_BY_TAG.get(tag);
    if (Typed !== undefined) return this.fill(slot, new Typed(this.value()));
    // Another tag: its content, as a reader that does not know it would.
    return this.value(slot);
  }

  /** A tag-27 object from its [type name, ...] array. */
  typed([type, ...args]) {
    switch (type) {
      case "Error": {
        const [name, message, stack, ...cause] = args;
        const Type = globalThis[ERRORS.includes(name) ? name : "Error"];
        const error = cause.length > 0 ? new Type(message, { cause: cause[0] }) : new Type(message);
        if (typeof stack === "string") Object.defineProperty(error, "stack", { value: stack, writable: true, configurable: true });
        return error;
      }
      case "DataView":
        return new DataView(args[0]);
      case "RpcStub": {
        if (this.receive === undefined) throw this.fail("an RPC stub outside an RPC message");
        const [capability, kind] = args;
        return this.receive(capability, kind);
      }
      case "Request": {
        const [method, url, headers, body] = args;
        return new Request(url, { method, headers, body: body ?? undefined });
      }
      case "Response": {
        const [status, statusText, headers, body] = args;
        // These statuses take no body, not even an empty one.
        const nullBody = [101, 204, 205, 304].includes(status);
        return new Response(nullBody ? null : body, { status, statusText, headers });
      }
      case "Boolean":
      case "Number":
      case "String":
        return Object(args[0]);
    }
    throw this.fail(`an object of type ${JSON.stringify(type)}`);
  }
}

/** An IEEE 754 half-precision float's value. */
function halfFloat(half) {
  const exponent = (half >> 10) & 0x1f;
  const fraction = half & 0x3ff;
  const sign = half & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Runs both directions once at build time, so their code is compiled in the snapshot. */
export function rehearseClone() {
  const value = { d: new Date(0), m: new Map([[1, [2n]]]), s: new Set([-0]), u: undefined, b: new Uint8Array(1) };
  value.self = value;
  deserialize(serialize(value));
  deserialize(serialize({ a: [1, "x", null] }));
}
