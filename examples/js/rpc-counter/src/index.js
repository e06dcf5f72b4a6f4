// Counters named by the `name` query parameter, reached through RPC
// methods, as in Cloudflare's "Build a counter" example.
import { DurableObject } from "cloudflare:workers";

export class Counter extends DurableObject {
  async getCounterValue() {
    return (await this.ctx.storage.get("value")) || 0;
  }

  async increment(amount = 1) {
    const value = ((await this.ctx.storage.get("value")) || 0) + amount;
    // Nothing else runs in this object until the write is done, and the
    // response waits until it is durable.
    await this.ctx.storage.put("value", value);
    return value;
  }

  async decrement(amount = 1) {
    return this.increment(-amount);
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const name = url.searchParams.get("name");
    if (!name) {
      return new Response("Name a counter with the `name` query parameter, for example ?name=A");
    }
    const stub = env.COUNTERS.getByName(name);
    let count;
    switch (url.pathname) {
      case "/increment":
        count = await stub.increment();
        break;
      case "/decrement":
        count = await stub.decrement();
        break;
      case "/":
        count = await stub.getCounterValue();
        break;
      default:
        return new Response("Not found", { status: 404 });
    }
    return new Response(`Durable Object '${name}' count: ${count}`);
  },
};
