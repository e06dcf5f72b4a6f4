// The dohost JavaScript SDK, as an entry worker sees it (the `worker`
// world): the module's default export handles every request. Classes the
// module also exports are left alone here; they run as objects from the
// `durable-object` build of the same module.

import { var as getVar } from "dohost:object/env@0.1.0";
import { exports, makeEnv } from "./env.js";
import { toWebRequest } from "./http.js";
import { WorkerEntrypoint, rehearseBindings } from "./base.js";
import { answerFetch, events, finishWhen, installGlobals, resume } from "./ops.js";
import { installSocketGlobals } from "./sockets.js";
import { callLent } from "./targets.js";

export { DurableObject, RpcTarget, WorkerEntrypoint } from "./base.js";
export { CallError, SqlError, StorageError } from "./errors.js";
export { DurableObjectId, DurableObjectNamespace } from "./env.js";
export { WebSocket, WebSocketPair, WebSocketRequestResponsePair } from "./sockets.js";

/** `env` as a module export (`import { env } from "cloudflare:workers"`). */
export const env = makeEnv();

/** `ctx` of an entry worker's fetch (Cloudflare's ExecutionContext). */
class ExecutionContext {
  /** Lets `promise` run on after the response, within the request's wall-clock limit. */
  waitUntil(promise) {
    Promise.resolve(promise).catch(() => {});
  }
  passThroughOnException() {}
  /** Cloudflare's `ctx.exports`: the namespace of each bound class (env.js). */
  get exports() {
    return exports;
  }
  /** Cloudflare's `ctx.props`: dohost's requests carry none. */
  get props() {
    return {};
  }
}

/** The `worker-handler` export for the module `app`. */
export function workerHandler(app) {
  const entry = app.default;
  installGlobals();
  installSocketGlobals();
  // At build time, as objectHandler does (see rehearseBindings).
  rehearseBindings(getVar);
  async function run(event, req) {
    const ctx = new ExecutionContext();
    const request = toWebRequest(req, event);
    let response;
    if (typeof entry === "function" && entry.prototype instanceof WorkerEntrypoint) {
      response = await new entry(ctx, env).fetch(request);
    } else if (entry && typeof entry.fetch === "function") {
      response = await entry.fetch(request, env, ctx);
    } else {
      throw new Error("the module's default export has no fetch(request, env, ctx) handler");
    }
    return answerFetch(event, response, "the default export's fetch");
  }
  return {
    fetch(event, req) {
      finishWhen(events.finishFetch, event, run(event, req));
    },
    callTarget(event, target, method, args) {
      finishWhen(events.finishCall, event, callLent(target, method, args));
    },
    resume,
  };
}
