// `node:crypto` as Workers' nodejs_compat has it, for what objects commonly
// use: hashes and HMAC (over @noble/hashes), random bytes and UUIDs, and a
// constant-time comparison. The Web Crypto API is `crypto.subtle`, as in
// Workers.

import { Buffer } from "buffer";
import { md5, sha1 } from "@noble/hashes/legacy.js";
import { sha224, sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { hmac } from "@noble/hashes/hmac.js";

const HASHES = { md5, sha1, sha224, sha256, sha384, sha512 };

function algorithm(name) {
  const hash = HASHES[String(name).toLowerCase().replace("-", "")];
  if (hash === undefined) throw new Error(`Digest method not supported: ${name}`);
  return hash;
}

/** `data` as bytes: a string in `encoding` (UTF-8 by default), or a buffer or view. */
function bytes(data, encoding) {
  if (typeof data === "string") return Buffer.from(data, encoding ?? "utf8");
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("The data must be a string, a Buffer, a TypedArray, a DataView or an ArrayBuffer");
}

/** A running hash or HMAC (Node's Hash and Hmac). */
class Hash {
  #state;
  constructor(state) {
    this.#state = state;
  }
  update(data, encoding) {
    this.#state.update(bytes(data, encoding));
    return this;
  }
  digest(encoding) {
    const out = Buffer.from(this.#state.digest());
    return encoding === undefined ? out : out.toString(encoding);
  }
  copy() {
    return new Hash(this.#state.clone());
  }
}

export function createHash(name) {
  return new Hash(algorithm(name).create());
}

export function createHmac(name, key) {
  return new Hash(hmac.create(algorithm(name), bytes(key)));
}

export function randomBytes(size) {
  const out = Buffer.alloc(size);
  globalThis.crypto.getRandomValues(out);
  return out;
}

export function randomUUID() {
  return globalThis.crypto.randomUUID();
}

export function getRandomValues(array) {
  return globalThis.crypto.getRandomValues(array);
}

export function timingSafeEqual(a, b) {
  const x = bytes(a);
  const y = bytes(b);
  if (x.length !== y.length) throw new RangeError("Input buffers must have the same byte length");
  let difference = 0;
  for (let i = 0; i < x.length; i++) difference |= x[i] ^ y[i];
  return difference === 0;
}

export function getHashes() {
  return Object.keys(HASHES);
}

export const webcrypto = globalThis.crypto;
export const subtle = globalThis.crypto?.subtle;

export default {
  createHash,
  createHmac,
  randomBytes,
  randomUUID,
  getRandomValues,
  timingSafeEqual,
  getHashes,
  webcrypto,
  subtle,
};
