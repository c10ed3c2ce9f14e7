"""Section 9, limits and performance: the 54 cases Autobahn plays against
clients (9.1.1-9.8.6; 9.9.1 is commented out of its case list).

- 9.1/9.2: one text/binary message of 64 KiB to 16 MiB in one frame.
- 9.3/9.4: one 4 MiB text/binary message in fragments of 64 B to 4 MiB.
- 9.5/9.6: one 1 MiB text/binary frame written in chops of 64 to 2048 octets,
  one TCP write each.
- 9.7/9.8: 1,000 text/binary messages of 0 to 4,096 bytes, one at a time,
  each sent when the previous echo came back.

Each case waits for the echo(es) for Autobahn's time (``WAITSECS``, 10 s to
1,000 s), then starts the closing handshake; it is OK when every echo came
back with the type and length sent (Autobahn checks no content: "FIXME"),
FAILED otherwise, and its run time is reported. The close must be clean, with
1000 or no code, started by the server.

Facts from autobahn's case9_*.py: payloads (``payload_len`` repeats a short
pattern to the length), sizes, fragment and chop sizes, timeouts, result texts.
The descriptions are built from the parameters in Autobahn's words; three of
its typos are not carried over (9.2.5 says 16M for 8M, 9.3.9 says 8M for 4M,
9.6.2-9.6.6 expect a "text" echo of a binary message).
"""

from __future__ import annotations

from functools import partial

from ..case import CLOSE_NORMAL, FAILED, OK, Case, CaseFactory, ExpectedClose, Peer

__all__ = ["CASES"]

_TEXT, _BINARY = 1, 2
_TEXT_PATTERN = b"BAsd7&jh23"
_BINARY_PATTERN = b"\x00\xfe\x23\xfa\xf0"


def _size(n: int) -> str:
    """Autobahn's way to write a size: "4 * 2**20 (4M)"."""
    if n >= 2**20:
        return f"{n // 2**20} * 2**20 ({n // 2**20}M)"
    return f"{n // 2**10} * 2**10 ({n // 2**10}k)"


def _short(n: int) -> str:
    """A fragment size as Autobahn writes it: 64, 1k, 4M."""
    if n >= 2**20:
        return f"{n // 2**20}M"
    return f"{n // 2**10}k" if n >= 2**10 else str(n)


def _kind(binary: bool) -> str:
    return "binary" if binary else "text"


def _expected_close() -> ExpectedClose:
    return ExpectedClose(closed_by_me=True, close_code=[CLOSE_NORMAL], require_clean=True)


class OneMessage(Case):
    """9.1-9.6: one large message; OK when it comes back with the type and length sent."""

    report_time = True

    def __init__(
        self,
        case_id: str,
        description: str,
        *,
        binary: bool,
        length: int,
        wait: float,
        pattern: bytes,
        fragment_size: int | None = None,
        chopsize: int | None = None,
    ) -> None:
        super().__init__()
        self.id = case_id
        self.description = description
        self.expectation = f"Receive echo'ed {_kind(binary)} message (with payload as sent)."
        self.binary = binary
        self.length = length
        self.wait = wait
        self.pattern = pattern
        self.fragment_size = fragment_size
        self.chopsize = chopsize
        self.ended = False

    def on_open(self, p: Peer) -> None:
        self.behavior = FAILED
        self.expected_close = _expected_close()
        self.result = f"Did not receive message within {self.wait:g} seconds."
        if self.fragment_size is None:
            opcode = _BINARY if self.binary else _TEXT
            p.send_frame(opcode, self.pattern, payload_len=self.length, chopsize=self.chopsize)
        else:
            payload = self.pattern * self.length  # a one-byte pattern
            p.send_message(payload, self.binary, fragment_size=self.fragment_size)
        p.close_after(self.wait)

    def on_message(self, p: Peer, payload: bytes, binary: bool) -> None:
        if self.ended:
            return  # the first message decides; the closing handshake is under way
        self.ended = True
        kind = _kind(self.binary)
        if binary != self.binary:
            self.result = f"Expected {kind} message with payload, but got {_kind(binary)}."
        elif len(payload) != self.length:
            self.result = (
                f"Expected {kind} message with payload of length {self.length},"
                f" but got {len(payload)}."
            )
        else:
            self.behavior = OK
            self.result = f"Received {kind} message of length {len(payload)}."
        p.send_close(CLOSE_NORMAL)


class RoundTrips(Case):
    """9.7/9.8: ``count`` messages of ``length`` bytes, each sent when the
    previous echo came back; OK when all came back in time."""

    report_time = True

    def __init__(self, case_id: str, *, binary: bool, length: int, count: int, wait: float) -> None:
        super().__init__()
        kind = _kind(binary)
        self.id = case_id
        self.description = (
            f"Send {count} {kind} messages of payload size {length} to measure"
            " implementation/network RTT (round trip time) / latency."
        )
        self.expectation = (
            f"Receive echo'ed {kind} messages (with payload as sent)."
            f" Timeout case after {wait:g} secs."
        )
        self.binary = binary
        self.length = length
        self.count = count
        self.wait = wait
        self.sent = 0
        self.ended = False

    def on_open(self, p: Peer) -> None:
        self.behavior = FAILED
        self.expected_close = _expected_close()
        self.result = f"Case did not finish within {self.wait:g} seconds."
        p.close_after(self.wait)
        self._send_one(p)

    def _send_one(self, p: Peer) -> None:
        if self.binary:
            p.send_frame(_BINARY, b"\xfe", payload_len=self.length)
        else:
            p.send_frame(_TEXT, b"*", payload_len=self.length)
        self.sent += 1

    def on_message(self, p: Peer, payload: bytes, binary: bool) -> None:
        if self.ended:
            return  # the closing handshake is under way
        if binary != self.binary or len(payload) != self.length:
            self.result = (
                "Echo'ed message type or length differs from what I sent"
                f" (got binary = {binary}, payload length = {len(payload)})."
            )
            self.ended = True
            p.send_close(CLOSE_NORMAL)
        elif self.sent < self.count:
            self._send_one(p)
        else:
            self.behavior = OK
            self.result = "Ok, received all echo'ed messages in time."
            self.ended = True
            p.send_close(CLOSE_NORMAL)


def _section_9() -> list[CaseFactory]:
    cases: list[CaseFactory] = []
    # 9.1 / 9.2: (length, timeout) of one message in one frame
    one_frame = {
        False: [(64 * 2**10, 10), (256 * 2**10, 10), (2**20, 100),
                (4 * 2**20, 100), (8 * 2**20, 100), (16 * 2**20, 100)],
        True: [(64 * 2**10, 10), (256 * 2**10, 10), (2**20, 10),
               (4 * 2**20, 10), (8 * 2**20, 100), (16 * 2**20, 100)],
    }  # fmt: skip
    for sub, binary in ((1, False), (2, True)):
        for i, (length, wait) in enumerate(one_frame[binary], 1):
            description = (
                f"Send {_kind(binary)} message message with payload of length {_size(length)}."
            )
            pattern = _BINARY_PATTERN if binary else _TEXT_PATTERN
            cases.append(
                partial(OneMessage, f"9.{sub}.{i}", description, binary=binary,
                        length=length, wait=wait, pattern=pattern)
            )  # fmt: skip
    # 9.3 / 9.4: a 4 MiB message in fragments of growing size
    length = 4 * 2**20
    fragment_sizes = [64, 256, 2**10, 4 * 2**10, 16 * 2**10, 64 * 2**10, 256 * 2**10,
                      2**20, 4 * 2**20]  # fmt: skip
    for sub, binary in ((3, False), (4, True)):
        for i, fragment_size in enumerate(fragment_sizes, 1):
            description = (
                f"Send fragmented {_kind(binary)} message message with message payload of"
                f" length {_size(length)}. Sent out in fragments of {_short(fragment_size)}."
            )
            pattern = b"\xfe" if (binary and i == 1) else b"*"  # as autobahn's 9.4.x
            cases.append(
                partial(OneMessage, f"9.{sub}.{i}", description, binary=binary,
                        length=length, wait=100, pattern=pattern, fragment_size=fragment_size)
            )  # fmt: skip
    # 9.5 / 9.6: a 1 MiB frame written in chops of growing size
    length = 2**20
    for sub, binary in ((5, False), (6, True)):
        for i, chopsize in enumerate([64, 128, 256, 512, 1024, 2048], 1):
            description = (
                f"Send {_kind(binary)} message message with payload of length {_size(length)}."
                f" Sent out data in chops of {chopsize} octets."
            )
            pattern = _BINARY_PATTERN if binary else _TEXT_PATTERN
            cases.append(
                partial(OneMessage, f"9.{sub}.{i}", description, binary=binary,
                        length=length, wait=1000, pattern=pattern, chopsize=chopsize)
            )  # fmt: skip
    # 9.7 / 9.8: 1,000 round trips of growing size
    round_trips = [(0, 1000, 60), (16, 1000, 60), (64, 1000, 60), (256, 1000, 120),
                   (1024, 1000, 240), (4096, 1000, 480)]  # fmt: skip
    for sub, binary in ((7, False), (8, True)):
        for i, (length, count, wait) in enumerate(round_trips, 1):
            cases.append(
                partial(RoundTrips, f"9.{sub}.{i}", binary=binary, length=length,
                        count=count, wait=wait)
            )  # fmt: skip
    return cases


CASES: list[CaseFactory] = _section_9()
