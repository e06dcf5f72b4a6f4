import { DurableObject } from "cloudflare:workers";

export interface Env {
  COUNTER: DurableObjectNamespace<Counter>;
}

/** One counter, kept in the object's storage. */
export class Counter extends DurableObject<Env> {
  async getCounterValue(): Promise<number> {
    return (await this.ctx.storage.get<number>("value")) || 0;
  }

  async increment(amount = 1): Promise<number> {
    let value: number = (await this.ctx.storage.get<number>("value")) || 0;
    value += amount;
    await this.ctx.storage.put("value", value);
    return value;
  }
}

export default {
  async fetch(request, env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/api/counter") {
      const stub = env.COUNTER.getByName("counter");
      const value = request.method === "POST" ? await stub.increment() : await stub.getCounterValue();
      return Response.json({ value });
    }
    return new Response("Not found", { status: 404 });
  },
} satisfies ExportedHandler<Env>;
