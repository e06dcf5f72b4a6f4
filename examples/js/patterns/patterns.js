// The storage patterns of Cloudflare's Durable Objects documentation, as
// written for Cloudflare (TypeScript types removed, "dohost" in the import
// line), each class bound in dohost.toml and reached over HTTP through the
// entry worker at the end of this file, which calls the classes' RPC methods.
// Lines marked "example:" were added so the pattern can be seen from
// outside (a table to write to, a method to read the result back).
import { DurableObject } from "dohost";

// Schema migration with SQLite's user_version (MIGRATED).
export class MyDurableObject extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;

    // Use SQLite's built-in user_version pragma
    const ver = this.sql.exec("PRAGMA user_version").one()?.user_version || 0;

    if (ver === 0) {
      this.sql.exec(`CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)`);
      this.sql.exec("PRAGMA user_version = 1");
    }
    if (ver === 1) {
      this.sql.exec(`ALTER TABLE users ADD COLUMN email TEXT`);
      this.sql.exec("PRAGMA user_version = 2");
    }
  }

  // example: what the migration left behind.
  schema() {
    return {
      version: this.sql.exec("PRAGMA user_version").one().user_version,
      columns: this.sql.exec("SELECT name FROM pragma_table_info('users')").toArray().map((c) => c.name),
    };
  }

  // example: a row in the migrated table (with an email from version 2 on).
  addUser(name, email) {
    if (email == null) this.sql.exec("INSERT INTO users (name) VALUES (?)", name);
    else this.sql.exec("INSERT INTO users (name, email) VALUES (?, ?)", name, email);
    return this.sql.exec("SELECT * FROM users ORDER BY id").toArray();
  }
}

// In-memory caching in front of storage (USER_CACHE).
export class UserCache extends DurableObject {
  cache = new Map();
  async getUser(id) {
    if (this.cache.has(id)) {
      const cached = this.cache.get(id);
      if (cached) return cached;
    }
    const user = await this.ctx.storage.get(`user:${id}`);
    if (user) this.cache.set(id, user);
    return user;
  }
  async updateUser(id, data) {
    const updated = { ...(await this.getUser(id)), ...data };
    this.cache.set(id, updated);
    await this.ctx.storage.put(`user:${id}`, updated);
    return updated;
  }

  // example: whether the next getUser(id) is answered from memory.
  cached(id) {
    return this.cache.has(id);
  }
}

// Rate limiting with SQL (RATE_LIMITER).
export class RateLimiter extends DurableObject {
  // example: the table and the `sql` field the pattern uses.
  sql = this.ctx.storage.sql;
  constructor(ctx, env) {
    super(ctx, env);
    this.sql.exec("CREATE TABLE IF NOT EXISTS requests (key TEXT, timestamp INTEGER)");
  }

  async checkLimit(key, limit, window) {
    const now = Date.now();
    this.sql.exec('DELETE FROM requests WHERE key = ? AND timestamp < ?', key, now - window);
    const count = this.sql.exec('SELECT COUNT(*) as count FROM requests WHERE key = ?', key).one().count;
    if (count >= limit) return false;
    this.sql.exec('INSERT INTO requests (key, timestamp) VALUES (?, ?)', key, now);
    return true;
  }
}

// Batch processing with alarms (BATCH).
export class BatchProcessor extends DurableObject {
  // example: the table and the `sql` field the pattern uses.
  sql = this.ctx.storage.sql;
  constructor(ctx, env) {
    super(ctx, env);
    this.sql.exec("CREATE TABLE IF NOT EXISTS processed_items (item TEXT, timestamp INTEGER)");
  }

  pending = [];
  async addItem(item) {
    this.pending.push(item);
    if (!await this.ctx.storage.getAlarm()) await this.ctx.storage.setAlarm(Date.now() + 5000);
  }
  async alarm() {
    const items = [...this.pending];
    this.pending = [];
    this.sql.exec(`INSERT INTO processed_items (item, timestamp) VALUES ${items.map(() => "(?, ?)").join(", ")}`, ...items.flatMap(item => [item, Date.now()]));
  }

  // example: what the alarms processed, and what waits for the next one.
  status() {
    return {
      processed: this.sql.exec("SELECT item FROM processed_items ORDER BY rowid").raw().toArray().map(([item]) => item),
      pending: this.pending,
    };
  }
}

// Initialization in the constructor, then writes without awaiting (COUNTER).
export class Counter extends DurableObject {
  value;
  constructor(ctx, env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(async () => { this.value = (await ctx.storage.get("value")) || 0; });
  }
  async increment() {
    this.value++;
    this.ctx.storage.put("value", this.value); // Don't await (output gate protects)
    return this.value;
  }
}

// Parent-child coordination (WORKSPACE owns DOCUMENT objects).
export class Workspace extends DurableObject {
  // example: the table and the `sql` field the pattern uses.
  sql = this.ctx.storage.sql;
  constructor(ctx, env) {
    super(ctx, env);
    this.sql.exec("CREATE TABLE IF NOT EXISTS documents (id TEXT PRIMARY KEY, name TEXT, created INTEGER)");
  }

  async createDocument(name) {
    const docId = crypto.randomUUID();
    const childId = this.env.DOCUMENT.idFromName(`${this.ctx.id.toString()}:${docId}`);
    const childStub = this.env.DOCUMENT.get(childId);
    await childStub.initialize(name);
    this.sql.exec('INSERT INTO documents (id, name, created) VALUES (?, ?, ?)', docId, name, Date.now());
    return docId;
  }
  async listDocuments() {
    return this.sql.exec('SELECT * FROM documents ORDER BY created, rowid').toArray();
  }
}

// A child. Its RPC methods are those of the Rust Document in
// examples/workspace, so either language's Workspace can own either's
// Documents.
export class Document extends DurableObject {
  async initialize(name) {
    const existing = await this.ctx.storage.get("name");
    if (existing !== undefined && existing !== name) {
      throw new Error(`this document is already initialized as ${JSON.stringify(existing)}`);
    }
    if (existing === undefined) {
      await this.ctx.storage.put({ name, created_at: Date.now() });
    }
    return this.describe();
  }
  async describe() {
    const stored = await this.ctx.storage.get(["name", "created_at", "version", "text"]);
    if (!stored.has("name")) throw new Error("this document was never initialized");
    return {
      name: stored.get("name"),
      object_name: this.ctx.id.name ?? null,
      created_at: stored.get("created_at") ?? 0,
      version: stored.get("version") ?? 0,
      text: stored.get("text") ?? "",
    };
  }
  async write(text) {
    const { version } = await this.describe();
    await this.ctx.storage.put({ text, version: version + 1 });
    return version + 1;
  }
}

// Write coalescing: puts with no await between them commit together,
// atomically, when the event ends (ACCOUNTS).
export class Accounts extends DurableObject {
  async transfer(from, to, amount) {
    const balances = await this.ctx.storage.get([`balance:${from}`, `balance:${to}`]);
    const fromBalance = balances.get(`balance:${from}`) ?? 0;
    const toBalance = balances.get(`balance:${to}`) ?? 0;
    if (fromBalance < amount) throw new Error(`${from} has ${fromBalance}, less than ${amount}`);
    this.ctx.storage.put(`balance:${from}`, fromBalance - amount);
    this.ctx.storage.put(`balance:${to}`, toBalance + amount);
    return { [from]: fromBalance - amount, [to]: toBalance + amount };
  }

  // example: money to move around, and the balances.
  async deposit(account, amount) {
    const balance = ((await this.ctx.storage.get(`balance:${account}`)) ?? 0) + amount;
    await this.ctx.storage.put(`balance:${account}`, balance);
    return balance;
  }
  async balances() {
    return Object.fromEntries([...(await this.ctx.storage.list({ prefix: "balance:" }))].map(([k, v]) => [k.slice(8), v]));
  }
}

// Cleanup: deleteAll removes every key (and here the alarm) at once (SESSION).
export class Session extends DurableObject {
  async cleanup() {
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
  }

  // example: something to clean up.
  async remember(key, value) {
    await this.ctx.storage.put(key, value);
    await this.ctx.storage.setAlarm(Date.now() + 3_600_000);
    return (await this.ctx.storage.list()).size;
  }
  async contents() {
    return { keys: Object.fromEntries(await this.ctx.storage.list()), alarm: await this.ctx.storage.getAlarm() };
  }
}

// example: the entry worker. Routes /<pattern>/<object-name>/... to the
// object's RPC methods and answers JSON.
const json = (value, status = 200) => Response.json(value ?? null, { status });

// The Document that the Workspace `workspace` made for `docId`.
function documentOf(env, workspace, docId) {
  const workspaceId = env.WORKSPACE.idFromName(workspace).toString();
  return env.DOCUMENT.get(env.DOCUMENT.idFromName(`${workspaceId}:${docId}`));
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [pattern, name, ...rest] = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const body = ["POST", "PUT"].includes(request.method) ? await request.text() : "";
    const route = `${request.method} ${pattern}${rest.length ? "/" + rest[0] : ""}`;
    if (!name) return json({ error: "use /<pattern>/<object-name>/..." }, 404);
    switch (route) {
      case "GET migration/schema":
        return json(await env.MIGRATED.getByName(name).schema());
      case "POST migration/users": {
        const { name: user, email } = JSON.parse(body);
        return json(await env.MIGRATED.getByName(name).addUser(user, email));
      }
      case "GET users/user": {
        const cache = env.USER_CACHE.getByName(name);
        const from = (await cache.cached(rest[1])) ? "memory" : "storage";
        const user = await cache.getUser(rest[1]);
        return user ? json({ user, from }) : json({ error: `no user ${rest[1]}` }, 404);
      }
      case "PUT users/user":
        return json(await env.USER_CACHE.getByName(name).updateUser(rest[1], JSON.parse(body)));
      case "POST limits/check": {
        const limit = Number(url.searchParams.get("limit") ?? 10);
        const window = Number(url.searchParams.get("window") ?? 60_000);
        const allowed = await env.RATE_LIMITER.getByName(name).checkLimit(rest[1], limit, window);
        return json({ allowed }, allowed ? 200 : 429);
      }
      case "POST batch/items":
        await env.BATCH.getByName(name).addItem(body);
        return json({ queued: body }, 202);
      case "GET batch/status":
        return json(await env.BATCH.getByName(name).status());
      case "POST counter/increment":
        return json(await env.COUNTER.getByName(name).increment());
      case "POST workspaces/documents":
        return json({ id: await env.WORKSPACE.getByName(name).createDocument(body) }, 201);
      case "GET workspaces/documents": {
        if (rest[1] === undefined) return json(await env.WORKSPACE.getByName(name).listDocuments());
        return json(await documentOf(env, name, rest[1]).describe());
      }
      case "PUT workspaces/documents":
        return json({ version: await documentOf(env, name, rest[1]).write(body) });
      case "POST accounts/deposit":
        return json(await env.ACCOUNTS.getByName(name).deposit(rest[1], Number(body)));
      case "POST accounts/transfer": {
        const { from, to, amount } = JSON.parse(body);
        try {
          return json(await env.ACCOUNTS.getByName(name).transfer(from, to, amount));
        } catch (e) {
          return json({ error: e.message }, 409);
        }
      }
      case "GET accounts/balances":
        return json(await env.ACCOUNTS.getByName(name).balances());
      case "PUT session/keys":
        return json({ keys: await env.SESSION.getByName(name).remember(rest[1], body) });
      case "GET session/contents":
        return json(await env.SESSION.getByName(name).contents());
      case "POST session/cleanup":
        await env.SESSION.getByName(name).cleanup();
        return json({ cleaned: true });
    }
    return json({ error: `no route ${request.method} ${url.pathname}` }, 404);
  },
};
