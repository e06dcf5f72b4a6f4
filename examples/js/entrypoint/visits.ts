import { DurableObject, WorkerEntrypoint } from "cloudflare:workers";

interface Env {
  VISITS: DurableObjectNamespace<Visits>;
}

const encoder = new TextEncoder();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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

  /** Calls `report` back with the count and the next one: their sum. */
  async tell(report: (count: number) => Promise<number>): Promise<number> {
    const count = this.count();
    return (await report(count)) + (await report(count + 1));
  }

  /** `?watch=N`: N server-sent events with the count, one every 20 ms. */
  async fetch(request: Request): Promise<Response> {
    const times = Number(new URL(request.url).searchParams.get("watch"));
    const { readable, writable } = new TransformStream();
    const writer = writable.getWriter();
    this.ctx.waitUntil(
      (async () => {
        for (let i = 0; i < times; i++) {
          await writer.write(encoder.encode(`event: count\ndata: ${this.count()}\n\n`));
          await sleep(20);
        }
        await writer.close();
      })(),
    );
    return new Response(readable, { headers: { "content-type": "text/event-stream" } });
  }
}

export default class extends WorkerEntrypoint<Env> {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const visits = this.env.VISITS.getByName(url.pathname);
    if (request.method === "GET" && url.searchParams.has("count")) {
      return new Response(`${await visits.count()}`);
    }
    // `?callback`: the object calls back a function the worker passes.
    if (url.searchParams.has("callback")) {
      const told: number[] = [];
      const sum = await visits.tell(async (count: number) => {
        told.push(count);
        return count * 2;
      });
      // ctx.exports reaches the same namespace as env.VISITS.
      const viaExports = await this.ctx.exports.Visits.getByName(url.pathname).count();
      return Response.json({ told, sum, viaExports });
    }
    // The object's own stream, handed on as it is written.
    if (url.searchParams.has("watch")) return visits.fetch(request);
    // `?tick=N`: the worker streams N events itself, visiting between them.
    if (url.searchParams.has("tick")) {
      const times = Number(url.searchParams.get("tick"));
      const body = new ReadableStream({
        async start(controller) {
          for (let i = 1; i <= times; i++) {
            controller.enqueue(encoder.encode(`data: tick ${i}, visit ${await visits.record()}\n\n`));
            await sleep(20);
          }
          controller.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    }
    // The visit is recorded after the response has left.
    this.ctx.waitUntil(visits.record());
    return new Response(`welcome to ${url.pathname}`);
  }
}
