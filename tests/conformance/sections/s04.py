"""Section 4, Opcodes: frames with reserved opcodes, non-control (4.1: 3-7) and
control (4.2: 11-15); the client must fail the connection (1002)."""

from __future__ import annotations

from functools import partial

from ..case import NON_STRICT, OK, CaseFactory
from ..frames import OP_PING, OP_TEXT
from ._script import CLIENT_FAILS, Frame, Scripted

__all__ = ["CASES"]

_HELLO = b"Hello, world!"
_RESERVED = b"reserved opcode payload"


def _alone(id: str, kind: str, opcode: int, payload: bytes) -> CaseFactory:
    return partial(
        Scripted,
        id,
        f"Send frame with reserved {kind} Opcode = {opcode}"
        + (" and non-empty payload." if payload else "."),
        "The connection is failed immediately.",
        [Frame(opcode, payload)],
        {OK: []},
        CLIENT_FAILS,
        ("kill", 1.0),
    )


def _after_echo(
    id: str, kind: str, opcode: int, payload: bytes, chopsize: int | None
) -> CaseFactory:
    return partial(
        Scripted,
        id,
        f"Send small text message, then send frame with reserved {kind} Opcode = {opcode}"
        + (" and non-empty payload" if payload else "")
        + ", then send Ping.",
        "Echo for first message is received, but then connection is failed immediately, since "
        "reserved opcode frame is used. A Pong is not received.",
        [
            Frame(OP_TEXT, _HELLO, chopsize=chopsize),
            Frame(opcode, payload, chopsize=chopsize),
            Frame(OP_PING, chopsize=chopsize),
        ],
        {OK: [("message", _HELLO, False)], NON_STRICT: []},
        CLIENT_FAILS,
        ("kill", 1.0),
    )


CASES: list[CaseFactory] = []
for _sub, _kind, _base in ((1, "non-control", 3), (2, "control", 11)):
    CASES += [
        _alone(f"4.{_sub}.1", _kind, _base, b""),
        _alone(f"4.{_sub}.2", _kind, _base + 1, _RESERVED),
        _after_echo(f"4.{_sub}.3", _kind, _base + 2, b"", None),
        _after_echo(f"4.{_sub}.4", _kind, _base + 3, _HELLO, None),
        _after_echo(f"4.{_sub}.5", _kind, _base + 4, _HELLO, 1),
    ]
