"""Counters and the ``statistics()`` snapshot."""

from __future__ import annotations

import attrs

from ._state import State, Status

__all__ = ["Counters", "SocketStatistics"]


@attrs.frozen
class SocketStatistics:
    """A snapshot of a ClientSocket, from ``statistics()``.

    Examples:
        >>> SocketStatistics().status
        <Status.DISCONNECTED: 'Disconnected'>
    """

    state: State = State.IDLE
    """The fine-grained state (idle, connecting, connected, waiting, closing)."""
    status: Status = Status.DISCONNECTED
    """The GeneXus status."""
    attempts: int = 0
    """Connection attempts made since the socket was entered."""
    reconnects: int = 0
    """Successful handshakes after the first one since the last ``open()``."""
    consecutive_failures: int = 0
    """Failures since the last connection that stayed up ``min_uptime``."""
    messages_sent: int = 0
    """Messages written to a connection."""
    messages_received: int = 0
    """Messages received."""
    messages_dropped: int = 0
    """Messages reported in ``Undelivered`` events."""
    events_dropped: int = 0
    """Connection reports dropped because the application did not read
    ``events()`` (each drop is counted by a ``Skipped`` event in the stream)."""
    events_buffered: int = 0
    """Events waiting to be read from ``events()``."""
    bytes_sent: int = 0
    """Bytes written to the wire (frames and handshakes included)."""
    bytes_received: int = 0
    """Bytes read from the wire."""
    outbox_depth: int = 0
    """Messages waiting in the outbox (the one being written included)."""
    subprotocol: str | None = None
    """The subprotocol of the current (or last) connection, if one was chosen."""
    compressed: bool = False
    """permessage-deflate is used on the current (or last) connection."""
    last_error: BaseException | None = attrs.field(default=None, eq=False)
    """The error of the last ``ConnectionFailed``."""
    last_rtt: float | None = None
    """Round-trip time of the last ping answered (keepalive or ``ping()``), in seconds."""


@attrs.define(eq=False)
class Counters:
    """The socket's running counts (a snapshot of them is ``SocketStatistics``)."""

    attempts: int = 0
    reconnects: int = 0
    failures: int = 0
    sent: int = 0
    received: int = 0
    dropped: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    last_error: BaseException | None = None
    last_rtt: float | None = None
    subprotocol: str | None = None
    compressed: bool = False
