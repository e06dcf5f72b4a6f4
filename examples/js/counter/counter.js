// The Counter Durable Object and entry worker of Cloudflare's docs, as
// written for Cloudflare: only the import line differs ("dohost" for
// "cloudflare:workers", which dohost also accepts).
import { DurableObject } from "dohost";

export class Counter extends DurableObject {
  async fetch(request) {
    let value = (await this.ctx.storage.get("value")) || 0;
    value++;
    await this.ctx.storage.put("value", value);
    return new Response(value.toString());
  }
}

export default {
  async fetch(request, env) {
    const id = env.COUNTER.idFromName("my-counter");
    const stub = env.COUNTER.get(id);
    return stub.fetch(request);
  },
};
