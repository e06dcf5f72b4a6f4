// `ctx.storage`: the object's key-value storage, its alarm and its SQL
// database (Cloudflare's DurableObjectStorage). Values are kept as
// structured clone keeps them, as JSON when JSON holds them exactly and as
// tagged CBOR otherwise (clone.js), so objects in other languages read
// them too.

import * as kv from "dohost:object/storage@0.1.0";
import * as alarmApi from "dohost:object/alarm@0.1.0";
import * as sqlApi from "dohost:object/sql@0.1.0";

import { deserialize, serialize } from "./clone.js";
import { SqlError, StorageError } from "./errors.js";

function call(f, ErrorType = StorageError) {
  try {
    return f();
  } catch (e) {
    if (e && e.payload !== undefined) throw new ErrorType(e.payload);
    throw e;
  }
}

function encode(key, value) {
  try {
    return serialize(value);
  } catch (e) {
    const message = `cannot store the value under ${JSON.stringify(key)}: ${e.message}`;
    // A DOMException's message cannot be set: a new one, of the same name.
    if (e?.name === "DataCloneError" && typeof DOMException === "function") {
      throw new DOMException(message, "DataCloneError");
    }
    throw new TypeError(message);
  }
}

function decode(key, bytes) {
  try {
    return deserialize(bytes);
  } catch (e) {
    throw new TypeError(`the value under ${JSON.stringify(key)} cannot be read: ${e.message}`);
  }
}

const readOptions = (o = {}) => ({ noCache: Boolean(o.noCache) });
const writeOptions = (o = {}) => ({
  allowUnconfirmed: Boolean(o.allowUnconfirmed),
  noCache: Boolean(o.noCache),
});

const listOptions = (o = {}) => ({
  start: o.start,
  startAfter: o.startAfter,
  end: o.end,
  prefix: o.prefix,
  reverse: Boolean(o.reverse),
  limit: o.limit,
  noCache: Boolean(o.noCache),
});

function entriesToMap(entries) {
  const map = new Map();
  for (const [key, bytes] of entries) map.set(key, decode(key, bytes));
  return map;
}

// One key's calls, synchronous underneath: `ctx.storage` and a
// transaction's `txn` return them as settled promises, `ctx.storage.kv` as
// they are.

function getOne(key, options) {
  const k = String(key);
  const bytes = call(() => kv.get(k, readOptions(options)));
  return bytes === undefined ? undefined : decode(k, bytes);
}

function putOne(key, value, options) {
  const k = String(key);
  const bytes = encode(k, value);
  call(() => kv.put(k, bytes, writeOptions(options)));
}

function deleteOne(key, options) {
  return call(() => kv.delete(String(key), writeOptions(options)));
}

function listEntries(options) {
  return entriesToMap(call(() => kv.list(listOptions(options))));
}

/** The storage calls shared by `ctx.storage` and a transaction's `txn`. */
class StorageCalls {
  async get(keys, options) {
    if (Array.isArray(keys)) {
      return entriesToMap(call(() => kv.getMany(keys.map(String), readOptions(options))));
    }
    return getOne(keys, options);
  }

  async put(keyOrEntries, value, options) {
    if (typeof keyOrEntries === "object" && keyOrEntries !== null) {
      const entries = Object.entries(keyOrEntries).map(([k, v]) => [k, encode(k, v)]);
      call(() => kv.putMany(entries, writeOptions(value)));
      return;
    }
    putOne(keyOrEntries, value, options);
  }

  async delete(keys, options) {
    if (Array.isArray(keys)) return call(() => kv.deleteMany(keys.map(String), writeOptions(options)));
    return deleteOne(keys, options);
  }

  async list(options) {
    return listEntries(options);
  }

  async getAlarm() {
    const time = call(() => alarmApi.getAlarm());
    return time === undefined ? null : Number(time);
  }

  async setAlarm(scheduledTime) {
    const ms = scheduledTime instanceof Date ? scheduledTime.getTime() : Number(scheduledTime);
    if (!Number.isFinite(ms)) throw new TypeError(`setAlarm needs a Date or milliseconds, not ${scheduledTime}`);
    call(() => alarmApi.setAlarm(BigInt(Math.trunc(ms))));
  }

  async deleteAlarm() {
    call(() => alarmApi.deleteAlarm());
  }
}

/** A transaction's storage (`txn` in `storage.transaction(async (txn) => ...)`). */
class Transaction extends StorageCalls {
  rolledBack = false;
  /** Discards the transaction's writes when the closure returns. */
  rollback() {
    this.rolledBack = true;
  }
}

/**
 * `ctx.storage.kv`: the synchronous KV API of SQLite-backed objects
 * (Cloudflare's SyncKvStorage), over the same keys as `ctx.storage`.
 */
export class SyncKvStorage {
  get(key) {
    return getOne(key);
  }

  put(key, value) {
    putOne(key, value);
  }

  delete(key) {
    return deleteOne(key);
  }

  /** The entries in key order, as `[key, value]` pairs. */
  list(options) {
    return listEntries(options).entries();
  }
}

/** `ctx.storage`. */
export class DurableObjectStorage extends StorageCalls {
  /** The SQL API (`ctx.storage.sql`). */
  sql = new SqlStorage();
  /** The synchronous KV API (`ctx.storage.kv`). */
  kv = new SyncKvStorage();

  async deleteAll(options) {
    call(() => kv.deleteAll(writeOptions(options)));
  }

  /** Resolves once every write so far, this event's included, is durable. */
  async sync() {
    call(() => kv.sync());
  }

  /**
   * Point-in-time recovery (the server's `[storage] history`): the
   * bookmark of the storage now, once every write so far is durable.
   */
  async getCurrentBookmark() {
    return call(() => kv.getCurrentBookmark());
  }

  /** The bookmark of the storage as it was at `time` (a Date or ms). */
  async getBookmarkForTime(time) {
    const ms = time instanceof Date ? time.getTime() : Number(time);
    if (!Number.isFinite(ms)) throw new TypeError(`getBookmarkForTime needs a Date or milliseconds, not ${time}`);
    return call(() => kv.getBookmarkForTime(BigInt(Math.trunc(ms))));
  }

  /**
   * Restores the storage (KV, SQL and the alarm) to `bookmark` when the
   * object next starts: call `ctx.abort()` next. Resolves to the bookmark
   * that undoes the restore.
   */
  async onNextSessionRestoreBookmark(bookmark) {
    return call(() => kv.onNextSessionRestoreBookmark(String(bookmark)));
  }

  /**
   * Runs `closure(txn)` in a transaction: its writes (KV, SQL and alarm)
   * commit together when it resolves, and are discarded when it throws or
   * calls `txn.rollback()`.
   */
  async transaction(closure) {
    call(() => kv.transactionBegin());
    const txn = new Transaction();
    let result;
    try {
      result = await closure(txn);
    } catch (e) {
      call(() => kv.transactionRollback());
      throw e;
    }
    call(() => (txn.rolledBack ? kv.transactionRollback() : kv.transactionCommit()));
    return result;
  }

  /** As `transaction`, for a synchronous closure; returns its result. */
  transactionSync(closure) {
    call(() => kv.transactionBegin());
    let result;
    try {
      result = closure();
    } catch (e) {
      call(() => kv.transactionRollback());
      throw e;
    }
    call(() => kv.transactionCommit());
    return result;
  }
}

/** `ctx.storage.sql` (Cloudflare's SqlStorage). */
export class SqlStorage {
  /** Runs `query` with `bindings` for its `?` parameters; returns a cursor. */
  exec(query, ...bindings) {
    const params = bindings.map(toSqlValue);
    return new SqlStorageCursor(call(() => sqlApi.exec(String(query), params), SqlError));
  }

  /** The database's size in bytes. */
  get databaseSize() {
    return Number(sqlApi.databaseSize());
  }
}

function toSqlValue(value) {
  if (value === null || value === undefined) return { tag: "null" };
  switch (typeof value) {
    case "number":
      return Number.isSafeInteger(value) ? { tag: "integer", val: BigInt(value) } : { tag: "real", val: value };
    case "bigint":
      return { tag: "integer", val: value };
    case "boolean":
      return { tag: "integer", val: value ? 1n : 0n };
    case "string":
      return { tag: "text", val: value };
  }
  if (value instanceof ArrayBuffer) return { tag: "blob", val: new Uint8Array(value) };
  if (ArrayBuffer.isView(value)) {
    return { tag: "blob", val: new Uint8Array(value.buffer, value.byteOffset, value.byteLength) };
  }
  throw new TypeError(`cannot bind ${typeof value} to a SQL parameter; use a number, string, bigint, boolean, null or bytes`);
}

function fromSqlValue({ tag, val }) {
  switch (tag) {
    case "null":
      return null;
    case "integer":
      return val >= Number.MIN_SAFE_INTEGER && val <= Number.MAX_SAFE_INTEGER ? Number(val) : val;
    case "blob":
      return val.buffer.slice(val.byteOffset, val.byteOffset + val.byteLength);
    default:
      return val;
  }
}

/** Runs the storage code that needs no host call (see `rehearse` in index.js). */
export function rehearseStorage() {
  const storage = new DurableObjectStorage();
  void storage.sql;
  const values = [null, 1, 1.5, 2n, true, "text", new Uint8Array(1)].map(toSqlValue).map(fromSqlValue);
  decode("rehearsal", encode("rehearsal", { values: values.length, at: [readOptions(), writeOptions()] }));
  entriesToMap([]);
}

const BATCH_ROWS = 256;

/**
 * The rows of an `exec` (Cloudflare's SqlStorageCursor): an iterator of row
 * objects keyed by column name, read from the host in batches.
 */
export class SqlStorageCursor {
  #raw;
  #batch = [];
  #next = 0;
  #done = false;
  constructor(raw) {
    this.#raw = raw;
    /** The names of the result's columns, in order. */
    this.columnNames = raw.columnNames();
  }

  #nextRaw() {
    if (this.#next === this.#batch.length) {
      if (this.#done) return undefined;
      this.#batch = call(() => this.#raw.nextBatch(BATCH_ROWS), SqlError);
      this.#next = 0;
      if (this.#batch.length === 0) {
        this.#done = true;
        return undefined;
      }
    }
    return this.#batch[this.#next++].map(fromSqlValue);
  }

  #toObject(row) {
    const object = {};
    this.columnNames.forEach((name, i) => {
      object[name] = row[i];
    });
    return object;
  }

  next() {
    const row = this.#nextRaw();
    return row === undefined ? { done: true, value: undefined } : { done: false, value: this.#toObject(row) };
  }

  [Symbol.iterator]() {
    return this;
  }

  /** Every remaining row. */
  toArray() {
    return [...this];
  }

  /** The one row of the result; throws when there is none or more than one. */
  one() {
    const first = this.next();
    if (first.done) throw new Error("Expected exactly one result from SQL query, but got no results.");
    if (!this.next().done) throw new Error("Expected exactly one result from SQL query, but got multiple results.");
    return first.value;
  }

  /** The remaining rows as arrays of values in column order. */
  raw() {
    const cursor = this;
    return {
      next() {
        const row = cursor.#nextRaw();
        return row === undefined ? { done: true, value: undefined } : { done: false, value: row };
      },
      [Symbol.iterator]() {
        return this;
      },
      toArray() {
        return [...this];
      },
      get columnNames() {
        return cursor.columnNames;
      },
    };
  }

  /** Rows read so far by the statements of this `exec`. */
  get rowsRead() {
    return Number(this.#raw.rowsRead());
  }

  /** Rows written so far by the statements of this `exec`. */
  get rowsWritten() {
    return Number(this.#raw.rowsWritten());
  }
}
