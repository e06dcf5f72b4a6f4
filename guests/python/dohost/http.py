"""HTTP requests and responses as Python Workers have them (``Request``,
``Response``, ``Headers``), and their records in the WIT contract."""

import json as _json

from wit_world.imports import types



class Headers:
    """HTTP headers: names compare case-insensitively, a name may repeat."""

    def __init__(self, init=None):
        self._items = []
        if init is None:
            return
        if isinstance(init, Headers):
            self._items = list(init._items)
            return
        items = init.items() if hasattr(init, "items") else init
        for name, value in items:
            self.append(name, value)

    def get(self, name, default=None):
        """The value of ``name`` (several joined with ", "), or ``default``."""
        lower = name.lower()
        values = [v for n, v in self._items if n.lower() == lower]
        return ", ".join(values) if values else default

    def get_all(self, name):
        lower = name.lower()
        return [v for n, v in self._items if n.lower() == lower]

    def set(self, name, value):
        self.delete(name)
        self._items.append((str(name), str(value)))

    def append(self, name, value):
        self._items.append((str(name), str(value)))

    def delete(self, name):
        lower = name.lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != lower]

    def has(self, name):
        return self.get(name) is not None

    def items(self):
        return list(self._items)

    def keys(self):
        return [n for n, _ in self._items]

    def __contains__(self, name):
        return self.has(name)

    def __getitem__(self, name):
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name, value):
        self.set(name, value)

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return f"Headers({self._items!r})"


def _body_bytes(body, streams=""):
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"a body must be str, bytes{streams} or None, not {type(body).__name__}")


def _is_chunks(body):
    """Whether ``body`` is a streamed response body: an async iterable (an
    ``async def`` generator) or an iterable of chunks, not a whole one."""
    if body is None or isinstance(body, (str, bytes, bytearray, memoryview, dict)):
        return False
    return hasattr(body, "__aiter__") or hasattr(body, "__iter__")


class _Body:
    """What requests and responses share: a body read whole, or a streamed
    one the host sends in pieces."""

    _body = b""
    _stream = None

    async def bytes(self):
        """The whole body."""
        if self._stream is not None:
            from . import ops

            stream, self._stream = self._stream, None
            self._body = await ops.read_stream(stream)
        return self._body

    async def text(self):
        """The body as UTF-8 text."""
        return (await self.bytes()).decode()

    async def json(self):
        """The body parsed as JSON."""
        return _json.loads(await self.bytes())

    async def chunks(self):
        """The body in the pieces it arrives in, as an async iterator of
        bytes: a streamed body is read from the host as it comes (it may be
        given as another response's body); a whole one is one piece."""
        if self._stream is None:
            if self._body:
                yield self._body
            return
        from . import ops

        stream, self._stream = self._stream, None
        async for chunk in ops.stream_chunks(stream):
            yield chunk

    # Cloudflare's JavaScript name.
    arrayBuffer = bytes


class Request(_Body):
    """An HTTP request: ``method``, ``url``, ``headers`` and a body."""

    def __init__(self, url, method="GET", headers=None, body=None):
        if isinstance(url, Request):
            other = url
            url = other.url
            method = other.method if method == "GET" else method
            headers = other.headers if headers is None else headers
            body = other._body if body is None else body
        self.url = str(url)
        self.method = str(method).upper()
        self.headers = Headers(headers)
        self._body = _body_bytes(body)
        # The event that delivered it, while it is unchanged: a stub's fetch
        # of it hands the event on by number.
        self._event = None

    def __repr__(self):
        return f"<Request {self.method} {self.url}>"


class Response(_Body):
    """An HTTP response: ``status``, ``headers`` and a body: ``str``,
    ``bytes``, or an async iterable (an ``async def`` generator) or iterable
    of ``str`` or ``bytes`` chunks, which the client gets as they are
    yielded, after the head (server-sent events)."""

    def __init__(self, body=None, status=200, headers=None, status_text="", web_socket=None, webSocket=None):
        self.status = int(status)
        #: With status 101, the client end of a WebSocketPair whose server
        #: end the object accepted.
        self.webSocket = self.web_socket = web_socket or webSocket
        self._websocket = None
        self.headers = Headers(headers)
        self.statusText = status_text
        # A streamed body's chunks, until the response is returned.
        self._chunks = None
        if _is_chunks(body):
            self._chunks, self._body = body, b""
        else:
            self._body = _body_bytes(body, ", an iterable of chunks")
        if isinstance(body, str) and "content-type" not in self.headers:
            self.headers.set("content-type", "text/plain;charset=UTF-8")
        # The operation that brought it from a stub's fetch, while it is
        # unchanged: returned as it is, the host hands it on by number.
        self._op = None
        # Where ``fetch()`` got it from.
        self.url = ""
        self.redirected = False

    @property
    def ok(self):
        return 200 <= self.status < 300

    @classmethod
    def redirect(cls, url, status=302):
        """A redirect to ``url``."""
        return cls(None, status=status, headers={"location": str(url)})

    def __repr__(self):
        return f"<Response {self.status}>"


class _JsonMethod:
    """``Response.json(data)`` makes a JSON response, as in Workers;
    ``await response.json()`` reads one."""

    def __get__(self, instance, owner):
        if instance is not None:
            return instance._read_json

        def make(data, status=200, headers=None):
            response = owner(_json.dumps(data), status=status, headers=headers)
            response.headers.set("content-type", "application/json")
            return response

        return make


Response._read_json = _Body.json
Response.json = _JsonMethod()


def to_request(record, event=None):
    """A ``Request`` of the WIT record ``record``."""
    request = Request.__new__(Request)
    request.url = record.url
    request.method = record.method
    request.headers = Headers(record.headers)
    request._body = record.body
    request._event = event
    return request


def from_request(request):
    """The WIT record of ``request``."""
    return types.Request(
        method=request.method,
        url=request.url,
        headers=request.headers.items(),
        body=request._body,
    )


def to_response(record, op=None):
    """A ``Response`` of the WIT record ``record``."""
    response = Response.__new__(Response)
    response.status = record.status
    response.headers = Headers(record.headers)
    response.statusText = ""
    response._body = record.body
    response._stream = record.stream
    response._chunks = None
    response._websocket = record.websocket
    response.webSocket = response.web_socket = None
    response._op = op
    response._as_received = _shape(response)
    response.url = ""
    response.redirected = False
    return response


def _shape(response):
    """What a response handed on by number must still be: its head, and
    its body not read from a stream."""
    return (response.status, tuple(response.headers.items()), response._stream, response._websocket)


def unchanged(response):
    """Whether ``response`` is still as a stub's fetch received it."""
    return response._op is not None and _shape(response) == response._as_received


def from_response(response, what):
    """The WIT record of ``response``, which ``what`` returned."""
    if isinstance(response, str):
        response = Response(response)
    if not isinstance(response, Response):
        raise TypeError(f"{what} must return a Response, not {type(response).__name__}")
    websocket = response._websocket
    if response.webSocket is not None:
        from .websocket import websocket_number

        websocket = websocket_number(response.webSocket)
    stream = response._stream
    if response._chunks is not None:
        from .ops import write_stream

        chunks, response._chunks = response._chunks, None
        stream = write_stream(chunks)
    return types.Response(
        status=response.status,
        headers=response.headers.items(),
        body=response._body,
        stream=stream,
        websocket=websocket,
    )

