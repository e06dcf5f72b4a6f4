// The "dohost" module of the JavaScript SDK (which "cloudflare:workers"
// also names): its classes, over the runtime types of runtime.d.ts or of
// @cloudflare/workers-types.

// The globals the module exports again, named here: inside the module the
// names are its own.
type DohostWebSocketPair = typeof WebSocketPair;
type DohostWebSocketRequestResponsePair = typeof WebSocketRequestResponsePair;

declare module "dohost" {
  export { DurableObject, RpcTarget, WorkerEntrypoint, env } from "cloudflare:workers";
  export const WebSocketPair: DohostWebSocketPair;
  export const WebSocketRequestResponsePair: DohostWebSocketRequestResponsePair;

  /** A storage call failed; `kind` names the limit or problem. */
  export class StorageError extends Error {
    readonly kind: string;
  }

  /** A SQL statement failed; `code` is SQLite's. */
  export class SqlError extends Error {
    readonly code: string;
  }

  /** A call to another object failed. */
  export class CallError extends Error {
    /** Raised by the callee's own code. */
    readonly remote: boolean;
    /** Repeating the call may succeed. */
    readonly retryable: boolean;
    /** The callee's mailbox was full. */
    readonly overloaded: boolean;
  }
}
