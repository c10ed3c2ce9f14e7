"""Section 3, Reserved Bits: frames with RSV bits set and no extension that
defines them; the client must fail the connection (1002)."""

from __future__ import annotations

from functools import partial

from ..case import NON_STRICT, OK, CaseFactory
from ..frames import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT
from ._script import CLIENT_FAILS, Frame, Scripted

__all__ = ["CASES"]

_HELLO = b"Hello, world!"
_FAIL_AFTER_ECHO = (
    "Echo for first message is received, but then connection is failed immediately, since "
    "RSV must be 0, when no extension defining RSV meaning has been negotiated. "
    "The Pong is not received."
)


def _alone(id: str, what: str, frame: Frame) -> CaseFactory:
    return partial(
        Scripted,
        id,
        what,
        "The connection is failed immediately, since RSV must be 0.",
        [frame],
        {OK: []},
        CLIENT_FAILS,
        ("kill", 1.0),
    )


def _after_echo(id: str, rsv: int, how: str, sync: bool, chopsize: int | None) -> CaseFactory:
    return partial(
        Scripted,
        id,
        f"Send small text message, then send again with RSV = {rsv}, then send Ping.{how}",
        _FAIL_AFTER_ECHO,
        [
            Frame(OP_TEXT, _HELLO, sync=sync, chopsize=chopsize),
            Frame(OP_TEXT, _HELLO, rsv=rsv, sync=sync, chopsize=chopsize),
            Frame(OP_PING, sync=sync, chopsize=chopsize),
        ],
        {OK: [("message", _HELLO, False)], NON_STRICT: []},
        CLIENT_FAILS,
        ("kill", 1.0),
    )


CASES: list[CaseFactory] = [
    partial(
        Scripted,
        "3.1",
        "Send small text message with RSV = 1.",
        "The connection is failed immediately (1002/protocol error), since RSV must be 0, "
        "when no extension defining RSV meaning has been negotiated.",
        [Frame(OP_TEXT, _HELLO, rsv=1)],
        {OK: []},
        CLIENT_FAILS,
        ("kill", 1.0),
    ),
    _after_echo("3.2", 2, "", False, None),
    _after_echo("3.3", 3, " Octets are sent in frame-wise chops.", True, None),
    _after_echo("3.4", 4, " Octets are sent in octet-wise chops.", False, 1),
    _alone(
        "3.5",
        "Send small binary message with RSV = 5.",
        Frame(OP_BINARY, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv=5),
    ),
    # autobahn's 3.6 says "Ping" but sends a binary frame: transcribed as it sends
    _alone("3.6", "Send Ping with RSV = 6.", Frame(OP_BINARY, _HELLO, rsv=6)),
    _alone("3.7", "Send Close with RSV = 7.", Frame(OP_CLOSE, rsv=7)),
]
