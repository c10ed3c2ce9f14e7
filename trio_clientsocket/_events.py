"""The events a ClientSocket delivers through ``events()``."""

from __future__ import annotations

import functools
from typing import Any, Literal, TypeAlias

import attrs

from ._genexus import NotificationInfo, parse_json
from ._handshake import HandshakeResponse

__all__ = [
    "Closed",
    "Connected",
    "ConnectionFailed",
    "Event",
    "Message",
    "MessageReceived",
    "PingReceived",
    "PongReceived",
    "Skipped",
    "SocketEvent",
    "Undelivered",
    "UndeliveredReason",
]

Message: TypeAlias = str | bytes
"""What ``send()`` takes and ``MessageReceived.message`` holds: text or binary."""

UndeliveredReason: TypeAlias = Literal["closed", "gave up", "dropped", "in flight"]
"""Why messages were not written: see ``Undelivered.reason``."""


@attrs.frozen
class Event:
    """Base class of every event, so ``case Event()`` matches them all.

    Examples:
        >>> isinstance(Connected(url="ws://h/"), Event)
        True
    """


@attrs.frozen
class Connected(Event):
    """A handshake completed: the first connect and every reconnect. Its repr
    leaves out the handshake answer (``response`` has it).

    Examples:
        >>> Connected(url="ws://localhost:8080/")
        Connected(url='ws://localhost:8080/', subprotocol=None)
    """

    url: str
    """The URL this connection went to, for display: a password and query
    values are shown as ``***`` (``ClientSocket.raw_url`` has the real one)."""
    subprotocol: str | None = None
    """The subprotocol the server chose, if any."""
    response: HandshakeResponse | None = attrs.field(default=None, eq=False, repr=False)
    """The server's handshake answer: status and headers (secret values hidden
    in its repr)."""


@attrs.frozen
class ConnectionFailed(Event):
    """An attempt failed, or an established connection was lost.

    Examples:
        >>> e = ConnectionFailed(error=OSError("refused"), retry_in=1.5)
        >>> e.retry_in
        1.5
    """

    error: BaseException = attrs.field(eq=False)
    """What went wrong (see the ``errors`` tree: ``HandshakeRejected``,
    ``KeepaliveTimeout``, ``ConnectionLost``, ``OSError``...)."""
    retry_in: float | None
    """Seconds until the next attempt; None when the socket gave up and is now
    closed (``send()`` raises until ``open()``)."""


@attrs.frozen(weakref_slot=False)
class MessageReceived(Event):
    """A message arrived: ``message`` is the frame's text, unchanged, or bytes.

    ``json`` and ``notification`` are views parsed (with ``json.loads`` only)
    on first access.

    Examples:
        >>> e = MessageReceived('{"Id": "7", "Object": "", "Message": "hi"}')
        >>> e.notification.message
        'hi'
        >>> MessageReceived("plain text").json is None
        True
    """

    message: Message
    """The text of a text frame (exactly as sent), or the bytes of a binary frame."""

    @functools.cached_property
    def json(self) -> Any:
        """The message parsed as JSON, or None (binary, not JSON, or nested too deep)."""
        if isinstance(self.message, bytes):
            return None
        return parse_json(self.message)

    @functools.cached_property
    def notification(self) -> NotificationInfo | None:
        """The GeneXus NotificationInfo the message is, or None."""
        return NotificationInfo.from_value(self.json)


new_event = object.__new__
set_message = MessageReceived.__dict__["message"].__set__
"""``event = new_event(MessageReceived); set_message(event, message)`` makes
``MessageReceived(message)`` at a third of the cost, inline in the reader's hot
path (the frozen class's ``__init__`` sets its field through a lookup)."""


def _count_messages(report: Undelivered) -> int:
    return len(report.messages)


@attrs.frozen
class Undelivered(Event):
    """Messages taken by ``send()`` that will not be written, and why: left in
    the outbox when the socket closed or gave up, dropped by
    ``overflow="drop-oldest"``, or being written when the connection died (those
    may or may not have arrived: WebSocket cannot tell).

    A burst of reports of one reason that the application has not read yet
    is merged into one event. The payloads unread reports hold are bounded
    (``outbox_size + event_buffer`` of them, all reports together): ``count``
    says how many messages the report covers, which is more than
    ``len(messages)`` when some payloads were not kept (the earliest are kept).

    Examples:
        >>> Undelivered(messages=("a", "b"), reason="closed").count
        2
    """

    messages: tuple[Message, ...]
    """The messages, in the order they were sent (the first ones of a burst
    longer than the bound)."""
    reason: UndeliveredReason
    """``"closed"`` (close() or leaving the block), ``"gave up"`` (reconnecting
    stopped), ``"dropped"`` (``overflow="drop-oldest"``) or ``"in flight"``
    (being written when the connection ended)."""
    count: int = attrs.field(default=attrs.Factory(_count_messages, takes_self=True), kw_only=True)
    """How many messages this report covers (at least ``len(messages)``)."""


@attrs.frozen
class Closed(Event):
    """The socket was closed by ``close()``, ``open()`` of another URL, or leaving
    the ``async with`` block. It is the last event of that connection.

    Examples:
        >>> Closed(url="ws://h/")
        Closed(url='ws://h/')
    """

    url: str | None
    """The URL that was open, if any, for display (secrets shown as ``***``)."""


@attrs.frozen
class Skipped(Event):
    """Events the socket could not keep because the application was not reading
    ``events()``: the connection never waits for the reader, so when the
    buffer is full, connection reports beyond a small reserve are dropped
    (``Connected`` and retried ``ConnectionFailed`` first), and this event
    comes before the reports that were kept.

    Examples:
        >>> Skipped(count=3, undelivered=0).count
        3
    """

    count: int
    """How many events were dropped here."""
    undelivered: int = 0
    """How many messages the dropped ``Undelivered`` reports among them covered."""


@attrs.frozen
class PingReceived(Event):
    """The server sent a ping (the socket has answered it already). Delivered
    only with ``ClientSocket(ping_events=True)``.

    Examples:
        >>> PingReceived(payload=b"tick")
        PingReceived(payload=b'tick')
    """

    payload: bytes
    """The ping's application data (up to 125 bytes)."""


@attrs.frozen
class PongReceived(Event):
    """The server sent a pong: the answer to one of the socket's pings (its
    keepalive's, or ``ping()``'s), or one the server sent unasked. Delivered
    only with ``ClientSocket(ping_events=True)``.

    Examples:
        >>> PongReceived(payload=b"", rtt=0.012).rtt
        0.012
    """

    payload: bytes
    """The pong's application data."""
    rtt: float | None
    """Seconds from our ping to this pong, when it answers one; None when it
    answers none (unasked, or it came after its ping had been given up)."""


SocketEvent: TypeAlias = (
    Connected
    | ConnectionFailed
    | MessageReceived
    | PingReceived
    | PongReceived
    | Undelivered
    | Closed
    | Skipped
)
"""Every event ``events()`` yields: a closed union, for an exhaustive ``match``."""
