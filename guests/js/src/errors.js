// The errors the SDK throws. They use no import, so every role can name them.

/** An error from a call to another object, with Cloudflare's flags. */
export class CallError extends Error {
  constructor(error) {
    super(error.message);
    this.name = "CallError";
    /** Raised by the callee's own code (it threw or trapped). */
    this.remote = error.remote;
    /** Repeating the call may succeed. */
    this.retryable = error.retryable;
    /** The callee's mailbox is full: back off before retrying. */
    this.overloaded = error.overloaded;
  }
}

/** An error from the host's storage, named after the limit or problem. */
export class StorageError extends Error {
  constructor(error) {
    super(storageMessage(error));
    this.name = "StorageError";
    this.kind = error.tag;
  }
}

function storageMessage({ tag, val }) {
  switch (tag) {
    case "key-too-large":
      return `a key of ${val.actual} bytes is over the limit of ${val.limit} bytes`;
    case "value-too-large":
      return `a value of ${val.actual} bytes is over the limit of ${val.limit} bytes; split it over several keys or use the SQL API`;
    case "too-many-keys":
      return `${val.actual} keys in one call is over the limit of ${val.limit}`;
    case "transaction-too-deep":
      return `transactions nested ${val.actual} deep is over the limit of ${val.limit}`;
    case "invalid-options":
      return `invalid options: ${val}`;
    case "no-transaction":
      return "no transaction is open";
    case "in-transaction":
      return "sync() cannot be called inside a transaction";
    default:
      return `storage failed: ${val}`;
  }
}

/** An error from SQLite, with its (extended) result code. */
export class SqlError extends Error {
  constructor({ code, message }) {
    super(message);
    this.name = "SqlError";
    this.code = code;
  }
}
