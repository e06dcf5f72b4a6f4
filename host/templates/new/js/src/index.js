import { DurableObject } from "cloudflare:workers";

/** Counts requests, durably: each one adds 1 and answers with the count. */
export class Counter extends DurableObject {
  async fetch(request) {
    const value = ((await this.ctx.storage.get("value")) || 0) + 1;
    // The response leaves only once this write is durable.
    await this.ctx.storage.put("value", value);
    return new Response(value.toString());
  }
}

/** The entry worker: every request goes to the counter named "counter". */
export default {
  async fetch(request, env) {
    return env.COUNTER.getByName("counter").fetch(request);
  },
};
