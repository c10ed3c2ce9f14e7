"""Section 5, Fragmentation: fragmented control frames, fragmented messages
with pings in between, in one write, frame-wise or octet-wise chops, and
continuation frames where there is nothing to continue."""

from __future__ import annotations

from functools import partial

from ..case import CLOSE_NORMAL, NON_STRICT, OK, Case, CaseFactory, ExpectedClose, Peer
from ..frames import OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT
from ._script import CLIENT_FAILS, SERVER_CLOSES, Frame, Scripted

__all__ = ["CASES"]

_F1, _F2 = b"fragment1", b"fragment2"
_ECHOED = "Message is processed and echo'ed back to us."
_PONG_THEN_ECHO = "A pong is received, then the message is echo'ed back to us."
_NOTHING_TO_CONTINUE = (
    "The connection is failed immediately, since there is no message to continue."
)
_CHOPS = {"one": (False, None), "frame": (True, None), "octet": (False, 1)}
_CHOP_WORDS = {
    "one": "sent in one chop",
    "frame": "sent in per-frame chops",
    "octet": "sent in octet-wise chops",
}


def _control(id: str, opcode: int, name: str) -> CaseFactory:
    return partial(
        Scripted,
        id,
        f"Send {name} fragmented into 2 fragments.",
        "Connection is failed immediately, since control message MUST NOT be fragmented.",
        [Frame(opcode, _F1, fin=False), Frame(OP_CONTINUATION, _F2)],
        {OK: []},
        CLIENT_FAILS,
        ("kill", 1.0),
    )


def _fragmented(id: str, chop: str, ping: bool) -> CaseFactory:
    sync, chopsize = _CHOPS[chop]
    frames = [Frame(OP_TEXT, _F1, fin=False, sync=sync, chopsize=chopsize)]
    if ping:
        frames.append(Frame(OP_PING, b"ping payload", sync=sync, chopsize=chopsize))
    frames.append(Frame(OP_CONTINUATION, _F2, sync=sync, chopsize=chopsize))
    how = {
        "one": "",
        "frame": ", octets are sent in frame-wise chops",
        "octet": ", octets are sent in octet-wise chops",
    }[chop]
    return partial(
        Scripted,
        id,
        "Send text Message fragmented into 2 fragments"
        + (", one ping with payload in-between" if ping else "")
        + how
        + ".",
        _PONG_THEN_ECHO if ping else _ECHOED,
        frames,
        {OK: [("pong", b"ping payload")] * ping + [("message", _F1 + _F2, False)]},
        SERVER_CLOSES,
        ("close", 1.0),
    )


def _orphan(id: str, fin: bool, chop: str) -> CaseFactory:
    sync, chopsize = _CHOPS[chop]
    return partial(
        Scripted,
        id,
        "Send unfragmented Text Message after Continuation Frame with FIN = "
        f"{str(fin).lower()}, where there is nothing to continue, {_CHOP_WORDS[chop]}.",
        _NOTHING_TO_CONTINUE,
        [
            Frame(
                OP_CONTINUATION, b"non-continuation payload", fin=fin, sync=sync, chopsize=chopsize
            ),
            Frame(OP_TEXT, b"Hello, world!", sync=sync, chopsize=chopsize),
        ],
        {OK: []},
        CLIENT_FAILS,
        ("kill", 1.0),
    )


def _repeated(id: str, fin: bool) -> CaseFactory:
    frames = [
        Frame(OP_CONTINUATION, b"fragment1", fin=fin),
        Frame(OP_TEXT, b"fragment2", fin=False),
        Frame(OP_CONTINUATION, b"fragment3"),
    ]
    return partial(
        Scripted,
        id,
        f"Repeated 2x: Continuation Frame with FIN = {str(fin).lower()} (where there is "
        "nothing to continue), then text Message fragmented into 2 fragments.",
        _NOTHING_TO_CONTINUE,
        frames * 2,
        {OK: []},
        CLIENT_FAILS,
        ("kill", 1.0),
    )


class PingsInFragmentedMessage(Case):
    """5.19 and 5.20: a fragmented text message with a ping after its second
    fragment, the rest 1 s later with another ping before the last fragment."""

    FRAGMENTS = (b"fragment1", b"fragment2", b"fragment3", b"fragment4", b"fragment5")
    PINGS = (b"pongme 1!", b"pongme 2!")

    def __init__(self, id: str, sync: bool) -> None:
        super().__init__()
        self.id = id
        self.sync = sync
        self.description = (
            "A fragmented text message is sent in multiple frames. After sending the first "
            "2 frames of the text message, a Ping is sent. Then we wait 1s, then we send 2 "
            "more text fragments, another Ping and then the final text fragment. "
            "Everything is legal."
            + (
                " All frames are sent with SYNC = True (each in a TCP write of its own)."
                if sync
                else ""
            )
        )
        self.expectation = (
            "The peer immediately answers the first Ping before it has received the last text "
            "message fragment. The peer pong's back the Ping's payload exactly, and echo's the "
            "payload of the fragmented message back to us."
        )

    def on_open(self, p: Peer) -> None:
        f, pings = self.FRAGMENTS, self.PINGS
        self.expected[OK] = [
            ("pong", pings[0]),
            ("pong", pings[1]),
            ("message", b"".join(f), False),
        ]
        self.expected_close = ExpectedClose(True, [CLOSE_NORMAL], True)
        p.send_frame(OP_TEXT, f[0], fin=False, sync=self.sync)
        p.send_frame(OP_CONTINUATION, f[1], fin=False, sync=self.sync)
        p.send_frame(OP_PING, pings[0], sync=self.sync)
        p.call_later(1.0, lambda: self._part2(p))

    def _part2(self, p: Peer) -> None:
        f, pings = self.FRAGMENTS, self.PINGS
        p.send_frame(OP_CONTINUATION, f[2], fin=False, sync=self.sync)
        p.send_frame(OP_CONTINUATION, f[3], fin=False, sync=self.sync)
        p.send_frame(OP_PING, pings[1], sync=self.sync)
        p.send_frame(OP_CONTINUATION, f[4], sync=self.sync)
        p.close_after(1.0)


CASES: list[CaseFactory] = [
    _control("5.1", OP_PING, "Ping"),
    _control("5.2", OP_PONG, "Pong"),
    _fragmented("5.3", "one", ping=False),
    _fragmented("5.4", "frame", ping=False),
    _fragmented("5.5", "octet", ping=False),
    _fragmented("5.6", "one", ping=True),
    _fragmented("5.7", "frame", ping=True),
    _fragmented("5.8", "octet", ping=True),
    _orphan("5.9", True, "one"),
    _orphan("5.10", True, "frame"),
    _orphan("5.11", True, "octet"),
    _orphan("5.12", False, "one"),
    _orphan("5.13", False, "frame"),
    _orphan("5.14", False, "octet"),
    partial(
        Scripted,
        "5.15",
        "Send text Message fragmented into 2 fragments, then Continuation Frame with FIN = "
        "false where there is nothing to continue, then unfragmented Text Message, all sent "
        "in one chop.",
        _NOTHING_TO_CONTINUE,
        [
            Frame(OP_TEXT, b"fragment1", fin=False),
            Frame(OP_CONTINUATION, b"fragment2"),
            Frame(OP_CONTINUATION, b"fragment3", fin=False),
            Frame(OP_TEXT, b"fragment4"),
        ],
        {OK: [("message", b"fragment1fragment2", False)], NON_STRICT: []},
        CLIENT_FAILS,
        ("kill", 1.0),
    ),
    _repeated("5.16", False),
    _repeated("5.17", True),
    partial(
        Scripted,
        "5.18",
        "Send text Message fragmented into 2 fragments, with both frame opcodes set to text, "
        "sent in one chop.",
        "The connection is failed immediately, since all data frames after the initial data "
        "frame must have opcode 0.",
        [Frame(OP_TEXT, b"fragment1", fin=False), Frame(OP_TEXT, b"fragment2")],
        {OK: []},
        CLIENT_FAILS,
        ("kill", 1.0),
    ),
    lambda: PingsInFragmentedMessage("5.19", sync=False),
    lambda: PingsInFragmentedMessage("5.20", sync=True),
]
