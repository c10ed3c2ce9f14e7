"""The events a ClientSocket delivers through ``events()``."""

from __future__ import annotations

import functools
from typing import Any

import attrs

from ._genexus import NotificationInfo, parse_json
from ._url import redacted_repr

__all__ = [
    "Closed",
    "Connected",
    "ConnectionFailed",
    "Event",
    "Message",
    "MessageReceived",
    "Undelivered",
]

Message = str | bytes
"""What ``send()`` takes and ``MessageReceived.message`` holds: text or binary."""


@attrs.frozen
class Event:
    """Base class of every event, so ``case Event()`` matches them all.

    Example:
        >>> isinstance(Connected(url="ws://h/"), Event)
        True
    """


@attrs.frozen
class Connected(Event):
    """A handshake completed: the first connect and every reconnect.

    Example:
        >>> Connected(url="ws://localhost:8080/")
        Connected(url='ws://localhost:8080/')
    """

    url: str = attrs.field(repr=redacted_repr)
    """The URL this connection went to (a password in it is hidden in the repr)."""


@attrs.frozen
class ConnectionFailed(Event):
    """An attempt failed, or an established connection was lost.

    Example:
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

    Example:
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


@attrs.frozen
class Undelivered(Event):
    """Messages taken by ``send()`` that will not be written, and why: left in
    the outbox when the socket closed or gave up, dropped by
    ``overflow="drop-oldest"``, or being written when the connection died (those
    may or may not have arrived: WebSocket cannot tell).

    Example:
        >>> Undelivered(messages=("a", "b"), reason="closed").messages
        ('a', 'b')
    """

    messages: tuple[Message, ...]
    """The messages, in the order they were sent."""
    reason: str
    """``"closed"``, ``"gave up"``, ``"dropped"`` or ``"in flight"``."""


@attrs.frozen
class Closed(Event):
    """The socket was closed by ``close()``, ``open()`` of another URL, or leaving
    the ``async with`` block. It is the last event of that connection.

    Example:
        >>> Closed(url="ws://h/")
        Closed(url='ws://h/')
    """

    url: str | None = attrs.field(repr=redacted_repr)
    """The URL that was open, if any."""
