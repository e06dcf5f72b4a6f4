// The reference Counter Durable Object of the side-by-side benchmarks, run
// unchanged by workerd (bench/workerd/run.sh) and by dohost (its
// "cloudflare:workers" import resolves to the dohost SDK), so both run the
// same JavaScript.
// GET /<name>            increments the counter object <name>, durable put, returns the count
// GET /<name>/sql        inserts a row into the object's SQLite table, returns the row count
import { DurableObject } from "cloudflare:workers";

export class Counter extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => {
      this.value = (await ctx.storage.get("value")) || 0;
    });
  }

  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname.endsWith("/sql")) {
      const sql = this.ctx.storage.sql;
      sql.exec("CREATE TABLE IF NOT EXISTS hits(id INTEGER PRIMARY KEY, t INTEGER)");
      sql.exec("INSERT INTO hits(t) VALUES (?)", Date.now());
      return new Response(String(sql.exec("SELECT COUNT(*) AS n FROM hits").one().n));
    }
    this.value++;
    this.ctx.storage.put("value", this.value);
    return new Response(String(this.value));
  }
}

export default {
  async fetch(request, env) {
    const name = new URL(request.url).pathname.split("/")[1] || "my-counter";
    return env.COUNTER.get(env.COUNTER.idFromName(name)).fetch(request);
  },
};
