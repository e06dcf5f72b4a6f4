// What the Workers runtime offers besides the Durable Object API, reached
// the way code written for Cloudflare reaches it: globals (this module
// imports nothing, so `Buffer` and `process` are the injected globals) and
// modules by their bare names, as npm packages require them.
import { Buffer as BareBuffer } from "buffer";
import { randomUUID, getRandomValues, webcrypto } from "node:crypto";

export async function platform() {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode("abc"));
  const controller = new AbortController();
  controller.abort(new Error("stopped"));
  const clone = structuredClone(new Map([[1, new Date(0)]]));
  let thrown;
  try {
    controller.signal.throwIfAborted();
  } catch (e) {
    thrown = e.message;
  }
  return {
    textCoding: new TextDecoder().decode(new TextEncoder().encode("héllo")),
    base64: [btoa("hi"), atob("aGk=")],
    subtleSha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""),
    aborted: [controller.signal.aborted, controller.signal.reason.message, thrown],
    structuredClone: clone instanceof Map && clone.get(1) instanceof Date,
    uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(randomUUID()),
    randomValues: getRandomValues(new Uint8Array(8)).length,
    webcrypto: typeof webcrypto.subtle.digest === "function",
    globalBuffer: Buffer.from("hi").toString("hex"),
    bareBuffer: BareBuffer === Buffer,
    globalProcess: [typeof process.nextTick, JSON.stringify(process.env)],
  };
}
