import { DurableObject } from "cloudflare:workers";

/** Counts requests, durably: each one adds 1 and answers with the count. */
export class Counter extends DurableObject<Env> {
  async fetch(request: Request): Promise<Response> {
    const value = ((await this.ctx.storage.get<number>("value")) || 0) + 1;
    // The response leaves only once this write is durable.
    await this.ctx.storage.put("value", value);
    return new Response(value.toString());
  }
}

/** The entry worker: every request goes to the counter named "counter". */
export default {
  async fetch(request, env): Promise<Response> {
    return env.COUNTER.getByName("counter").fetch(request);
  },
} satisfies ExportedHandler<Env>;
