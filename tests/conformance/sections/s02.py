"""Section 2, Pings/Pongs: pings answered with their payload, oversized pings
failing the connection, unsolicited pongs ignored, pings cut in chops."""

from __future__ import annotations

from functools import partial

from ..case import OK, CaseFactory, Event
from ..frames import OP_PING, OP_PONG
from ._script import CLIENT_FAILS, CLOSE, SERVER_CLOSES, Frame, Scripted

__all__ = ["CASES"]

_CLEAN = "Clean close with normal code."


def _ping(
    id: str, description: str, payload: bytes, chopsize: int | None = None, close: float = 1.0
) -> CaseFactory:
    return partial(
        Scripted,
        id,
        description,
        f"Pong with payload echo'ed is sent in reply to Ping. {_CLEAN}",
        [Frame(OP_PING, payload, chopsize=chopsize)],
        {OK: [("pong", payload)]},
        SERVER_CLOSES,
        ("close", close),
    )


def _pings(id: str, chopsize: int | None) -> CaseFactory:
    payloads = [b"payload-%d" % i for i in range(10)]
    pongs: list[Event] = [("pong", payload) for payload in payloads]
    return partial(
        Scripted,
        id,
        "Send 10 Pings with payload."
        + (" Send out octets in octet-wise chops." if chopsize else ""),
        "Pongs for our Pings with all the payloads. Note: This is not required by the Spec .. "
        f"but we check for this behaviour anyway. {_CLEAN}",
        [Frame(OP_PING, payload, chopsize=chopsize) for payload in payloads],
        {OK: pongs},
        SERVER_CLOSES,
        ("close", 3.0),
    )


_UNSOLICITED = b"unsolicited pong payload"

CASES: list[CaseFactory] = [
    _ping("2.1", "Send ping without payload.", b""),
    _ping("2.2", "Send ping with small text payload.", b"Hello, world!"),
    _ping(
        "2.3",
        "Send ping with small binary (non UTF-8) payload.",
        b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff",
    ),
    _ping("2.4", "Send ping with binary payload of 125 octets.", b"\xfe" * 125),
    partial(
        Scripted,
        "2.5",
        "Send ping with binary payload of 126 octets.",
        "Connection is failed immediately (1002/Protocol Error), since control frames are "
        "only allowed to have payload up to and including 125 octets.",
        [Frame(OP_PING, b"\xfe" * 126)],
        {OK: []},
        CLIENT_FAILS,
        ("kill", 1.0),
    ),
    _ping(
        "2.6",
        "Send ping with binary payload of 125 octets, send in octet-wise chops.",
        b"\xfe" * 125,
        chopsize=1,
        close=2.0,
    ),
    partial(
        Scripted,
        "2.7",
        "Send unsolicited pong without payload. Verify nothing is received. " + _CLEAN,
        "Nothing.",
        [Frame(OP_PONG), CLOSE],
        {OK: []},
        SERVER_CLOSES,
        ("close", 1.0),
    ),
    partial(
        Scripted,
        "2.8",
        "Send unsolicited pong with payload. Verify nothing is received. " + _CLEAN,
        "Nothing.",
        [Frame(OP_PONG, _UNSOLICITED), CLOSE],
        {OK: []},
        SERVER_CLOSES,
        ("close", 1.0),
    ),
    partial(
        Scripted,
        "2.9",
        "Send unsolicited pong with payload. Send ping with payload. "
        "Verify pong for ping is received.",
        "Nothing in reply to own Pong, but Pong with payload echo'ed in reply to Ping. " + _CLEAN,
        [Frame(OP_PONG, _UNSOLICITED), Frame(OP_PING, b"ping payload")],
        {OK: [("pong", b"ping payload")]},
        SERVER_CLOSES,
        ("close", 1.0),
    ),
    _pings("2.10", None),
    _pings("2.11", 1),
]
