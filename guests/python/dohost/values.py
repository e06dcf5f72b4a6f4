"""Stored values and RPC arguments in the format every dohost SDK reads
(docs/values.md): JSON text when JSON holds the value exactly, else CBOR
after the self-describe tag, with the tags the JavaScript SDK uses for what
CBOR lacks. So Python, Rust and JavaScript objects read each other's data.

Python to the format:

- ``None``, ``bool``, ``str``, ``int`` (within JavaScript's safe integers),
  finite ``float`` other than ``-0.0``, ``list`` and ``tuple``, ``dict``
  with ``str`` keys: JSON.
- ``bytes``, ``bytearray``, ``memoryview``: a CBOR byte string (an
  ``ArrayBuffer`` in JavaScript).
- ``int`` outside the safe integers: tag 2 or 3 (a ``BigInt``).
- ``float`` NaN, infinities, ``-0.0``: a float64.
- ``set``, ``frozenset``: tag 258 (a ``Set``); a ``dict`` with keys other
  than ``str``: tag 259 (a ``Map``); ``datetime``: tag 1 (a ``Date``).
- A container reached twice (shared, or a cycle): tags 28 and 29.

Over RPC (``serialize_message``), an ``RpcTarget``, a function or a stub
received for one passes by reference: tag 27 with ``["RpcStub",
capability, kind]`` (targets.py). Anything else cannot be stored:
``TypeError``, as Cloudflare's ``DataCloneError``. Reading gives the same types back; JavaScript's
``undefined`` reads as ``None``, a typed array as ``bytes`` (a
``Uint8Array``) or a list of numbers, a ``RegExp`` as ``(source, flags)``
and an ``Error`` as ``("Error", name, message, stack, ...)``.
"""

import datetime
import json
import struct

import cbor2

# The self-describe tag 55799, which no JSON text starts with.
CBOR_PREFIX = b"\xd9\xd9\xf7"

MAX_SAFE_INTEGER = 2**53 - 1

_UTC = datetime.timezone.utc


class _NotJson(Exception):
    """Raised inside ``_json_exact`` when JSON cannot hold the value."""


def _check_json(value, seen):
    if value is None or value is True or value is False or type(value) is str:
        return
    kind = type(value)
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return
        raise _NotJson
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise _NotJson
        if value == 0.0 and str(value).startswith("-"):
            raise _NotJson
        return
    if kind in (list, tuple, dict):
        if id(value) in seen:
            raise _NotJson
        seen.add(id(value))
        if kind is dict:
            for key, item in value.items():
                if type(key) is not str:
                    raise _NotJson
                _check_json(item, seen)
        else:
            for item in value:
                _check_json(item, seen)
        return
    raise _NotJson


def _json_exact(value):
    try:
        _check_json(value, set())
        return True
    except _NotJson:
        return False


def _shares(value, seen):
    """Whether some container in ``value`` is reached twice."""
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        if id(value) in seen:
            return True
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
        for key, item in items:
            if _shares(key, seen) or _shares(item, seen):
                return True
    return False


def _default(encoder, value):
    if isinstance(value, (set, frozenset)):
        encoder.encode(cbor2.CBORTag(258, list(value)))
    elif isinstance(value, (bytearray, memoryview)):
        encoder.encode(bytes(value))
    elif callable(value) or _is_target(value):
        raise TypeError(
            f"a {type(value).__name__} passes by reference over RPC only (an RpcTarget, a function or a stub): "
            "it cannot be stored"
        )
    else:
        raise TypeError(
            f"a {type(value).__name__} cannot be stored or passed; use None, bool, int, "
            "float, str, bytes, list, tuple, dict, set or datetime"
        )


def _is_target(value):
    from .targets import RpcTarget, _Stub

    return isinstance(value, (RpcTarget, _Stub))


def _prepare(value, memo, lend=None):
    """Turns what cbor2 would write differently from the format into its
    tagged form (big ints, dicts with keys other than strings, and what
    ``lend`` passes by reference), keeping each container once: ``memo``
    maps an original to its prepared form, so shared containers and cycles
    stay so."""
    kind = type(value)
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        magnitude = value if value >= 0 else -1 - value
        raw = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "big")
        return cbor2.CBORTag(2 if value >= 0 else 3, raw)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_UTC)
        return cbor2.CBORTag(1, float(value.timestamp()))
    if kind not in (list, tuple, dict, set, frozenset):
        lent = lend(value) if lend is not None and kind not in (str, bytes, float, bool) else None
        if lent is not None:
            return cbor2.CBORTag(27, ["RpcStub", *lent])
        return value
    done = memo.get(id(value))
    if done is not None:
        return done
    if kind is dict and all(type(k) is str for k in value):
        prepared = {}
        memo[id(value)] = prepared
        prepared.update((k, _prepare(v, memo, lend)) for k, v in value.items())
        return prepared
    if kind is dict:
        entries = {}
        prepared = memo[id(value)] = cbor2.CBORTag(259, entries)
        entries.update((_prepare(k, memo, lend), _prepare(v, memo, lend)) for k, v in value.items())
        return prepared
    items = []
    prepared = items if kind in (list, tuple) else cbor2.CBORTag(258, items)
    memo[id(value)] = prepared
    items.extend(_prepare(v, memo, lend) for v in value)
    return prepared


def serialize(value, lend=None):
    """The bytes of ``value`` in the value format; ``lend`` gives the
    capability and kind of what passes by reference (RPC only)."""
    if _json_exact(value):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    # Shared containers keep their identity: cbor2 marks them with tags 28
    # and 29, as the JavaScript SDK does.
    sharing = _shares(value, set())
    prepared = _prepare(value, {}, lend)
    return CBOR_PREFIX + cbor2.dumps(prepared, default=_default, value_sharing=sharing, timezone=_UTC)


def serialize_message(value):
    """The bytes of an RPC message: ``value``, its RpcTargets and functions
    lent (or stubs passed on)."""
    from .targets import capability_of

    return serialize(value, capability_of)


# Typed arrays (RFC 8746), little-endian: tag -> struct format.
_TYPED = {
    68: "B",
    69: "H",
    70: "I",
    71: "Q",
    72: "b",
    77: "h",
    78: "i",
    79: "q",
    85: "f",
    86: "d",
}


def _tag_hook(decoder, tag, stub=None):
    number, value = tag.tag, tag.value
    if number == 27 and stub is not None and len(value) == 3 and value[0] == "RpcStub":
        return stub(value[1], value[2])
    if number == 1:
        try:
            return datetime.datetime.fromtimestamp(value, _UTC)
        except (ValueError, OverflowError, OSError):
            return None
    if number == 258:
        try:
            return set(value)
        except TypeError:
            return list(value)
    if number == 259:
        return value
    if number == 64:
        return bytes(value)
    if number in _TYPED:
        fmt = _TYPED[number]
        count = len(value) // struct.calcsize(fmt)
        return list(struct.unpack(f"<{count}{fmt}", value))
    if number in (21066, 27):
        # A RegExp (source, flags), or an Error, a boxed primitive, a
        # DataView (["Error", name, message, ...]): Python has no such type.
        return tuple(value)
    return tag


def _undefined_to_none(value, seen):
    """Replaces JavaScript's ``undefined`` with None, in place, so shared
    containers and cycles stay so."""
    if value is cbor2.undefined:
        return None
    kind = type(value)
    if kind in (list, dict) and id(value) not in seen:
        seen.add(id(value))
        keys = range(len(value)) if kind is list else list(value)
        for key in keys:
            value[key] = _undefined_to_none(value[key], seen)
    return value


def deserialize(data, stub=None):
    """The value of ``data``, bytes in the value format; ``stub`` makes
    a stub of what was passed by reference (RPC only)."""
    data = bytes(data)
    if data.startswith(CBOR_PREFIX):
        hook = _tag_hook if stub is None else lambda decoder, tag: _tag_hook(decoder, tag, stub)
        return _undefined_to_none(cbor2.loads(data, tag_hook=hook), set())
    return json.loads(data)


def deserialize_message(data, received=None):
    """The value of an RPC message, with stubs for what it passes by
    reference (added to ``received`` when given)."""
    from .targets import stub_for

    return deserialize(data, lambda capability, kind: stub_for(capability, kind, received))
