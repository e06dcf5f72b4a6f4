import { DurableObject, WorkerEntrypoint } from "cloudflare:workers";

interface Env {
  VISITS: DurableObjectNamespace<Visits>;
}

/** The visits of one path. */
export class Visits extends DurableObject<Env> {
  record(): number {
    const count = (this.ctx.storage.kv.get<number>("count") ?? 0) + 1;
    this.ctx.storage.kv.put("count", count);
    return count;
  }

  count(): number {
    return this.ctx.storage.kv.get<number>("count") ?? 0;
  }
}

export default class extends WorkerEntrypoint<Env> {
  async fetch(request: Request): Promise<Response> {
    const { pathname } = new URL(request.url);
    const visits = this.env.VISITS.getByName(pathname);
    if (request.method === "GET" && new URL(request.url).searchParams.has("count")) {
      return new Response(`${await visits.count()}`);
    }
    // The visit is recorded after the response has left.
    this.ctx.waitUntil(visits.record());
    return new Response(`welcome to ${pathname}`);
  }
}
