"""Section 7, Close Handling: what follows our close frame (7.1), close frames
of every payload length (7.3), an invalid UTF-8 reason (7.5), valid (7.7) and
invalid (7.9) close codes, and codes the spec leaves open (7.13,
informational). In the cases that grade the close code, a WRONG CODE close
fails the case."""

from __future__ import annotations

from ..case import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    FAILED,
    INFORMATIONAL,
    NON_STRICT,
    OK,
    WRONG_CODE,
    Case,
    CaseFactory,
    ExpectedClose,
    Peer,
)
from ..frames import OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT, close_payload

__all__ = ["CASES"]

_HELLO = b"Hello World!"
_INVALID_UTF8 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"


class CloseCase(Case):
    """The common frame of section 7: subclasses say what ``on_open`` sends;
    a WRONG CODE close fails the case."""

    suppress_close = True

    def __init__(
        self, id: str, description: str, expectation: str, codes: list[int], clean: bool
    ) -> None:
        super().__init__()
        self.id = id
        self.description = description
        self.expectation = expectation
        self._codes = codes
        self._clean = clean

    def on_open(self, p: Peer) -> None:
        self.expected[OK] = []
        self.expected_close = ExpectedClose(True, list(self._codes), self._clean)
        self.send(p)
        p.kill_after(1.0)

    def send(self, p: Peer) -> None:
        raise NotImplementedError

    def on_connection_lost(self, p: Peer) -> None:
        super().on_connection_lost(p)
        if self.behavior_close == WRONG_CODE:
            self.behavior = FAILED
            self.result = self.result_close


class Steps(CloseCase):
    """Sends a fixed list of steps: ("close", code, reason) is ``send_close``,
    ("raw", payload) is ``send_close_frame_raw``, ("frame", opcode, payload,
    fin) is ``send_frame``."""

    def __init__(
        self,
        id: str,
        description: str,
        expectation: str,
        codes: list[int],
        clean: bool,
        steps: list[tuple[object, ...]],
    ) -> None:
        super().__init__(id, description, expectation, codes, clean)
        self.steps = steps

    def send(self, p: Peer) -> None:
        for step in self.steps:
            match step:
                case ("close", int(code), bytes(reason)):
                    p.send_close(code, reason)
                case ("raw", bytes(payload)):
                    p.send_close_frame_raw(payload)
                case ("frame", int(opcode), bytes(payload), bool(fin)):
                    p.send_frame(opcode, payload, fin=fin)
                case _:
                    raise ValueError(f"unknown step {step!r}")


class EchoThenClose(CloseCase):
    """7.1.1: a message, echoed, then our close (not suppressed)."""

    suppress_close = False

    def send(self, p: Peer) -> None:
        self.expected[OK] = [("message", _HELLO, False)]
        p.send_frame(OP_TEXT, _HELLO)


class LargeMessageThenClose(Case):
    """7.1.6: a 256 KiB message, a small one, our close and a ping, back to
    back; informational: whether the client echoed before closing."""

    suppress_close = True
    id = "7.1.6"
    description = "Send 256K message followed by close then a ping"
    expectation = (
        "Case outcome depends on implementation defined close behavior. Message and close "
        "frame are sent back to back. If the close frame is processed before the text message "
        "write is complete (as can happen in asynchronous processing models) the close frame "
        "is processed first and the text message may not be received or may only be partially "
        "received."
    )

    def on_open(self, p: Peer) -> None:
        self.expected[OK] = [("message", _HELLO, False)]
        self.expected[NON_STRICT] = []
        self.expected_close = ExpectedClose(True, [CLOSE_NORMAL], True)
        p.send_frame(OP_TEXT, b"BAsd7&jh23", payload_len=256 * 2**10)
        p.send_frame(OP_TEXT, _HELLO)
        p.send_close(CLOSE_NORMAL)
        p.send_frame(OP_PING)
        p.kill_after(1.0)

    def on_connection_lost(self, p: Peer) -> None:
        super().on_connection_lost(p)
        if self.behavior == OK:
            self.result = "Text message was processed before close."
        elif self.behavior == NON_STRICT:
            self.result = "Close was processed before text message could be returned."
        self.behavior = INFORMATIONAL
        self.behavior_close = INFORMATIONAL


class Informational(Steps):
    """7.13.x: a close code the spec leaves undefined; whatever happens is
    informational."""

    def on_connection_lost(self, p: Peer) -> None:
        Case.on_connection_lost(self, p)
        self.behavior = INFORMATIONAL
        self.behavior_close = INFORMATIONAL
        self.result = "Actual events are undefined by the spec."


_CLEAN_NORMAL = "Clean close with normal code."


def _steps(
    id: str,
    description: str,
    expectation: str,
    codes: list[int],
    clean: bool,
    *steps: tuple[object, ...],
) -> CaseFactory:
    return lambda: Steps(id, description, expectation, codes, clean, list(steps))


def _raw(code: int | None, reason: bytes = b"") -> tuple[object, ...]:
    """autobahn's ``sendCloseFrame(code, reason)``: any code, any reason."""
    return ("raw", close_payload(code, reason) if code is not None else reason)


_VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
_INVALID_CODES = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999]
_N = [CLOSE_NORMAL]
_CLOSE = ("close", CLOSE_NORMAL, b"")

CASES: list[CaseFactory] = [
    lambda: EchoThenClose(
        "7.1.1",
        "Send a message followed by a close frame",
        "Echoed message followed by clean close with normal code.",
        _N,
        True,
    ),
    _steps(
        "7.1.2",
        "Send two close frames",
        "Clean close with normal code. Second close frame ignored.",
        _N,
        True,
        _CLOSE,
        ("frame", OP_CLOSE, b"", True),
    ),
    _steps(
        "7.1.3",
        "Send a ping after close message",
        "Clean close with normal code, no pong.",
        _N,
        True,
        _CLOSE,
        ("frame", OP_PING, b"", True),
    ),
    _steps(
        "7.1.4",
        "Send text message after sending a close frame.",
        "Clean close with normal code. Text message ignored.",
        _N,
        True,
        _CLOSE,
        ("frame", OP_TEXT, _HELLO, True),
    ),
    _steps(
        "7.1.5",
        "Send message fragment1 followed by close then fragment",
        _CLEAN_NORMAL,
        _N,
        True,
        ("frame", OP_TEXT, b"fragment1", False),
        _CLOSE,
        ("frame", OP_CONTINUATION, b"fragment2", True),
    ),
    LargeMessageThenClose,
    _steps(
        "7.3.1",
        "Send a close frame with payload length 0 (no close code, no close reason)",
        _CLEAN_NORMAL,
        _N,
        True,
        _raw(None),
    ),
    _steps(
        "7.3.2",
        "Send a close frame with payload length 1",
        "Clean close with protocol error or drop TCP.",
        [CLOSE_PROTOCOL_ERROR],
        False,
        _raw(None, b"a"),
    ),
    _steps(
        "7.3.3",
        "Send a close frame with payload length 2 (regular close with a code)",
        _CLEAN_NORMAL,
        _N,
        True,
        _CLOSE,
    ),
    _steps(
        "7.3.4",
        "Send a close frame with close code and close reason",
        _CLEAN_NORMAL,
        _N,
        True,
        ("close", CLOSE_NORMAL, _HELLO),
    ),
    _steps(
        "7.3.5",
        "Send a close frame with close code and close reason of maximum length (123)",
        _CLEAN_NORMAL,
        _N,
        True,
        ("close", CLOSE_NORMAL, b"*" * 123),
    ),
    _steps(
        "7.3.6",
        "Send a close frame with close code and close reason which is too long "
        "(124) - total frame payload 126 octets",
        "Clean close with protocol error code or dropped TCP connection.",
        [CLOSE_PROTOCOL_ERROR],
        False,
        _raw(CLOSE_NORMAL, b"*" * 124),
    ),
    _steps(
        "7.5.1",
        "Send a close frame with invalid UTF8 payload",
        "Clean close with protocol error or invalid utf8 code or dropped TCP.",
        [CLOSE_PROTOCOL_ERROR, CLOSE_INVALID_PAYLOAD],
        False,
        _raw(CLOSE_NORMAL, _INVALID_UTF8),
    ),
]
CASES += [
    _steps(
        f"7.7.{n}",
        f"Send close with valid close code {code}",
        "Clean close with normal or echoed code",
        [CLOSE_NORMAL, code],
        True,
        _raw(code),
    )
    for n, code in enumerate(_VALID_CODES, start=1)
]
CASES += [
    _steps(
        f"7.9.{n}",
        f"Send close with invalid close code {code}",
        "Clean close with protocol error code or drop TCP",
        [CLOSE_PROTOCOL_ERROR],
        False,
        _raw(code),
    )
    for n, code in enumerate(_INVALID_CODES, start=1)
]


def _informational(id: str, code: int) -> CaseFactory:
    return lambda: Informational(
        id,
        f"Send close with close code {code}",
        "Actual events are undefined by the spec.",
        [CLOSE_NORMAL, code, CLOSE_PROTOCOL_ERROR],
        False,
        [_raw(code)],
    )


CASES += [_informational("7.13.1", 5000), _informational("7.13.2", 65535)]
