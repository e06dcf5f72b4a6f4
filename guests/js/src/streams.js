// Streamed response bodies (wit/body.wit): a Response whose body is a
// ReadableStream (a TransformStream's readable side, server-sent events)
// leaves with its head at once, and its chunks follow as the stream yields
// them. A streamed body this guest receives from an object arrives as a
// ReadableStream that reads from the host on demand, and goes on to the
// client unread when the guest returns it as it is.

import * as body from "dohost:object/body@0.1.0";
import { awaitOp } from "./ops.js";

const encoder = new TextEncoder();

/** Streams received from the host -> their body number, until used. */
const received = new WeakMap();

/**
 * The body number for `stream`, a Response's ReadableStream body: the
 * host's own number when the stream came from the host unread, else a new
 * body that this guest writes as the stream yields.
 */
export function bodyNumber(stream) {
  const number = received.get(stream);
  if (number !== undefined && !stream.locked) {
    received.delete(stream);
    return number;
  }
  if (stream.locked) throw new TypeError("the response's body stream is locked: it was read already");
  const opened = body.open();
  pump(stream.getReader(), opened);
  return opened;
}

/** Writes what `reader` yields to body `number`, one chunk at a time. */
async function pump(reader, number) {
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const chunk = bytesOf(value);
      if (chunk.length > 0) await awaitOp(body.startWrite(number, chunk));
    }
    body.close(number, undefined);
  } catch (error) {
    body.close(number, error instanceof Error ? `${error.name}: ${error.message}` : String(error));
    reader.cancel(error).catch(() => {});
  }
}

/** A chunk of a body stream as bytes. */
function bytesOf(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`a response body stream must yield Uint8Array, ArrayBuffer or string chunks, not ${typeof value}`);
}

/** Body `number`, which the host gave this guest, as a ReadableStream. */
export function receivedStream(number) {
  const stream = new ReadableStream(
    {
      async pull(controller) {
        const chunk = await awaitOp(body.startRead(number));
        if (chunk === undefined) controller.close();
        else controller.enqueue(chunk);
      },
      cancel() {
        received.delete(stream);
        body.discard(number);
      },
    },
    { highWaterMark: 0 },
  );
  received.set(stream, number);
  return stream;
}
