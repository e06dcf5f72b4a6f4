// Requests and responses between the host's plain records (dohost:object/types)
// and the web's Request and Response, which the engine provides.

const NO_BODY_METHODS = new Set(["GET", "HEAD"]);
const NO_BODY_STATUSES = new Set([101, 204, 205, 304]);

/** The host's request record as a web `Request`. */
export function toWebRequest(req) {
  const init = { method: req.method, headers: req.headers };
  if (!NO_BODY_METHODS.has(req.method) && req.body.length > 0) {
    init.body = req.body;
  }
  return new Request(req.url, init);
}

/** A web `Request` (or what `fetch` takes) as the host's request record. */
export async function fromWebRequest(input, init) {
  const request = input instanceof Request && init === undefined ? input : new Request(input, init);
  const body = NO_BODY_METHODS.has(request.method) ? new Uint8Array(0) : new Uint8Array(await request.arrayBuffer());
  return {
    method: request.method,
    url: request.url,
    headers: [...request.headers],
    body,
  };
}

/** The host's response record as a web `Response`. */
export function toWebResponse(res) {
  const body = NO_BODY_STATUSES.has(res.status) ? null : res.body;
  return new Response(body, { status: res.status, headers: res.headers });
}

/** What a handler returned, which must be a `Response`, as the host's record. */
export async function fromWebResponse(response, what) {
  if (!(response instanceof Response)) {
    throw new TypeError(`${what} must return a Response, not ${describe(response)}`);
  }
  return {
    status: response.status,
    headers: [...response.headers],
    body: new Uint8Array(await response.arrayBuffer()),
  };
}

/** A short description of a value for error messages. */
export function describe(value) {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "an object";
  return typeof value;
}

/**
 * The message the host reports for an error thrown by guest code: the
 * error's message, or what was thrown.
 */
export function errorMessage(error) {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
