"""The case API: the ``Case`` base class, the ``Peer`` a case drives, the
verdicts, and the grading, as autobahn's ``case/case.py`` does it.

A case states in ``on_open`` what it expects (``expected``: verdict -> the
exact list of events that earns it; ``expected_close``: who must start the
closing handshake, the acceptable close codes of the client, whether the close
must be clean) and drives the connection through the ``Peer``. The server
records what the client sends (``received``) and calls ``on_connection_lost``
when the TCP connection is gone; the default grades as autobahn does:

- ``behavior``: the first verdict of ``expected`` whose events equal
  ``received`` exactly, else FAILED ("Actual events differ from any expected.");
- ``behavior_close``: FAILED when the wrong endpoint started the closing
  handshake, UNCLEAN when a clean close was required and did not happen, WRONG
  CODE when the client's close code is not one of ``close_code`` (no code is
  fine), else OK; FAILED when the opening handshake never completed;
- with ``closed_by_wrong_endpoint_is_fatal`` (the UTF-8 cases), a close
  started by the wrong endpoint also makes ``behavior`` FAILED.

Two facts of autobahn's server that the grading relies on: a ping from the
client is answered by the server with a pong and never recorded (autobahn's
fuzzing protocol does not pass pings to the case), and once the server has
failed the connection (``failed_by_me``) it passes no more messages to the
case.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeAlias

if TYPE_CHECKING:
    from .deflate import Deflate, DeflateOffer

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INVALID_PAYLOAD",
    "CLOSE_NORMAL",
    "CLOSE_PROTOCOL_ERROR",
    "FAILED",
    "FAILED_BY_CLIENT",
    "INFORMATIONAL",
    "NON_STRICT",
    "OK",
    "UNCLEAN",
    "UNIMPLEMENTED",
    "WRONG_CODE",
    "Case",
    "CaseFactory",
    "Event",
    "ExpectedClose",
    "Peer",
    "State",
    "Verdict",
]

Verdict: TypeAlias = Literal[
    "OK",
    "NON-STRICT",
    "FAILED",
    "WRONG CODE",
    "UNCLEAN",
    "FAILED BY CLIENT",
    "INFORMATIONAL",
    "UNIMPLEMENTED",
]
OK: Final = "OK"
NON_STRICT: Final = "NON-STRICT"
FAILED: Final = "FAILED"
WRONG_CODE: Final = "WRONG CODE"
UNCLEAN: Final = "UNCLEAN"
FAILED_BY_CLIENT: Final = "FAILED BY CLIENT"
INFORMATIONAL: Final = "INFORMATIONAL"
UNIMPLEMENTED: Final = "UNIMPLEMENTED"

Event: TypeAlias = tuple[str, bytes, bool] | tuple[str, bytes]
"""``("message", payload, binary)``, ``("ping", payload)``, ``("pong", payload)``,
or a case's own marker such as ``("timeout", b"A")``. Text payloads are the
UTF-8 bytes as received, never decoded."""

CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_INVALID_PAYLOAD: Final = 1007


class State(enum.Enum):
    """The WebSocket connection's state, as the server sees it."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"  # a close frame went out (ours, or our answer)
    CLOSED = "closed"  # the TCP connection is gone or being dropped


@dataclass
class ExpectedClose:
    closed_by_me: bool
    """The server (we) must be the one that starts the closing handshake."""
    close_code: list[int]
    """The close codes acceptable from the client (no code at all is acceptable too)."""
    require_clean: bool
    """The closing handshake must complete (close frames both ways) before TCP goes."""
    closed_by_wrong_endpoint_is_fatal: bool = False
    """A closing handshake started by the wrong endpoint also fails ``behavior``."""


class Peer(Protocol):
    """The server's side of one connection, as a case drives it. Every call
    is synchronous and only queues bytes: what one callback (on_open, a timer,
    on_message...) queues goes out in ONE TCP write when the callback returns,
    and for on_open in the same write as the 101 answer (as Autobahn does),
    unless sync=True or chopsize is given (see send_frame)."""

    deflate: Deflate | None
    """The permessage-deflate agreed with the client, None if none."""

    # What the grading reads (autobahn's protocol attributes).
    state: State
    connection_was_open: bool
    closed_by_me: bool
    failed_by_me: bool
    dropped_by_me: bool
    was_clean: bool
    remote_close_code: int | None
    tx_frames: dict[int, int]
    """Frames the server sent, by opcode."""

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bytes | None = None,
        payload_len: int | None = None,
        chopsize: int | None = None,
        sync: bool = False,
    ) -> None:
        """Write one frame. ``payload_len``: the frame carries that many octets,
        ``payload`` repeated to fill them (autobahn). ``chopsize``: the frame
        goes out in pieces of that size, one TCP write each. ``sync``: the frame
        goes out in a TCP write of its own."""

    def send_message(
        self,
        payload: bytes,
        binary: bool,
        *,
        fragment_size: int | None = None,
        sync: bool = False,
    ) -> None:
        """A data message, compressed with ``deflate`` when agreed, in frames
        of ``fragment_size`` octets (None: one frame; autobahn's fragmenting,
        which ends a payload that is a multiple of the size with an empty
        frame). Nothing is sent unless the connection is open."""

    def send_ping(self, payload: bytes = b"") -> None: ...

    def send_pong(self, payload: bytes = b"") -> None: ...

    def send_close(self, code: int | None = None, reason: bytes = b"") -> None:
        """Start the closing handshake (closed_by_me = True), once; ignored
        while closing or closed."""

    def send_close_frame_raw(self, payload: bytes) -> None:
        """Start the closing handshake with any close payload (autobahn's
        ``sendCloseFrame``), once; ignored while closing or closed."""

    def send_raw(self, data: bytes) -> None:
        """Write octets as they are (a frame header that lies, a frame's tail)."""

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` after ``delay`` seconds if the connection is not closed
        (autobahn's ``continueLater``)."""

    def kill_after(self, delay: float) -> None:
        """After ``delay`` seconds, if not closed, fail the connection as
        autobahn's ``killAfter`` does: a close frame 1001 when open (the client
        has 1 s to answer), dropping TCP when already closing."""

    def close_after(self, delay: float) -> None:
        """After ``delay`` seconds, if not closed, start the closing handshake
        with an empty close frame (autobahn's ``closeAfter``)."""

    def fail(self, result: str) -> None:
        """Grade the case FAILED with this result text (overrides the grading)."""


class Case:
    """One Autobahn case. Subclasses set ``id``, ``description`` and
    ``expectation`` (class attributes or after ``__init__``) and override
    ``on_open``; the defaults record events and grade as autobahn does."""

    id: str = ""
    description: str = ""
    expectation: str = ""
    suppress_close: bool = False
    report_time: bool = False

    def __init__(self) -> None:
        self.expected: dict[str, list[Event]] = {}
        self.expected_close = ExpectedClose(closed_by_me=True, close_code=[], require_clean=True)
        self.behavior: str = FAILED
        self.behavior_close: str = FAILED
        self.result = "Actual events differ from any expected."
        self.result_close = "TCP connection was dropped without close handshake"
        self.received: list[Event] = []

    def accept_deflate(self, offers: list[DeflateOffer]) -> Deflate | None:
        """The permessage-deflate to agree to, from the client's offers (None: none)."""
        return None

    def on_open(self, p: Peer) -> None:
        """The connection is open: send, set ``expected`` and ``expected_close``."""

    def on_message(self, p: Peer, payload: bytes, binary: bool) -> None:
        self.received.append(("message", payload, binary))
        self.finish_when_done(p)

    def on_ping(self, p: Peer, payload: bytes) -> None:
        """A ping from the client; the server has answered it with a pong.
        Not recorded, as in autobahn (whose server never passes pings to the case)."""

    def on_pong(self, p: Peer, payload: bytes) -> None:
        self.received.append(("pong", payload))
        self.finish_when_done(p)

    def finish_when_done(self, p: Peer) -> None:
        """Start the closing handshake once ``received`` equals every expected
        outcome (autobahn's ``finishWhenDone``: with two outcomes it never does)."""
        if any(self.received != events for events in self.expected.values()):
            return
        if self.expected_close.closed_by_me and not self.suppress_close:
            p.send_close(self.expected_close.close_code[0])

    def on_connection_lost(self, p: Peer) -> None:
        """Grade ``behavior`` and ``behavior_close`` (autobahn's ``onConnectionLost``)."""
        for verdict, events in self.expected.items():
            if self.received == events:
                self.behavior = verdict
                self.result = "Actual events match at least one expected."
                break
        if not p.connection_was_open:
            self.behavior_close = FAILED
            self.result_close = "The WebSocket opening handshake was never completed!"
            return
        want = self.expected_close
        if want.closed_by_me != p.closed_by_me:
            self.behavior_close = FAILED
            self.result_close = "The connection was failed by the wrong endpoint"
        elif want.require_clean and not p.was_clean:
            self.behavior_close = UNCLEAN
            self.result_close = "The spec requires the connection to be failed cleanly here"
        elif p.remote_close_code is not None and p.remote_close_code not in want.close_code:
            self.behavior_close = WRONG_CODE
            codes = ",".join(map(str, want.close_code))
            self.result_close = f"The close code should have been {codes} or empty"
        else:
            self.behavior_close = OK
            self.result_close = "Connection was properly closed"
        if want.closed_by_wrong_endpoint_is_fatal and want.closed_by_me != p.closed_by_me:
            self.behavior = FAILED


CaseFactory: TypeAlias = Callable[[], Case]
"""What the registry holds: a fresh case for each run (a case is stateful)."""
