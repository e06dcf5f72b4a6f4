// A tour of the JavaScript SDK: one route per part of the API, each
// answering JSON with what the calls returned. The tests in
// tests/all/js.rs check every answer; it is also a quick reference.
import assert from "node:assert";
import { Buffer } from "node:buffer";
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { EventEmitter } from "node:events";
import path from "node:path";
import { format, inspect } from "node:util";
import { CallError, DurableObject, RpcTarget, SqlError, StorageError, env as moduleEnv } from "dohost";
import { platform } from "./platform.js";

const json = (value, init) => Response.json(value, init);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const entries = (map) => Object.fromEntries(map);

async function errorAfterAwait() {
  await null;
  return new Error("made here").stack;
}

/** One value with every type structured clone keeps, and a cycle. */
function cloneSample() {
  const shared = { label: "shared" };
  const all = {
    date: new Date(1700000000123),
    invalidDate: new Date(NaN),
    map: new Map([[1, "one"], [{ k: 1 }, [2]]]),
    set: new Set(["x", 2, shared]),
    bigint: 2n ** 100n,
    negativeBigint: -42n,
    buffer: new Uint8Array([1, 2, 3]).buffer,
    bytes: new Uint8Array([4, 5]),
    floats: new Float64Array([0.5, -1.25]),
    ints: new Int32Array([-7, 7]),
    view: new DataView(new Uint8Array([9, 8]).buffer),
    regexp: /ab+c/gi,
    error: new RangeError("out of range", { cause: "because" }),
    nan: NaN,
    infinity: Infinity,
    negativeInfinity: -Infinity,
    negativeZero: -0,
    undefined: undefined,
    holes: [1, , 3],
    nested: { deeper: [{ shared }] },
    shared,
  };
  all.self = all;
  return all;
}

/** Which properties of `v` came back as `cloneSample()` made them. */
function cloneChecks(v) {
  const bytes = (x) => Array.from(new Uint8Array(x.buffer ?? x, x.byteOffset ?? 0, x.byteLength));
  return {
    date: v.date instanceof Date && v.date.getTime() === 1700000000123,
    invalidDate: v.invalidDate instanceof Date && Number.isNaN(v.invalidDate.getTime()),
    map: v.map instanceof Map && v.map.get(1) === "one" && [...v.map.keys()][1].k === 1 && [...v.map.values()][1][0] === 2,
    set: v.set instanceof Set && v.set.has("x") && v.set.has(2) && v.set.size === 3,
    bigint: v.bigint === 2n ** 100n && v.negativeBigint === -42n,
    buffer: v.buffer instanceof ArrayBuffer && bytes(v.buffer).join() === "1,2,3",
    typedArrays:
      v.bytes instanceof Uint8Array && bytes(v.bytes).join() === "4,5" &&
      v.floats instanceof Float64Array && v.floats[1] === -1.25 &&
      v.ints instanceof Int32Array && v.ints[0] === -7,
    dataView: v.view instanceof DataView && v.view.getUint8(1) === 8,
    regexp: v.regexp instanceof RegExp && v.regexp.source === "ab+c" && v.regexp.flags === "gi",
    error: v.error instanceof RangeError && v.error.message === "out of range" && v.error.cause === "because",
    numbers: Number.isNaN(v.nan) && v.infinity === Infinity && v.negativeInfinity === -Infinity && Object.is(v.negativeZero, -0),
    undefined: "undefined" in v && v.undefined === undefined,
    holes: v.holes.length === 3 && v.holes[1] === undefined && v.holes[2] === 3,
    sharedReferences: v.shared === v.nested.deeper[0].shared && v.set.has(v.shared),
    cycle: v.self === v,
  };
}

export class Api extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    // Objects with these names show how a failed construction is reported.
    if (ctx.id.name === "refuses") throw new Error("refused in the constructor");
    // Runs before the first event: every activation counts itself.
    ctx.blockConcurrencyWhile(async () => {
      if (ctx.id.name === "refuses-later") throw new Error("refused in blockConcurrencyWhile");
      this.activations = ((await ctx.storage.get("activations")) ?? 0) + 1;
      await ctx.storage.put("activations", this.activations);
    });
  }

  async fetch(request) {
    const url = new URL(request.url);
    const route = url.pathname.split("/").filter(Boolean)[0] ?? "";
    const handler = this[`route_${route}`];
    if (typeof handler !== "function") return new Response(`no route ${url.pathname}`, { status: 404 });
    return handler.call(this, request, url);
  }

  // env.NAME: a [vars] value, a namespace, nothing, or an error naming a
  // binding the configuration declares for a product dohost lacks.
  async route_env(request, url) {
    const name = url.searchParams.get("name");
    try {
      const value = this.env[name];
      const plain = ["string", "number", "boolean"].includes(typeof value) || Object.getPrototypeOf(value ?? 0) === Object.prototype;
      return json({ type: typeof value, value: plain ? value : undefined, has: name in this.env });
    } catch (e) {
      return json({ error: e.message, has: name in this.env });
    }
  }

  // Structured clone: values JSON cannot hold go through storage and come
  // back as they were (?write=1 stores them first; without it they are read
  // from an earlier event, or after a restart). "for-rust" is read by a
  // Rust object in the tests.
  async route_clone(request, url) {
    const s = this.ctx.storage;
    if (url.searchParams.has("write")) {
      const all = cloneSample();
      await s.put("all", all);
      await s.put({ undefined: undefined, negativeZero: -0, big: -(2n ** 70n) });
      await s.put("for-rust", {
        date: new Date(1700000000123),
        map: new Map([["a", 1], ["b", 2]]),
        numbers: new Map([[7, "seven"]]),
        set: new Set([3, 1, 2]),
        big: 12345678901234567890n,
        bytes: new Uint8Array([1, 2, 3]).buffer,
        pixels: new Uint8Array([255, 0]),
        missing: undefined,
        nan: NaN,
        negativeZero: -0,
        pattern: /a+b/g,
        error: new TypeError("bad input"),
      });
    }
    const back = await s.get("all");
    const many = await s.get(["undefined", "negativeZero", "big"]);
    // The same values through RPC, both ways, and Requests and Responses.
    const peer = this.env.API.getByName(`${this.ctx.id.name}-peer`);
    const response = await peer.respond(202);
    const asked = new Request("http://peer/asked?x=1", { method: "POST", headers: { "x-asked": "please" }, body: "question" });
    return json({
      checks: cloneChecks(back),
      many: [many.has("undefined") && many.get("undefined") === undefined, Object.is(many.get("negativeZero"), -0), many.get("big") === -(2n ** 70n)],
      rpcArguments: await peer.checks(cloneSample()),
      rpcResult: cloneChecks(await peer.echo(cloneSample())),
      rpcUndefined: (await peer.nothing()) === undefined,
      rpcResponse: [response instanceof Response, response.status, response.headers.get("x-answer"), await response.text()],
      rpcRequest: await peer.readRequest(asked),
    });
  }

  // The node: modules of nodejs_compat that objects commonly use.
  async route_node() {
    const emitter = new EventEmitter();
    let heard;
    emitter.on("note", (value) => (heard = value));
    emitter.emit("note", "heard");
    let assertion;
    try {
      assert.deepStrictEqual({ a: [1] }, { a: [2] });
    } catch (e) {
      assertion = e.name;
    }
    const key = randomBytes(16);
    return json({
      base64: Buffer.from("hello, world").toString("base64"),
      hex: Buffer.from([1, 2, 255]).toString("hex"),
      sha256: createHash("sha256").update("abc").digest("hex"),
      sha1: createHash("sha1").update(Buffer.from("abc")).digest("base64"),
      hmac: createHmac("sha256", "key").update("The quick brown fox jumps over the lazy dog").digest("hex"),
      randomBytes: key.length,
      timingSafeEqual: timingSafeEqual(key, Buffer.from(key)),
      heard,
      assertion,
      format: format("%s has %d items", "cart", 3),
      inspect: inspect({ nested: { list: [1, 2] } }),
      join: path.join("/a/b", "../c", "d.txt"),
      extname: path.extname("photo.tar.gz"),
      globalBuffer: typeof Buffer.isBuffer === "function" && Buffer.isBuffer(Buffer.alloc(1)),
    });
  }

  // Storage options, ids by string and unique, a stub's name, and the
  // runtime's globals (platform.js).
  async route_options() {
    const s = this.ctx.storage;
    await s.put("option", 1, { allowUnconfirmed: true, noCache: true });
    const read = await s.get("option", { noCache: true, allowConcurrency: true });
    await s.sync();
    const ns = this.env.API;
    const unique = ns.newUniqueId();
    const byString = ns.get(ns.idFromString(unique.toString()));
    return json({
      read,
      uniqueIdsMatch: ns.get(unique).id.equals(unique) && byString.id.equals(unique),
      uniqueAnswers: await byString.add(2, 3),
      stubName: ns.getByName("named").name,
      moduleEnv: moduleEnv.GREETING,
      platform: await platform(),
    });
  }

  // A streamed body: ?n= server-sent events, one every ?ms=, each after a
  // storage write it reports; the client gets each event as it is written.
  // How the stream ended goes to storage ("closed", or the error its writer
  // saw when the client left): /stream-end reads it.
  async route_stream(request, url) {
    const n = Number(url.searchParams.get("n") ?? 3);
    const ms = Number(url.searchParams.get("ms") ?? 10);
    const storage = this.ctx.storage;
    await storage.delete("stream-end");
    const { readable, writable } = new TransformStream();
    const writer = writable.getWriter();
    const encoder = new TextEncoder();
    (async () => {
      try {
        for (let i = 1; i <= n; i++) {
          await storage.put("streamed", i);
          await writer.write(encoder.encode(`id: ${i}\ndata: ${JSON.stringify({ i, stored: await storage.get("streamed") })}\n\n`));
          await sleep(ms);
        }
        await writer.close();
        await storage.put("stream-end", "closed");
      } catch (e) {
        await storage.put("stream-end", `${e.name}: ${e.message}`);
      }
    })();
    return new Response(readable, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
  }

  async route_stream_end() {
    return json({ end: (await this.ctx.storage.get("stream-end")) ?? null, streamed: (await this.ctx.storage.get("streamed")) ?? null });
  }

  // Another object's streamed body: handed on unread (the client reads it
  // as that object writes it), or read here with ?read.
  async route_handon(request, url) {
    const peer = this.env.API.getByName(`${this.ctx.id.name}-peer`);
    const response = await peer.fetch(`http://peer/stream?n=${url.searchParams.get("n") ?? 3}&ms=5`);
    if (!url.searchParams.has("read")) return response;
    const reader = response.body.getReader();
    const chunks = [];
    for (let next = await reader.read(); !next.done; next = await reader.read()) chunks.push(new TextDecoder().decode(next.value));
    return json({ type: response.headers.get("content-type"), chunks: chunks.length, text: chunks.join("") });
  }

  // A ReadableStream with a pull source that fails after two chunks: the
  // client's connection is cut, never a body that looks whole.
  async route_stream_fails() {
    let sent = 0;
    const stream = new ReadableStream({
      pull(controller) {
        if (sent++ < 2) controller.enqueue(`chunk ${sent}\n`);
        else controller.error(new Error("the source broke"));
      },
    });
    return new Response(stream);
  }

  // RpcTargets and functions by reference, as Workers RPC passes them: a
  // peer returns a Counter (an RpcTarget) whose methods run in the peer; a
  // function passed to the peer runs here when the peer calls it (A → B →
  // A); a stub received as an argument is disposed when the call ends unless
  // kept with dup(); a disposed stub throws; storage refuses an RpcTarget.
  async route_targets() {
    const peer = this.env.API.getByName(`${this.ctx.id.name}-peer`);
    const counter = await peer.makeCounter(10);
    const counted = [await counter.increment(2), await counter.increment(3)];
    let calls = 0;
    const triple = (x) => {
      calls++;
      return x * 3;
    };
    const tripled = await peer.applyTwice(triple, 2);
    const failure = (e) => `${e.name}: ${e.message}`;
    await peer.keep((x) => `kept ${x}`, false);
    const dropped = await peer.callKept("a").catch(failure);
    await peer.keep((x) => `kept ${x}`, true);
    const kept = await peer.callKept("b");
    counter[Symbol.dispose]();
    const disposed = await counter.increment(1).catch(failure);
    const stored = await this.ctx.storage.put("target", new Counter(0, "none")).then(() => "stored", failure);
    const echoed = await peer.echo(triple).then((f) => f(5));
    // A target goes with the instance that lent it.
    const second = await peer.makeCounter(0);
    await peer.reset().catch(() => {});
    const afterReset = await second.increment(1).catch(failure);
    return json({ counted, tripled, calls, dropped, kept, disposed, stored, echoed, afterReset });
  }

  // WebSockets with hibernation: accepted with the tags of ?tag=, answered
  // by webSocketMessage below; "ping" is answered by the host.
  async route_socket(request, url) {
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server, url.searchParams.getAll("tag"));
    this.ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
    return new Response(null, { status: 101, webSocket: client });
  }
  async webSocketMessage(ws, message) {
    if (message instanceof ArrayBuffer) {
      ws.send(new Uint8Array(message).reverse());
    } else if (message === "info") {
      const tags = this.ctx.getTags(ws);
      ws.send(
        JSON.stringify({
          tags,
          sameTag: this.ctx.getWebSockets(tags[0]).length,
          all: this.ctx.getWebSockets().length,
          autoResponse: [this.ctx.getWebSocketAutoResponse()?.request, this.ctx.getWebSocketAutoResponse()?.response],
          pinged: this.ctx.getWebSocketAutoResponseTimestamp(ws) instanceof Date,
          closes: (await this.ctx.storage.get("socket-closes")) ?? [],
          errors: (await this.ctx.storage.get("socket-errors")) ?? [],
        }),
      );
    } else if (message === "close") {
      ws.close(4001, "asked to");
    }
  }
  async webSocketError(ws, error) {
    const errors = (await this.ctx.storage.get("socket-errors")) ?? [];
    await this.ctx.storage.put("socket-errors", [...errors, error instanceof Error && error.message]);
  }
  async webSocketClose(ws, code, reason, wasClean) {
    const closes = (await this.ctx.storage.get("socket-closes")) ?? [];
    await this.ctx.storage.put("socket-closes", [...closes, [code, reason, wasClean]]);
  }

  // fetch()'s failures, each a TypeError whose kind says why, and its signal.
  async route_fetcherrors() {
    const failure = async (input, init) => {
      try {
        await fetch(input, init);
        return "fetched";
      } catch (e) {
        return { name: e.name, kind: e.kind ?? null };
      }
    };
    return json({
      refused: await failure("http://127.0.0.1:9/private"),
      invalid: await failure("ftp://example.com/file"),
      aborted: await failure("https://example.com/", { signal: AbortSignal.abort(new DOMException("stopped", "AbortError")) }),
    });
  }

  // ctx.storage.kv: the synchronous KV API, over the same keys.
  async route_synckv() {
    const kv = this.ctx.storage.kv;
    kv.put("sync:a", { n: 1 });
    kv.put("sync:b", new Map([["x", 2]]));
    await this.ctx.storage.put("sync:c", 3);
    const listed = [...kv.list({ prefix: "sync:" })].map(([key, value]) => [key, value instanceof Map ? [...value] : value]);
    return json({
      get: kv.get("sync:a"),
      asyncGet: await this.ctx.storage.get("sync:a"),
      missing: kv.get("sync:none") === undefined,
      listed,
      deleted: [kv.delete("sync:c"), kv.delete("sync:c")],
    });
  }

  // ctx.abort(reason): the object resets; the writes of this event are
  // dropped and the next event constructs it again (see activations).
  async route_abort(request, url) {
    await this.ctx.storage.put("written-before-abort", true);
    this.ctx.abort(url.searchParams.get("reason") ?? undefined);
    return json({ unreachable: true });
  }

  // What an object is and how it was constructed.
  async route_self() {
    const ns = this.env.API;
    return json({
      activations: this.activations,
      writtenBeforeAbort: (await this.ctx.storage.get("written-before-abort")) ?? false,
      props: this.ctx.props,
      jurisdictionSameIds: ns.jurisdiction("eu").idFromName("x").equals(ns.idFromName("x")),
      locationHint: await ns.get(ns.idFromName("hinted"), { locationHint: "enam" }).fetch("http://api/echo").then((r) => r.status),
      uniqueInJurisdiction: /^[0-9a-f]{64}$/.test(ns.newUniqueId({ jurisdiction: "eu" }).toString()),
      // ctx.exports: the namespace of each bound class.
      exports: Object.keys(this.ctx.exports),
      exportsIsEnv: this.ctx.exports.Api === ns && this.ctx.exports.Nothing === undefined,
    });
  }

  // The request handed on to another object as it came, and its response
  // handed back: the host passes both on by number unless they changed
  // (`?set` changes the request's headers, `?mark` the response's).
  async route_passon(request, url) {
    if (this.ctx.id.name !== "tour") return this.route_echo(request, url);
    if (url.searchParams.has("set")) request.headers.set("x-custom", "set on the way");
    const response = await this.env.API.getByName("passon-peer").fetch(request);
    if (url.searchParams.has("mark")) response.headers.set("x-handed-on", "yes");
    return response;
  }

  // Request, URL, Headers and Response.
  async route_echo(request, url) {
    return json(
      {
        method: request.method,
        path: url.pathname,
        query: entries(url.searchParams),
        contentType: request.headers.get("CONTENT-TYPE"),
        custom: request.headers.get("x-custom"),
        body: await request.text(),
      },
      { status: 201, headers: { "x-echo": "yes" } },
    );
  }

  // Text beyond ASCII through storage and back, in a body.
  async route_text(request) {
    const s = this.ctx.storage;
    const key = "ключ 🔑";
    await s.put(key, `${await request.text()} ✓`);
    const [[stored, value]] = await s.list({ prefix: "ключ" });
    await s.delete(key);
    return new Response(`${stored} = ${value} ☃`);
  }

  // A subclass of Response, and one whose body was read before it returned.
  async route_responses(request, url) {
    if (url.searchParams.has("read")) {
      const response = new Response("read already");
      await response.text();
      return response;
    }
    class Teapot extends Response {
      constructor() {
        super("short and stout", { status: 418 });
      }
    }
    return new Teapot();
  }

  // Who the object is, and what the constructor did.
  async route_whoami() {
    return json({
      id: this.ctx.id.toString(),
      name: this.ctx.id.name ?? null,
      activations: this.activations,
      greeting: this.env.GREETING ?? null,
      missing: this.env.NO_SUCH_THING ?? null,
    });
  }

  // The KV API: single and many keys, list options, deletes.
  async route_kv() {
    const s = this.ctx.storage;
    await s.put("n", 42);
    await s.put({ "a:1": "one", "a:2": { nested: [1, 2, { deep: true }] }, "a:3": null, "b:1": false });
    const out = {
      one: await s.get("n"),
      absent: (await s.get("nope")) ?? "undefined",
      many: entries(await s.get(["a:1", "a:3", "nope", "b:1"])),
      all: [...(await s.list()).keys()],
      prefix: entries(await s.list({ prefix: "a:" })),
      range: [...(await s.list({ start: "a:2", end: "b:1" })).keys()],
      startAfter: [...(await s.list({ startAfter: "a:2", limit: 1 })).keys()],
      reverse: [...(await s.list({ reverse: true, limit: 2 })).keys()],
      deleted: await s.delete("n"),
      deletedAgain: await s.delete("n"),
      deletedMany: await s.delete(["a:1", "a:2", "nope"]),
    };
    out.after = [...(await s.list()).keys()];
    return json(out);
  }

  // Transactions: committed, thrown and rolled back.
  async route_transaction() {
    const s = this.ctx.storage;
    await s.put("balance", 100);
    const committed = await s.transaction(async (txn) => {
      await txn.put("balance", (await txn.get("balance")) - 30);
      return "committed";
    });
    let thrown;
    try {
      await s.transaction(async (txn) => {
        await txn.put("balance", 0);
        throw new Error("changed my mind");
      });
    } catch (e) {
      thrown = e.message;
    }
    await s.transaction(async (txn) => {
      await txn.put("balance", -1);
      txn.rollback();
    });
    const sync = s.transactionSync(() => "sync result");
    return json({ committed, thrown, sync, balance: await s.get("balance") });
  }

  // SQL: bindings of every type, the cursor's ways of reading, errors.
  async route_sql() {
    const sql = this.ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, n)");
    sql.exec("DELETE FROM t");
    const insert = sql.exec(
      "INSERT INTO t (id, i, r, s, b, n) VALUES (?, ?, ?, ?, ?, ?), (2, ?, 0.5, 'two', NULL, NULL)",
      1, 9007199254740993n, 2.25, "héllo", new Uint8Array([0, 1, 255]), null, -7,
    );
    const rows = sql.exec("SELECT * FROM t ORDER BY id").toArray();
    const cursor = sql.exec("SELECT id, s FROM t ORDER BY id");
    const iterated = [];
    for (const row of cursor) iterated.push(row.s);
    let none;
    try {
      sql.exec("SELECT * FROM t WHERE id = 99").one();
    } catch (e) {
      none = e.message;
    }
    let constraint;
    try {
      sql.exec("INSERT INTO t (id) VALUES (1)");
    } catch (e) {
      constraint = { isSqlError: e instanceof SqlError, code: e.code, message: e.message };
    }
    const counted = sql.exec("SELECT * FROM t");
    counted.toArray();
    return json({
      written: insert.rowsWritten,
      rows: rows.map((r) => ({ ...r, i: typeof r.i === "bigint" ? `${r.i}n` : r.i, b: r.b && [...new Uint8Array(r.b)] })),
      columnNames: cursor.columnNames,
      iterated,
      raw: sql.exec("SELECT id, s FROM t ORDER BY id").raw().toArray(),
      one: sql.exec("SELECT COUNT(*) AS c FROM t").one(),
      none,
      constraint,
      rowsRead: counted.rowsRead,
      databaseSize: sql.databaseSize > 0,
    });
  }

  // Point-in-time recovery (needs `[storage] history` in dohost.toml), as
  // Cloudflare documents it: POST ?write=N writes a state and answers its
  // bookmark; GET reads the state; POST ?restore=BOOKMARK asks for the
  // restore and answers the bookmark that undoes it; POST ?abort restarts
  // the object, which then starts on the restored state.
  async route_pitr(request, url) {
    const s = this.ctx.storage;
    s.sql.exec("CREATE TABLE IF NOT EXISTS pitr (n INTEGER)");
    if (url.searchParams.has("write")) {
      const n = Number(url.searchParams.get("write"));
      await s.put("pitr", n);
      s.sql.exec("INSERT INTO pitr VALUES (?)", n);
      await s.setAlarm(4_000_000_000_000 + n);
      const bookmark = await s.getCurrentBookmark();
      const forNow = await s.getBookmarkForTime(Date.now() + 60_000);
      return json({ bookmark, forNow });
    }
    if (url.searchParams.has("restore")) {
      return json({ undo: await s.onNextSessionRestoreBookmark(url.searchParams.get("restore")) });
    }
    if (url.searchParams.has("abort")) this.ctx.abort("restoring");
    return json({
      value: (await s.get("pitr")) ?? null,
      rows: s.sql.exec("SELECT n FROM pitr ORDER BY n").toArray().map((r) => r.n),
      alarm: await s.getAlarm(),
    });
  }

  // The alarm, which this object records when it fires.
  async route_alarm(request, url) {
    const s = this.ctx.storage;
    if (request.method === "POST") {
      await s.setAlarm(new Date(Date.now() + Number(url.searchParams.get("in") ?? 0)));
    } else if (request.method === "DELETE") {
      await s.deleteAlarm();
    }
    return json({ alarm: await s.getAlarm(), fired: (await s.get("fired")) ?? 0, info: (await s.get("alarmInfo")) ?? null });
  }
  async alarm(info) {
    await this.ctx.storage.put("fired", ((await this.ctx.storage.get("fired")) ?? 0) + 1);
    await this.ctx.storage.put("alarmInfo", info);
  }

  // Errors the storage API throws.
  async route_errors() {
    const errors = {};
    try {
      await this.ctx.storage.put("big", "x".repeat(200_000));
    } catch (e) {
      errors.tooLarge = { isStorageError: e instanceof StorageError, kind: e.kind, message: e.message };
    }
    try {
      await this.ctx.storage.put("function", { run() {} });
    } catch (e) {
      errors.function = { name: e.name, message: e.message };
    }
    return json(errors);
  }

  // Stubs: ids, RPC to another object, its errors, fetch to it.
  async route_stubs() {
    const ns = this.env.API;
    const unique = ns.newUniqueId();
    const other = ns.get(ns.idFromName("other"));
    const out = {
      uniqueIsHex: /^[0-9a-f]{64}$/.test(unique.toString()),
      roundTrip: ns.idFromString(unique.toString()).equals(unique),
      sameName: ns.idFromName("x").equals(ns.idFromName("x")),
      sum: await other.add(2, 3),
      structured: await other.describe({ list: [1, 2], text: "t" }),
      otherFetch: await (await other.fetch("http://api/echo?from=stub", { method: "POST", body: "hi" })).json(),
    };
    // More stubs than the SDK keeps host handles for at once (256): the
    // oldest handles are given back, and a stub whose handle went takes a
    // new one on its next call.
    const many = [];
    for (let i = 0; i < 300; i++) many.push(ns.get(ns.idFromName(`many-${i}`)));
    out.manyIds = new Set(many.map((stub) => stub.id.toString())).size;
    out.sumAfterMany = await other.add(20, 22);
    try {
      await other.noSuchMethod();
    } catch (e) {
      out.unknown = { isCallError: e instanceof CallError, remote: e.remote, message: e.message };
    }
    try {
      await other.fail("on purpose");
    } catch (e) {
      out.thrown = { remote: e.remote, message: e.message };
    }
    try {
      ns.idFromString("not-an-id");
    } catch (e) {
      out.badId = e.message;
    }
    return json(out);
  }

  // An error's stack names the functions it was made in. Frames of the
  // callers that awaited them ("async*") are not recorded: the engine
  // records async stacks only under a debugger, as Firefox does.
  async route_stack() {
    await null;
    return new Response(await errorAfterAwait());
  }

  // An exception from the object's code: a 500 that names it.
  async route_throw() {
    throw new TypeError("thrown from fetch");
  }

  // Everything is gone: keys, SQL, alarm.
  async route_wipe() {
    await this.ctx.storage.deleteAll();
    return json({ keys: (await this.ctx.storage.list()).size, alarm: await this.ctx.storage.getAlarm() });
  }

  // fetch() to the world outside dohost. POST a JSON `{url, method?,
  // bodyBytes?, redirect?, put?, times?}`: writes `put` first if given, then
  // sends `times` requests at once; one `{status, length, text, redirected}`
  // or `{error}` per request. The server's [outbound] rules say where an
  // object may connect (by default not loopback: see dohost.toml).
  async route_fetch(request) {
    const spec = await request.json();
    if (spec.put) await this.ctx.storage.put(spec.put, 1);
    const send = async () => {
      try {
        const init = { method: spec.method ?? "GET", redirect: spec.redirect ?? "follow" };
        if (spec.bodyBytes) init.body = "x".repeat(spec.bodyBytes);
        const response = await fetch(spec.url, init);
        const text = await response.text();
        return { status: response.status, length: text.length, text: text.slice(0, 100), redirected: response.redirected };
      } catch (e) {
        return { error: `${e.name}: ${e.message}` };
      }
    };
    return json(await Promise.all(Array.from({ length: spec.times ?? 1 }, send)));
  }

  // A stored counter, answered at once whatever else the object awaits.
  async route_count() {
    const count = ((await this.ctx.storage.get("count")) ?? 0) + 1;
    await this.ctx.storage.put("count", count);
    return json(count);
  }

  // One stored value: `?key=`.
  async route_get(request, url) {
    return json((await this.ctx.storage.get(url.searchParams.get("key"))) ?? null);
  }

  // `?n=&ms=`: nap(ms) on n objects under Promise.all; they run at once, so
  // the whole takes about as long as one.
  async route_all(request, url) {
    const n = Number(url.searchParams.get("n"));
    const ms = Number(url.searchParams.get("ms"));
    const start = Date.now();
    const naps = await Promise.all(
      Array.from({ length: n }, (_, i) => this.env.API.get(this.env.API.idFromName(`napper-${i}`)).nap(ms)),
    );
    return json({ elapsed: Date.now() - start, naps });
  }

  // `?path=b,a`: relay through those objects; A → B → A works, since an
  // object takes other events while it awaits a call.
  async route_relay(request, url) {
    const path = url.searchParams.get("path");
    return json(await this.relay(path ? path.split(",") : []));
  }

  // `?ms=`: keeps every other event out of the object that long.
  async route_block(request, url) {
    await this.ctx.blockConcurrencyWhile(() => sleep(Number(url.searchParams.get("ms"))));
    return json("unblocked");
  }

  // Timers: an interval cleared after its third tick, and a timeout
  // cleared before it is due, which never fires.
  async route_timers() {
    let cleared = false;
    const timeout = setTimeout(() => (cleared = true), 50);
    clearTimeout(timeout);
    const ticks = await new Promise((resolve) => {
      let n = 0;
      const interval = setInterval(() => {
        n += 1;
        if (n === 3) {
          clearInterval(interval);
          resolve(n);
        }
      }, 20);
    });
    await sleep(100);
    return json({ ticks, clearedTimeoutFired: cleared });
  }

  // Answers at once; 300 ms later writes `later` and fetches `?url=`.
  async route_later(request, url) {
    this.ctx.waitUntil(
      (async () => {
        await sleep(300);
        await this.ctx.storage.put("later", Date.now());
        await fetch(url.searchParams.get("url"));
      })(),
    );
    return json(Date.now());
  }

  // RPC methods for route_stubs, route_all and route_relay.
  async nap(ms) {
    await sleep(ms);
    return ms;
  }
  async relay(path) {
    const me = this.ctx.id.name;
    if (path.length === 0) return [me];
    const next = this.env.API.get(this.env.API.idFromName(path[0]));
    return [me, ...(await next.relay(path.slice(1)))];
  }
  add(a, b) {
    return a + b;
  }
  async describe(value) {
    return { got: value, by: this.ctx.id.name };
  }
  fail(why) {
    throw new Error(why);
  }
  // RPC methods for route_clone: values, Requests and Responses as
  // structured clone passes them.
  echo(value) {
    return value;
  }
  checks(value) {
    return cloneChecks(value);
  }
  nothing() {}
  async respond(status) {
    return new Response(`answered ${status}`, { status, headers: { "x-answer": "yes" } });
  }
  async readRequest(request) {
    return { method: request.method, url: request.url, header: request.headers.get("x-asked"), body: await request.text() };
  }
  // RPC methods for route_targets: RpcTargets and functions by reference.
  makeCounter(start) {
    return new Counter(start, this.ctx.id.name);
  }
  async applyTwice(fn, x) {
    return fn(await fn(x));
  }
  keep(fn, dup) {
    this.kept = dup ? fn.dup() : fn;
  }
  async callKept(x) {
    return this.kept(x);
  }
  reset() {
    this.ctx.abort("reset by route_targets");
  }
}

/** A counter the object that made it keeps, passed by reference over RPC. */
class Counter extends RpcTarget {
  constructor(start, owner) {
    super();
    this.count = start;
    this.owner = owner;
  }
  increment(by) {
    this.count += by;
    return `${this.owner}: ${this.count}`;
  }
}
