"""The errors the SDK raises. They use no import of the contract, so every
role can name them."""

from componentize_py_types import Err


def calling(f, *args, error):
    """``f(*args)``, an import of the contract: the ``Err`` it raises for a
    failed ``result`` becomes ``error`` of its value."""
    try:
        return f(*args)
    except Err as e:
        raise error(e.value) from None


class CallError(Exception):
    """A call to another object failed, with Cloudflare's flags."""

    def __init__(self, error):
        super().__init__(error.message)
        #: Raised by the callee's own code (it raised or trapped).
        self.remote = error.remote
        #: Repeating the call may succeed.
        self.retryable = error.retryable
        #: The callee's mailbox is full: back off before retrying.
        self.overloaded = error.overloaded


class FetchError(OSError):
    """An outbound ``fetch()`` failed: refused by the egress policy, over a
    limit, timed out, or the network failed (``kind`` says which)."""

    def __init__(self, error):
        super().__init__(error.message)
        self.kind = error.kind.name.lower()


_STORAGE_MESSAGES = {
    "KeyTooLarge": lambda v: f"a key of {v.actual} bytes is over the limit of {v.limit} bytes",
    "ValueTooLarge": lambda v: (
        f"a value of {v.actual} bytes is over the limit of {v.limit} bytes; "
        "split it over several keys or use the SQL API"
    ),
    "TooManyKeys": lambda v: f"{v.actual} keys in one call is over the limit of {v.limit}",
    "TransactionTooDeep": lambda v: f"transactions nested {v.actual} deep is over the limit of {v.limit}",
    "InvalidOptions": lambda v: f"invalid options: {v}",
    "NoTransaction": lambda v: "no transaction is open",
    "InTransaction": lambda v: "sync() cannot be called inside a transaction",
    "Internal": lambda v: f"storage failed: {v}",
}


class StorageError(Exception):
    """A storage call failed, named after the limit or problem; it had no
    effect."""

    def __init__(self, error):
        kind = type(error).__name__.removeprefix("StorageError_")
        value = getattr(error, "value", None)
        message = _STORAGE_MESSAGES.get(kind, lambda v: f"storage failed: {v}")(value)
        super().__init__(message)
        #: The problem, e.g. "KeyTooLarge" or "InvalidOptions".
        self.kind = kind


class SqlError(Exception):
    """SQLite refused a statement; ``code`` is its extended result code."""

    def __init__(self, error):
        super().__init__(error.message)
        self.code = error.code
