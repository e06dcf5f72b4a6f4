"""``ctx.storage``: the object's key-value storage, its alarm and its SQL
database (Cloudflare's DurableObjectStorage), in the value format every
SDK reads (values.py).

The host's storage calls are synchronous: the KV methods do their work
when called and return an awaitable that is already done, so ``await
self.ctx.storage.get("k")`` reads as on Cloudflare, and a ``put`` that is
never awaited still writes. ``ctx.storage.sql`` and ``ctx.storage.kv`` are
synchronous, as on Cloudflare.
"""

import datetime

from wit_world.imports import alarm as alarm_api
from wit_world.imports import sql as sql_api
from wit_world.imports import storage as kv

from ._names import with_snake_case
from .errors import SqlError, StorageError, calling
from .ops import maybe_await
from .values import deserialize, serialize


class Done:
    """An awaitable that is already done, with ``value``."""

    __slots__ = ("value",)

    def __init__(self, value=None):
        self.value = value

    def __await__(self):
        return self.value
        yield  # noqa: B901 - makes this a generator, as __await__ must be


def _call(f, *args, error=StorageError):
    return calling(f, *args, error=error)


def _option(options, kwargs, camel, snake, default=None):
    for source in (kwargs, options or {}):
        if camel in source:
            return source[camel]
        if snake in source:
            return source[snake]
    return default


def _read_options(options, kwargs):
    return kv.ReadOptions(no_cache=bool(_option(options, kwargs, "noCache", "no_cache", False)))


def _write_options(options, kwargs):
    return kv.WriteOptions(
        allow_unconfirmed=bool(_option(options, kwargs, "allowUnconfirmed", "allow_unconfirmed", False)),
        no_cache=bool(_option(options, kwargs, "noCache", "no_cache", False)),
    )


def _list_options(options, kwargs):
    def text(camel, snake=None):
        value = _option(options, kwargs, camel, snake or camel)
        return None if value is None else str(value)

    limit = _option(options, kwargs, "limit", "limit")
    return kv.ListOptions(
        start=text("start"),
        start_after=text("startAfter", "start_after"),
        end=text("end"),
        prefix=text("prefix"),
        reverse=bool(_option(options, kwargs, "reverse", "reverse", False)),
        limit=None if limit is None else int(limit),
        no_cache=bool(_option(options, kwargs, "noCache", "no_cache", False)),
    )


def _encode(key, value):
    try:
        return serialize(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot store the value under {key!r}: {e}") from None


def _decode(key, data):
    try:
        return deserialize(data)
    except Exception as e:  # noqa: BLE001 - any decoding failure names the key
        raise ValueError(f"the value under {key!r} cannot be read: {e}") from None


def _entries(entries):
    return {key: _decode(key, data) for key, data in entries}


def _ms(time, what):
    if isinstance(time, datetime.datetime):
        if time.tzinfo is None:
            time = time.replace(tzinfo=datetime.timezone.utc)
        return int(time.timestamp() * 1000)
    if isinstance(time, (int, float)) and time == time:
        return int(time)
    raise TypeError(f"{what} needs a datetime or milliseconds since the epoch, not {time!r}")


# The synchronous calls underneath.


def _get(key, options=None, **kwargs):
    if isinstance(key, (list, tuple)):
        return _entries(_call(kv.get_many, [str(k) for k in key], _read_options(options, kwargs)))
    data = _call(kv.get, str(key), _read_options(options, kwargs))
    return None if data is None else _decode(key, data)


def _put(key, value=None, options=None, **kwargs):
    if isinstance(key, dict):
        # put({key: value, ...}, options)
        options = value
        entries = [(str(k), _encode(k, v)) for k, v in key.items()]
        _call(kv.put_many, entries, _write_options(options, kwargs))
        return
    _call(kv.put, str(key), _encode(key, value), _write_options(options, kwargs))


def _delete(key, options=None, **kwargs):
    if isinstance(key, (list, tuple)):
        return _call(kv.delete_many, [str(k) for k in key], _write_options(options, kwargs))
    return _call(kv.delete, str(key), _write_options(options, kwargs))


def _list(options=None, **kwargs):
    return _entries(_call(kv.list, _list_options(options, kwargs)))


@with_snake_case
class StorageCalls:
    """The calls ``ctx.storage`` and a transaction's ``txn`` share. Options
    are a dict with Cloudflare's names (``{"allowUnconfirmed": True}``) or
    keyword arguments (``allow_unconfirmed=True``)."""

    def get(self, key, options=None, **kwargs):
        """The value under ``key`` (None when there is none); with a list of
        keys, a dict of those that exist, in key order."""
        return Done(_get(key, options, **kwargs))

    def put(self, key, value=None, options=None, **kwargs):
        """Stores ``value`` under ``key``; with a dict, stores every entry
        (at most 128), all or none."""
        return Done(_put(key, value, options, **kwargs))

    def delete(self, key, options=None, **kwargs):
        """Deletes ``key`` and tells whether it existed; with a list of
        keys, how many of them existed."""
        return Done(_delete(key, options, **kwargs))

    def list(self, options=None, **kwargs):
        """The entries in key order as a dict: ``start``, ``startAfter``,
        ``end``, ``prefix``, ``reverse``, ``limit``."""
        return Done(_list(options, **kwargs))

    def getAlarm(self, options=None):
        """The alarm's time in ms since the epoch, or None."""
        return Done(_call(alarm_api.get_alarm))

    def setAlarm(self, scheduled_time, options=None):
        """Sets the alarm to ``scheduled_time`` (a datetime, or ms since
        the epoch)."""
        return Done(_call(alarm_api.set_alarm, _ms(scheduled_time, "setAlarm")))

    def deleteAlarm(self, options=None):
        """Deletes the alarm, if any."""
        return Done(_call(alarm_api.delete_alarm))


class Transaction(StorageCalls):
    """A transaction's storage (``txn`` in ``storage.transaction``)."""

    rolled_back = False

    def rollback(self):
        """Discards the transaction's writes when the closure returns."""
        self.rolled_back = True


class SyncKvStorage:
    """``ctx.storage.kv``: the synchronous KV API (Cloudflare's
    SyncKvStorage), over the same keys as ``ctx.storage``."""

    def get(self, key):
        return _get(key)

    def put(self, key, value):
        _put(key, value)

    def delete(self, key):
        return _delete(key)

    def list(self, options=None, **kwargs):
        """The entries in key order, as (key, value) pairs."""
        return iter(_list(options, **kwargs).items())


@with_snake_case
class DurableObjectStorage(StorageCalls):
    """``ctx.storage``."""

    def __init__(self):
        #: The SQL API.
        self.sql = SqlStorage()
        #: The synchronous KV API.
        self.kv = SyncKvStorage()

    def deleteAll(self, options=None, **kwargs):
        """Deletes every key, the SQL database and the alarm."""
        return Done(_call(kv.delete_all, _write_options(options, kwargs)))

    def sync(self):
        """Done once every write so far, this event's included, is durable."""
        return Done(_call(kv.sync))

    def getCurrentBookmark(self):
        """Point-in-time recovery (the server's ``[storage] history``): the
        bookmark of the storage now."""
        return Done(_call(kv.get_current_bookmark))

    def getBookmarkForTime(self, time):
        """The bookmark of the storage as it was at ``time`` (a datetime or
        ms since the epoch)."""
        return Done(_call(kv.get_bookmark_for_time, _ms(time, "getBookmarkForTime")))

    def onNextSessionRestoreBookmark(self, bookmark):
        """Restores the storage to ``bookmark`` when the object next starts
        (call ``ctx.abort()`` next); the bookmark that undoes it."""
        return Done(_call(kv.on_next_session_restore_bookmark, str(bookmark)))

    async def transaction(self, closure):
        """Runs ``closure(txn)`` (sync or async) in a transaction: its
        writes (KV, SQL and alarm) commit together when it returns, and are
        discarded when it raises or calls ``txn.rollback()``."""
        _call(kv.transaction_begin)
        txn = Transaction()
        try:
            result = await maybe_await(closure(txn))
        except BaseException:
            _call(kv.transaction_rollback)
            raise
        _call(kv.transaction_rollback if txn.rolled_back else kv.transaction_commit)
        return result

    def transactionSync(self, closure):
        """As ``transaction``, for a synchronous closure of no argument;
        returns its result."""
        _call(kv.transaction_begin)
        try:
            result = closure()
        except BaseException:
            _call(kv.transaction_rollback)
            raise
        _call(kv.transaction_commit)
        return result


def _to_sql(value):
    if value is None:
        return sql_api.SqlValue_Null()
    if value is True or value is False:
        return sql_api.SqlValue_Integer(int(value))
    if isinstance(value, int):
        return sql_api.SqlValue_Integer(value)
    if isinstance(value, float):
        return sql_api.SqlValue_Real(value)
    if isinstance(value, str):
        return sql_api.SqlValue_Text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return sql_api.SqlValue_Blob(bytes(value))
    raise TypeError(
        f"cannot bind a {type(value).__name__} to a SQL parameter; use int, float, str, bytes, bool or None"
    )


def _from_sql(value):
    if isinstance(value, sql_api.SqlValue_Null):
        return None
    return value.value


@with_snake_case
class SqlStorage:
    """``ctx.storage.sql`` (Cloudflare's SqlStorage)."""

    def exec(self, query, *bindings):
        """Runs ``query`` with ``bindings`` for its ``?`` parameters and
        returns a cursor of its rows."""
        params = [_to_sql(b) for b in bindings]
        return SqlStorageCursor(_call(sql_api.exec, str(query), params, error=SqlError))

    @property
    def databaseSize(self):
        """The database's size in bytes."""
        return sql_api.database_size()


class Row(dict):
    """A row: a dict of column name to value, whose columns also read as
    attributes (``row.greeting``), as on Cloudflare."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the row has no column {name!r}; it has {list(self)}") from None


_BATCH_ROWS = 256


@with_snake_case
class SqlStorageCursor:
    """The rows of an ``exec`` (Cloudflare's SqlStorageCursor): an iterator
    of rows, read from the host in batches."""

    def __init__(self, raw):
        self._raw = raw
        self._batch = []
        self._next = 0
        self._done = False
        #: The result's column names, in order.
        self.columnNames = raw.column_names()

    def _next_raw(self):
        if self._next == len(self._batch):
            if self._done:
                return None
            self._batch = _call(self._raw.next_batch, _BATCH_ROWS, error=SqlError)
            self._next = 0
            if not self._batch:
                self._done = True
                return None
        row = self._batch[self._next]
        self._next += 1
        return [_from_sql(v) for v in row]

    def __iter__(self):
        return self

    def __next__(self):
        row = self._next_raw()
        if row is None:
            raise StopIteration
        return Row(zip(self.columnNames, row))

    def next(self):
        """The next row, or None at the end."""
        return next(self, None)

    def toArray(self):
        """Every remaining row, as a list."""
        return list(self)

    def one(self):
        """The one row of the result; an error when there is none or more."""
        first = next(self, None)
        if first is None:
            raise ValueError("Expected exactly one result from SQL query, but got no results.")
        if next(self, None) is not None:
            raise ValueError("Expected exactly one result from SQL query, but got multiple results.")
        return first

    def raw(self):
        """The remaining rows as lists of values in column order."""
        while (row := self._next_raw()) is not None:
            yield row

    @property
    def rowsRead(self):
        """Rows read so far by this ``exec``'s statements."""
        return self._raw.rows_read()

    @property
    def rowsWritten(self):
        """Rows written so far by this ``exec``'s statements."""
        return self._raw.rows_written()
