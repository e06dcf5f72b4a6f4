"""WebSockets with Cloudflare's Hibernation API: ``WebSocketPair``,
``ctx.acceptWebSocket``, ``ctx.getWebSockets``, and the class's
``webSocketMessage``, ``webSocketClose`` and ``webSocketError`` methods.

The host holds the sockets, not the instance: an object whose only
activity is open sockets leaves memory, and the next message wakes it with
its sockets, their tags and attachments (wit/websocket.wit)."""

import datetime

from wit_world.imports import websocket as host

from ._names import with_snake_case
from .errors import calling
from .values import deserialize, serialize


def _call(f, *args):
    return calling(f, *args, error=ValueError)


def _message(value):
    if isinstance(value, str):
        return host.Message_Text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return host.Message_Binary(bytes(value))
    return host.Message_Text(str(value))


class WebSocket:
    """One end of a WebSocket. Sockets come from ``WebSocketPair()`` and
    ``ctx.getWebSockets()``."""

    CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3

    def __init__(self, id=None):
        self._id = id
        self._peer = None
        self._closed = False

    def _number(self, what):
        id = self._id if self._id is not None else (self._peer._id if self._peer else None)
        if id is None:
            raise TypeError(f"{what}: the WebSocket was not accepted (ctx.acceptWebSocket(server))")
        return id

    @property
    def readyState(self):
        return WebSocket.CLOSED if self._closed else WebSocket.OPEN

    ready_state = readyState

    def send(self, message):
        """Sends ``message``: a ``str`` as a text message, bytes as a binary
        one; it leaves once the turn's writes are durable."""
        _call(host.send, self._number("send"), _message(message))

    def close(self, code=1000, reason=""):
        """Closes the socket with ``code`` (1000, or 3000 to 4999)."""
        _call(host.close, self._number("close"), int(code), str(reason))
        self._closed = True

    def serializeAttachment(self, value):
        """Keeps ``value`` (at most 2,048 bytes once stored) with the
        socket, across hibernation."""
        data = None if value is None else serialize(value)
        _call(host.set_attachment, self._number("serializeAttachment"), data)

    def deserializeAttachment(self):
        """What ``serializeAttachment`` kept, or None."""
        data = host.attachment(self._number("deserializeAttachment"))
        return None if data is None else deserialize(data)

    serialize_attachment = serializeAttachment
    deserialize_attachment = deserializeAttachment

    def accept(self):
        raise TypeError(
            "dohost supports the WebSocket Hibernation API: call ctx.acceptWebSocket(server) instead of server.accept()"
        )

    def __eq__(self, other):
        if not isinstance(other, WebSocket):
            return NotImplemented
        mine = self._id if self._id is not None else (self._peer._id if self._peer else None)
        theirs = other._id if other._id is not None else (other._peer._id if other._peer else None)
        return self is other or (mine is not None and mine == theirs)

    def __hash__(self):
        return hash(self._id) if self._id is not None else id(self)


class WebSocketPair:
    """Cloudflare's ``WebSocketPair``: ``client, server = WebSocketPair()``.
    Accept ``server`` with ``ctx.acceptWebSocket`` and return ``client`` in
    a 101 response: ``Response(None, status=101, web_socket=client)``."""

    def __init__(self):
        self.client = WebSocket()
        self.server = WebSocket()
        self.client._peer = self.server
        self.server._peer = self.client

    def __iter__(self):
        return iter((self.client, self.server))

    def __getitem__(self, index):
        return (self.client, self.server)[index]


class WebSocketRequestResponsePair:
    """A request and the response the host sends for it without waking the
    object (``ctx.setWebSocketAutoResponse``)."""

    def __init__(self, request, response):
        self.request = str(request)
        self.response = str(response)


# Socket number -> its handle, while the instance lives.
_handles = {}


def socket_handle(id):
    """The handle of socket ``id``."""
    ws = _handles.get(id)
    if ws is None:
        ws = _handles[id] = WebSocket(id)
    return ws


def forget_socket(id):
    """Forgets socket ``id`` (its close or error event ended)."""
    ws = _handles.pop(id, None)
    if ws is not None:
        ws._closed = True


def message_value(message):
    """A message as a handler receives it: ``str`` or ``bytes``."""
    return message.value


def websocket_number(ws):
    """The host's number for the socket a response hands to the client."""
    if ws is None:
        return None
    if not isinstance(ws, WebSocket):
        raise TypeError("web_socket must be the client end of a WebSocketPair")
    return ws._number("Response(web_socket=...)")


@with_snake_case
class SocketMethods:
    """``ctx``'s WebSocket methods (Cloudflare's DurableObjectState)."""

    def acceptWebSocket(self, ws, tags=None):
        if not isinstance(ws, WebSocket):
            raise TypeError("acceptWebSocket takes the server end of a WebSocketPair")
        if ws._id is not None:
            raise TypeError("this WebSocket was accepted already")
        id = _call(host.accept, [str(t) for t in tags or []])
        ws._id = id
        if ws._peer is not None:
            ws._peer._id = id
        _handles[id] = ws

    def getWebSockets(self, tag=None):
        return [socket_handle(id) for id in host.sockets(None if tag is None else str(tag))]

    def getTags(self, ws):
        try:
            return host.tags(ws._number("getTags"))
        except TypeError:
            return []

    def setWebSocketAutoResponse(self, pair=None):
        value = None if pair is None else host.AutoResponse(request=pair.request, response=pair.response)
        _call(host.set_auto_response, value)

    def getWebSocketAutoResponse(self):
        pair = host.get_auto_response()
        return None if pair is None else WebSocketRequestResponsePair(pair.request, pair.response)

    def getWebSocketAutoResponseTimestamp(self, ws):
        at = host.auto_response_timestamp(ws._number("getWebSocketAutoResponseTimestamp"))
        return None if at is None else datetime.datetime.fromtimestamp(at / 1000, datetime.timezone.utc)
