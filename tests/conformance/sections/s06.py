"""Section 6, UTF-8 Handling: empty and fragmented text (6.1), valid UTF-8
split on and within code points (6.2), invalid UTF-8 (6.3), fail-fast on
invalid UTF-8 arriving in parts with pauses (6.4), and Markus Kuhn's UTF-8
decoder test sequences, one case each (6.5 onwards, generated from the table
of autobahn's ``case6_x_x.py``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..case import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_NORMAL,
    NON_STRICT,
    OK,
    Case,
    CaseFactory,
    ExpectedClose,
    Peer,
    State,
)
from ..frames import OP_CONTINUATION, OP_TEXT, frame_header
from ._script import Frame, Scripted

__all__ = ["CASES", "utf8_sequences"]

_ECHOED = "A message is echo'ed back to us"
_KAPPA = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"  # "κόσμε"
_HELLO = "Hello-µ@ßöäüàá-UTF-8!!".encode()


def _server_closes() -> ExpectedClose:
    return ExpectedClose(True, [CLOSE_NORMAL], True)


def _client_fails_utf8() -> ExpectedClose:
    return ExpectedClose(
        False, [CLOSE_INVALID_PAYLOAD], False, closed_by_wrong_endpoint_is_fatal=True
    )


class MessageCase(Case):
    """Send one text message with ``send_message``; expect its echo (valid
    UTF-8) or the client to fail the connection with 1007 (invalid); ``end``:
    ``close_after`` or ``kill_after`` that many seconds."""

    def __init__(
        self,
        id: str,
        description: str,
        payload: bytes,
        valid: bool,
        end: tuple[str, float],
        fragment_size: int | None = None,
    ) -> None:
        super().__init__()
        self.id = id
        self.description = description
        self.expectation = (
            "The message is echo'ed back to us."
            if valid
            else "The connection is failed immediately, since the payload is not valid UTF-8."
        )
        self.payload = payload
        self.valid = valid
        self.fragment_size = fragment_size
        self.end = end

    def on_open(self, p: Peer) -> None:
        if self.valid:
            self.expected[OK] = [("message", self.payload, False)]
            self.expected_close = _server_closes()
        else:
            self.expected[OK] = []
            self.expected_close = _client_fails_utf8()
        p.send_message(self.payload, False, fragment_size=self.fragment_size)
        how, delay = self.end
        (p.close_after if how == "close" else p.kill_after)(delay)


class FailFast(Case):
    """6.4.x: a text message whose invalid octet arrives 1 s after its valid
    start, and its end 1 s later; the client should fail the connection when
    the invalid octet arrives ("timeout A" only: OK), at the latest at the end
    ("timeout B" too: NON-STRICT). ``frames``: the parts are frames of their
    own (6.4.1-2), else chops of one frame (6.4.3-4)."""

    def __init__(
        self, id: str, description: str, parts: tuple[bytes, bytes, bytes], frames: bool
    ) -> None:
        super().__init__()
        self.id = id
        self.description = description
        self.expectation = (
            "The first part is accepted, we expect to timeout on the first wait. The 2nd part "
            "should be rejected immediately (fail fast on UTF-8). If we timeout, we expect the "
            "connection is failed at least then, since the complete message payload is not "
            "valid UTF-8."
        )
        self.parts = parts
        self.frames = frames

    def on_open(self, p: Peer) -> None:
        self.expected[OK] = [("timeout", b"A")]
        self.expected[NON_STRICT] = [("timeout", b"A"), ("timeout", b"B")]
        self.expected_close = _client_fails_utf8()
        first = self.parts[0]
        if self.frames:
            p.send_frame(OP_TEXT, first, fin=False)
        else:  # autobahn's beginMessage + beginMessageFrame: FIN clear, the whole length
            p.send_raw(frame_header(OP_TEXT, sum(map(len, self.parts)), fin=False) + first)
        p.call_later(1.0, self._step(p, b"A", self.parts[1], last=False))

    def _step(self, p: Peer, mark: bytes, part: bytes, *, last: bool) -> Callable[[], None]:
        def step() -> None:
            if p.state is not State.OPEN:
                return
            self.received.append(("timeout", mark))
            if self.frames:
                p.send_frame(OP_CONTINUATION, part, fin=last)
            else:
                p.send_raw(part)
            if not last:
                p.call_later(1.0, self._step(p, b"B", self.parts[2], last=True))
                return
            if not self.frames:  # autobahn's endMessage: an empty final continuation frame
                p.send_frame(OP_CONTINUATION)
            p.kill_after(1.0)

        return step


def utf8_sequences() -> list[tuple[str, list[tuple[bool, bytes]]]]:
    """Autobahn's UTF-8 test table (Markus Kuhn's UTF-8-test.txt, plus
    non-characters and specials): (subsection title, [(valid, octets)])."""
    seqs: list[tuple[str, list[tuple[bool, bytes]]]] = []
    seqs.append(
        (
            "Some valid UTF-8 sequences",
            [
                (True, b"hello\x24world"),
                (True, b"hello\xc2\xa2world"),
                (True, b"hello\xe2\x82\xacworld"),
                (True, b"hello\xf0\xa4\xad\xa2world"),
                (True, _KAPPA),
            ],
        )
    )
    prefixes = [_KAPPA[:i] for i in range(1, len(_KAPPA) + 1)]
    seqs.append(
        (
            "All prefixes of a valid UTF-8 string that contains multi-byte code points",
            [(_valid(prefix), prefix) for prefix in prefixes],
        )
    )
    seqs.append(
        (
            "First possible sequence of a certain length",
            [
                (True, b"\x00"),
                (True, b"\xc2\x80"),
                (True, b"\xe0\xa0\x80"),
                (True, b"\xf0\x90\x80\x80"),
            ],
        )
    )
    seqs.append(
        (
            "First possible sequence length 5/6 (invalid codepoints)",
            [
                (False, b"\xf8\x88\x80\x80\x80"),
                (False, b"\xfc\x84\x80\x80\x80\x80"),
            ],
        )
    )
    seqs.append(
        (
            "Last possible sequence of a certain length",
            [
                (True, b"\x7f"),
                (True, b"\xdf\xbf"),
                (True, b"\xef\xbf\xbf"),
                (True, b"\xf4\x8f\xbf\xbf"),
            ],
        )
    )
    seqs.append(
        (
            "Last possible sequence length 4/5/6 (invalid codepoints)",
            [
                (False, b"\xf7\xbf\xbf\xbf"),
                (False, b"\xfb\xbf\xbf\xbf\xbf"),
                (False, b"\xfd\xbf\xbf\xbf\xbf\xbf"),
            ],
        )
    )
    seqs.append(
        (
            "Other boundary conditions",
            [
                (True, b"\xed\x9f\xbf"),
                (True, b"\xee\x80\x80"),
                (True, b"\xef\xbf\xbd"),
                (True, b"\xf4\x8f\xbf\xbf"),
                (False, b"\xf4\x90\x80\x80"),
            ],
        )
    )
    seqs.append(
        (
            "Unexpected continuation bytes",
            [
                (False, b"\x80"),
                (False, b"\xbf"),
                (False, b"\x80\xbf"),
                (False, b"\x80\xbf\x80"),
                (False, b"\x80\xbf\x80\xbf"),
                (False, b"\x80\xbf\x80\xbf\x80"),
                (False, b"\x80\xbf\x80\xbf\x80\xbf"),
                (False, bytes(range(0x80, 0xBF))),
            ],
        )
    )
    lonely = [(0xC0, 0xDF), (0xE0, 0xEF), (0xF0, 0xF7), (0xF8, 0xFB), (0xFC, 0xFD)]
    seqs.append(
        (
            "Lonely start characters",
            [(False, b"".join(bytes((i, 0x20)) for i in range(lo, hi))) for lo, hi in lonely],
        )
    )
    missing = [
        b"\xc0",
        b"\xe0\x80",
        b"\xf0\x80\x80",
        b"\xf8\x80\x80\x80",
        b"\xfc\x80\x80\x80\x80",
        b"\xdf",
        b"\xef\xbf",
        b"\xf7\xbf\xbf",
        b"\xfb\xbf\xbf\xbf",
        b"\xfd\xbf\xbf\xbf\xbf",
    ]
    seqs.append(("Sequences with last continuation byte missing", [(False, k) for k in missing]))
    seqs.append(("Concatenation of incomplete sequences", [(False, b"".join(missing))]))
    seqs.append(
        (
            "Impossible bytes",
            [
                (False, b"\xfe"),
                (False, b"\xff"),
                (False, b"\xfe\xfe\xff\xff"),
            ],
        )
    )
    seqs.append(
        (
            "Examples of an overlong ASCII character",
            [
                (False, b"\xc0\xaf"),
                (False, b"\xe0\x80\xaf"),
                (False, b"\xf0\x80\x80\xaf"),
                (False, b"\xf8\x80\x80\x80\xaf"),
                (False, b"\xfc\x80\x80\x80\x80\xaf"),
            ],
        )
    )
    seqs.append(
        (
            "Maximum overlong sequences",
            [
                (False, b"\xc1\xbf"),
                (False, b"\xe0\x9f\xbf"),
                (False, b"\xf0\x8f\xbf\xbf"),
                (False, b"\xf8\x87\xbf\xbf\xbf"),
                (False, b"\xfc\x83\xbf\xbf\xbf\xbf"),
            ],
        )
    )
    seqs.append(
        (
            "Overlong representation of the NUL character",
            [
                (False, b"\xc0\x80"),
                (False, b"\xe0\x80\x80"),
                (False, b"\xf0\x80\x80\x80"),
                (False, b"\xf8\x80\x80\x80\x80"),
                (False, b"\xfc\x80\x80\x80\x80\x80"),
            ],
        )
    )
    seqs.append(
        (
            "Single UTF-16 surrogates",
            [
                (False, b"\xed" + tail)
                for tail in (
                    b"\xa0\x80",
                    b"\xad\xbf",
                    b"\xae\x80",
                    b"\xaf\xbf",
                    b"\xb0\x80",
                    b"\xbe\x80",
                    b"\xbf\xbf",
                )
            ],
        )
    )
    highs, lows = (
        (b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf"),
        (b"\xed\xb0\x80", b"\xed\xbf\xbf"),
    )
    seqs.append(("Paired UTF-16 surrogates", [(False, hi + lo) for hi in highs for lo in lows]))
    noncharacters = [(True, b"\xef\xbf\xbe"), (True, b"\xef\xbf\xbf")]
    for z1 in (0xF0, 0xF1, 0xF2, 0xF3, 0xF4):
        for z2 in (0x8F, 0x9F, 0xAF, 0xBF):
            if z1 == 0xF4 and z2 != 0x8F:
                continue  # those would encode code points above U+10FFFF
            for z3 in (0xBE, 0xBF):
                seq = bytes((z1, z2, 0xBF, z3))
                if seq not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):  # overlong
                    noncharacters.append((True, seq))
    seqs.append(("Non-character code points (valid UTF-8)", noncharacters))
    seqs.append(
        (
            "Unicode specials (i.e. replacement char)",
            [(True, bytes((0xEF, 0xBF, last))) for last in range(0xB9, 0xC0)],
        )
    )
    return seqs


def _valid(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _table_case(id: str, valid: bool, payload: bytes) -> CaseFactory:
    what = "valid UTF-8" if valid else "not valid UTF-8"
    description = (
        f"Send a text message with payload which is {what} in one fragment.<br><br>"
        f"Payload: 0x{payload.hex()}"
    )
    return lambda: MessageCase(id, description, payload, valid, ("kill", 0.5))


_INVALID = _KAPPA + b"\xed\xa0\x80" + b"edited"  # invalid exactly on octet 12 (0xa0)
_FAST = _KAPPA + b"\xf4\x90\x80\x80" + b"edited"  # octet 12 (0x90) makes it > U+10FFFF

CASES: list[CaseFactory] = [
    partial(
        Scripted,
        "6.1.1",
        "Send text message of length 0.",
        _ECHOED + " (with empty payload).",
        [Frame(OP_TEXT)],
        {OK: [("message", b"", False)]},
        _server_closes(),
        ("close", 1.0),
    ),
    partial(
        Scripted,
        "6.1.2",
        "Send fragmented text message, 3 fragments each of length 0.",
        _ECHOED + " (with empty payload).",
        [Frame(OP_TEXT, fin=False), Frame(OP_CONTINUATION, fin=False), Frame(OP_CONTINUATION)],
        {OK: [("message", b"", False)]},
        _server_closes(),
        ("close", 1.0),
    ),
    partial(
        Scripted,
        "6.1.3",
        "Send fragmented text message, 3 fragments, first and last of length 0, middle non-empty.",
        _ECHOED + " (with payload = payload of middle fragment).",
        [
            Frame(OP_TEXT, fin=False),
            Frame(OP_CONTINUATION, b"middle frame payload", fin=False),
            Frame(OP_CONTINUATION),
        ],
        {OK: [("message", b"middle frame payload", False)]},
        _server_closes(),
        ("close", 1.0),
    ),
    lambda: MessageCase(
        "6.2.1", "Send a valid UTF-8 text message in one fragment.", _HELLO, True, ("close", 1.0)
    ),
    partial(
        Scripted,
        "6.2.2",
        "Send a valid UTF-8 text message in two fragments, fragmented on UTF-8 "
        "code point boundary.",
        "The message is echo'ed back to us.",
        [
            Frame(OP_TEXT, "Hello-µ@ßöä".encode(), fin=False),
            Frame(OP_CONTINUATION, "üàá-UTF-8!!".encode()),
        ],
        {OK: [("message", _HELLO, False)]},
        _server_closes(),
        ("close", 1.0),
    ),
    lambda: MessageCase(
        "6.2.3",
        "Send a valid UTF-8 text message in fragments of 1 octet, "
        "resulting in frames ending on positions which are not code point ends.",
        _HELLO,
        True,
        ("close", 1.0),
        fragment_size=1,
    ),
    lambda: MessageCase(
        "6.2.4",
        "Send a valid UTF-8 text message in fragments of 1 octet, "
        "resulting in frames ending on positions which are not code point ends.",
        _KAPPA,
        True,
        ("close", 1.0),
        fragment_size=1,
    ),
    lambda: MessageCase(
        "6.3.1", "Send invalid UTF-8 text message unfragmented.", _INVALID, False, ("kill", 1.0)
    ),
    lambda: MessageCase(
        "6.3.2",
        "Send invalid UTF-8 text message in fragments of 1 octet, "
        "resulting in frames ending on positions which are not code point ends.",
        _INVALID,
        False,
        ("kill", 1.0),
        fragment_size=1,
    ),
    lambda: FailFast(
        "6.4.1",
        "Send invalid UTF-8 text message in 3 fragments (frames): the "
        "first valid, then (after 1 s) the one that makes it invalid, then (after "
        "1 s) the rest.",
        (_FAST[:11], _FAST[11:15], _FAST[15:]),
        frames=True,
    ),
    lambda: FailFast(
        "6.4.2",
        "Same as 6.4.1, but the 2nd frame carries only the octet that makes the payload invalid.",
        (_FAST[:12], _FAST[12:13], _FAST[13:]),
        frames=True,
    ),
    lambda: FailFast(
        "6.4.3",
        "Same as 6.4.1, but the 3 parts are chops of one frame.",
        (_FAST[:11], _FAST[11:15], _FAST[15:]),
        frames=False,
    ),
    lambda: FailFast(
        "6.4.4",
        "Same as 6.4.2, but the 3 parts are chops of one frame.",
        (_FAST[:12], _FAST[12:13], _FAST[13:]),
        frames=False,
    ),
]

for _sub, (_title, _seqs) in enumerate(utf8_sequences(), start=5):
    for _n, (_ok, _payload) in enumerate(_seqs, start=1):
        CASES.append(_table_case(f"6.{_sub}.{_n}", _ok, _payload))

SUBSECTIONS = {f"6.{i}": title for i, (title, _) in enumerate(utf8_sequences(), start=5)}
"""The titles of the generated subsections 6.5 onwards."""
