"""The connection state machine: every state and transition lives here.

Pure code: it knows nothing about sockets or time. The reconnect loop feeds it
triggers and reads the state; ``Status`` (what GeneXus shows) is derived from
the state, never stored apart from it. The table holds every transition the
socket makes, and nothing else: ``tests/test_state.py`` checks that each one
is reached through the public API.

.. code-block:: text

    IDLE --open--> CONNECTING --connected--> CONNECTED
    CONNECTING --failed--> WAITING --retry--> CONNECTING
    CONNECTED --lost--> WAITING
    CONNECTING/CONNECTED --give_up--> IDLE   (not retried: no retry left, or fatal)
    CONNECTED --close--> CLOSING --closed--> IDLE
    CONNECTING/WAITING --close--> IDLE
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "ConnectionState", "State", "Status", "Trigger"]


class Status(enum.StrEnum):
    """The GeneXus ``Status`` property: ``Status.CONNECTED`` exactly while a
    handshake-completed connection is up.

    Examples:
        >>> Status.CONNECTED.value
        'Connected'
        >>> Status("Disconnected") is Status.DISCONNECTED
        True
    """

    CONNECTED = "Connected"
    DISCONNECTED = "Disconnected"


class State(enum.Enum):
    """The finer state behind ``Status`` (reported by ``statistics()``).

    Examples:
        >>> State.WAITING.value
        'waiting'
    """

    IDLE = "idle"
    """No target: never opened, closed, or gave up."""
    CONNECTING = "connecting"
    """An attempt (TCP, TLS, handshake) is in progress."""
    CONNECTED = "connected"
    """The handshake completed and the connection is up."""
    WAITING = "waiting"
    """Waiting out the backoff delay before the next attempt."""
    CLOSING = "closing"
    """``close()`` is flushing the outbox and closing the connection."""


class Trigger(enum.Enum):
    OPEN = "open"
    CONNECTED = "connected"
    FAILED = "failed"
    LOST = "lost"
    RETRY = "retry"
    GIVE_UP = "give_up"
    CLOSE = "close"
    CLOSED = "closed"


S, T = State, Trigger
TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (S.IDLE, T.OPEN): S.CONNECTING,
    (S.CONNECTING, T.CONNECTED): S.CONNECTED,
    (S.CONNECTING, T.FAILED): S.WAITING,
    (S.CONNECTING, T.GIVE_UP): S.IDLE,
    (S.CONNECTING, T.CLOSE): S.IDLE,
    (S.WAITING, T.RETRY): S.CONNECTING,
    (S.WAITING, T.CLOSE): S.IDLE,
    (S.CONNECTED, T.LOST): S.WAITING,
    (S.CONNECTED, T.GIVE_UP): S.IDLE,
    (S.CONNECTED, T.CLOSE): S.CLOSING,
    (S.CLOSING, T.CLOSED): S.IDLE,
}
"""Every transition: (state, trigger) -> next state."""
del S, T


class ConnectionState:
    """Holds the current ``State`` and applies triggers by the table above.

    Examples:
        >>> m = ConnectionState()
        >>> m.fire(Trigger.OPEN), m.status
        (<State.CONNECTING: 'connecting'>, <Status.DISCONNECTED: 'Disconnected'>)
        >>> m.fire(Trigger.CONNECTED), m.status
        (<State.CONNECTED: 'connected'>, <Status.CONNECTED: 'Connected'>)
    """

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = State.IDLE

    @property
    def status(self) -> Status:
        return Status.CONNECTED if self.state is State.CONNECTED else Status.DISCONNECTED

    def fire(self, trigger: Trigger) -> State:
        """Apply ``trigger``; RuntimeError if the table has no such transition."""
        try:
            self.state = TRANSITIONS[self.state, trigger]
        except KeyError:
            raise RuntimeError(
                f"invalid transition: {trigger.value} in state {self.state.value}"
            ) from None
        return self.state
