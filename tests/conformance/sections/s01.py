"""Section 1, Framing: text (1.1) and binary (1.2) messages of the sizes at the
edges of the length encodings, echoed back; a clean close with 1000."""

from __future__ import annotations

from ..case import CLOSE_NORMAL, OK, Case, CaseFactory, ExpectedClose, Peer
from ..frames import OP_BINARY, OP_TEXT

__all__ = ["CASES"]


class EchoCase(Case):
    """Send one frame, expect it echoed; kill the connection after ``kill`` s."""

    def __init__(
        self, id: str, opcode: int, size: int, kill: float, chopsize: int | None = None
    ) -> None:
        super().__init__()
        self.id = id
        self.opcode = opcode
        self.payload = (b"*" if opcode == OP_TEXT else b"\xfe") * size
        self.kill = kill
        self.chopsize = chopsize
        kind = "text" if opcode == OP_TEXT else "binary"
        self.description = f"Send {kind} message with payload of length {size}."
        if chopsize:
            self.description += f" Sent out data in chops of {chopsize} octets."
        self.expectation = (
            f"Receive echo'ed {kind} message (with payload as sent). Clean close with normal code."
        )

    def on_open(self, p: Peer) -> None:
        self.expected[OK] = [("message", self.payload, self.opcode == OP_BINARY)]
        self.expected_close = ExpectedClose(True, [CLOSE_NORMAL], True)
        p.send_frame(self.opcode, self.payload, chopsize=self.chopsize)
        p.kill_after(self.kill)


def _factory(id: str, opcode: int, size: int, kill: float, chopsize: int | None) -> CaseFactory:
    return lambda: EchoCase(id, opcode, size, kill, chopsize)


_SIZES = [
    (0, 1.0, None),
    (125, 1.0, None),
    (126, 1.0, None),
    (127, 1.0, None),
    (128, 1.0, None),
    (65535, 10.0, None),
    (65536, 10.0, None),
    (65536, 10.0, 997),
]

CASES: list[CaseFactory] = [
    _factory(f"1.{sub}.{n}", opcode, size, kill, chop)
    for sub, opcode in ((1, OP_TEXT), (2, OP_BINARY))
    for n, (size, kill, chop) in enumerate(_SIZES, start=1)
]
