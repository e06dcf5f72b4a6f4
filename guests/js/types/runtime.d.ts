// The runtime types of the dohost JavaScript SDK: the Durable Objects and
// Workers API it implements, named as in Cloudflare's
// @cloudflare/workers-types, so code typed against one type-checks against
// the other. Request, Response, URL and the rest of the web platform come
// from TypeScript's "DOM" or "WebWorker" lib. `dohost types` writes these,
// with module.d.ts, into a project's worker-configuration.d.ts; with
// @cloudflare/workers-types installed it writes module.d.ts only.

interface DurableObjectId {
  toString(): string;
  equals(other: DurableObjectId): boolean;
  readonly name?: string;
}

interface DurableObjectGetOptions {
  allowConcurrency?: boolean;
  noCache?: boolean;
}

interface DurableObjectPutOptions {
  allowConcurrency?: boolean;
  allowUnconfirmed?: boolean;
  noCache?: boolean;
}

interface DurableObjectListOptions {
  start?: string;
  startAfter?: string;
  end?: string;
  prefix?: string;
  reverse?: boolean;
  limit?: number;
  allowConcurrency?: boolean;
  noCache?: boolean;
}

interface DurableObjectGetAlarmOptions {
  allowConcurrency?: boolean;
}

interface DurableObjectSetAlarmOptions {
  allowConcurrency?: boolean;
  allowUnconfirmed?: boolean;
}

/** The calls `ctx.storage` and a transaction's `txn` share. */
interface DohostStorageCalls {
  get<T = unknown>(key: string, options?: DurableObjectGetOptions): Promise<T | undefined>;
  get<T = unknown>(keys: string[], options?: DurableObjectGetOptions): Promise<Map<string, T>>;
  list<T = unknown>(options?: DurableObjectListOptions): Promise<Map<string, T>>;
  put<T>(key: string, value: T, options?: DurableObjectPutOptions): Promise<void>;
  put<T>(entries: Record<string, T>, options?: DurableObjectPutOptions): Promise<void>;
  delete(key: string, options?: DurableObjectPutOptions): Promise<boolean>;
  delete(keys: string[], options?: DurableObjectPutOptions): Promise<number>;
  getAlarm(options?: DurableObjectGetAlarmOptions): Promise<number | null>;
  setAlarm(scheduledTime: number | Date, options?: DurableObjectSetAlarmOptions): Promise<void>;
  deleteAlarm(options?: DurableObjectSetAlarmOptions): Promise<void>;
}

interface DurableObjectTransaction extends DohostStorageCalls {
  rollback(): void;
}

interface DurableObjectStorage extends DohostStorageCalls {
  deleteAll(options?: DurableObjectPutOptions): Promise<void>;
  transaction<T>(closure: (txn: DurableObjectTransaction) => Promise<T>): Promise<T>;
  transactionSync<T>(closure: () => T): T;
  sync(): Promise<void>;
  getCurrentBookmark(): Promise<string>;
  getBookmarkForTime(timestamp: number | Date): Promise<string>;
  onNextSessionRestoreBookmark(bookmark: string): Promise<string>;
  sql: SqlStorage;
  kv: SyncKvStorage;
}

interface SyncKvStorage {
  get<T = unknown>(key: string): T | undefined;
  list<T = unknown>(options?: DurableObjectListOptions): Iterable<[string, T]>;
  put<T>(key: string, value: T): void;
  delete(key: string): boolean;
}

type SqlStorageValue = ArrayBuffer | string | number | null;

interface SqlStorage {
  exec<T extends Record<string, SqlStorageValue>>(query: string, ...bindings: any[]): SqlStorageCursor<T>;
  get databaseSize(): number;
}

declare abstract class SqlStorageCursor<T extends Record<string, SqlStorageValue>> {
  next(): { done?: false; value: T } | { done: true; value?: never };
  toArray(): T[];
  one(): T;
  raw<U extends SqlStorageValue[]>(): IterableIterator<U>;
  columnNames: string[];
  get rowsRead(): number;
  get rowsWritten(): number;
  [Symbol.iterator](): IterableIterator<T>;
}

interface AlarmInvocationInfo {
  readonly isRetry: boolean;
  readonly retryCount: number;
}

interface DurableObjectState {
  waitUntil(promise: Promise<any>): void;
  readonly id: DurableObjectId;
  readonly storage: DurableObjectStorage;
  blockConcurrencyWhile<T>(callback: () => Promise<T>): Promise<T>;
  acceptWebSocket(ws: WebSocket, tags?: string[]): void;
  getWebSockets(tag?: string): WebSocket[];
  setWebSocketAutoResponse(maybeReqResp?: WebSocketRequestResponsePair): void;
  getWebSocketAutoResponse(): WebSocketRequestResponsePair | null;
  getWebSocketAutoResponseTimestamp(ws: WebSocket): Date | null;
  getTags(ws: WebSocket): string[];
  abort(reason?: string): void;
  readonly props: any;
  /** The namespace of each Durable Object class the configuration binds. */
  readonly exports: Record<string, DurableObjectNamespace<any>>;
}

/** The methods of a Durable Object class that a stub can call. */
type DurableObjectRpcMethods<T> = {
  [K in keyof T as T[K] extends (...args: any[]) => any
    ? K extends "fetch" | "alarm" | "webSocketMessage" | "webSocketClose" | "webSocketError" | "constructor"
      ? never
      : K
    : never]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
};

type DurableObjectStub<T = undefined> = {
  readonly id: DurableObjectId;
  readonly name?: string;
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
} & (T extends undefined ? {} : DurableObjectRpcMethods<T>);

interface DurableObjectNamespaceGetDurableObjectOptions {
  locationHint?: string;
}

interface DurableObjectNamespace<T = undefined> {
  newUniqueId(options?: { jurisdiction?: string }): DurableObjectId;
  idFromName(name: string): DurableObjectId;
  idFromString(id: string): DurableObjectId;
  get(id: DurableObjectId, options?: DurableObjectNamespaceGetDurableObjectOptions): DurableObjectStub<T>;
  getByName(name: string, options?: DurableObjectNamespaceGetDurableObjectOptions): DurableObjectStub<T>;
  jurisdiction(jurisdiction: string): DurableObjectNamespace<T>;
}

interface ExecutionContext {
  waitUntil(promise: Promise<any>): void;
  passThroughOnException(): void;
  /** The namespace of each Durable Object class the configuration binds. */
  readonly exports: Record<string, DurableObjectNamespace<any>>;
  readonly props: any;
}

type ExportedHandlerFetchHandler<Env = unknown> = (
  request: Request,
  env: Env,
  ctx: ExecutionContext,
) => Response | Promise<Response>;

interface ExportedHandler<Env = unknown> {
  fetch?: ExportedHandlerFetchHandler<Env>;
}

declare class WebSocketPair {
  constructor();
  0: WebSocket;
  1: WebSocket;
}

declare class WebSocketRequestResponsePair {
  constructor(request: string, response: string);
  get request(): string;
  get response(): string;
}

interface WebSocket {
  accept(): void;
  serializeAttachment(attachment: any): void;
  deserializeAttachment(): any;
}

interface ResponseInit {
  webSocket?: WebSocket | null;
}

interface Response {
  readonly webSocket: WebSocket | null;
}

declare namespace Cloudflare {
  interface Env {}
}

declare module "cloudflare:workers" {
  export abstract class DurableObject<Env = Cloudflare.Env> {
    protected ctx: DurableObjectState;
    protected env: Env;
    constructor(ctx: DurableObjectState, env: Env);
    alarm?(alarmInfo?: AlarmInvocationInfo): void | Promise<void>;
    fetch?(request: Request): Response | Promise<Response>;
    webSocketMessage?(ws: WebSocket, message: string | ArrayBuffer): void | Promise<void>;
    webSocketClose?(ws: WebSocket, code: number, reason: string, wasClean: boolean): void | Promise<void>;
    webSocketError?(ws: WebSocket, error: unknown): void | Promise<void>;
  }

  /** Objects passed over RPC by reference: the receiver gets a stub. */
  export abstract class RpcTarget {}

  /** The vars and bindings, as `this.env` has them. */
  export const env: Cloudflare.Env;

  export abstract class WorkerEntrypoint<Env = Cloudflare.Env> {
    protected ctx: ExecutionContext;
    protected env: Env;
    constructor(ctx: ExecutionContext, env: Env);
    fetch?(request: Request): Response | Promise<Response>;
  }
}
