"""Section 10, Misc: a 64 KiB text message that the server fragments into
frames of 1,300 octets (autobahn's ``autoFragmentSize``); the case also checks
that the server sent the frames it should (one text frame, 50 continuations)."""

from __future__ import annotations

from ..case import CLOSE_NORMAL, FAILED, OK, Case, CaseFactory, ExpectedClose, Peer
from ..frames import OP_CONTINUATION, OP_TEXT

__all__ = ["CASES"]


class AutoFragmentation(Case):
    id = "10.1.1"
    description = (
        "Send text message with payload of length 65536 auto-fragmented with "
        "autoFragmentSize = 1300."
    )
    expectation = (
        "Receive echo'ed text message (with payload as sent and transmitted frame counts as "
        "expected). Clean close with normal code."
    )
    SIZE = 1300
    PAYLOAD = b"*" * 65536

    def on_open(self, p: Peer) -> None:
        self.expected[OK] = [("message", self.PAYLOAD, False)]
        self.expected_close = ExpectedClose(True, [CLOSE_NORMAL], True)
        p.send_message(self.PAYLOAD, False, fragment_size=self.SIZE)
        p.kill_after(10.0)

    def on_connection_lost(self, p: Peer) -> None:
        super().on_connection_lost(p)
        if not p.connection_was_open:
            self.behavior = FAILED
            self.result = "WebSocket connection was never open"
            return
        n = len(self.PAYLOAD)
        want = {OP_CONTINUATION: n // self.SIZE, OP_TEXT: 1 if n % self.SIZE else 0}
        got = {opcode: p.tx_frames.get(opcode, 0) for opcode in want}
        if got != want:
            self.behavior = FAILED
            self.result = f"Frames transmitted {got} does not match what we expected {want}."


CASES: list[CaseFactory] = [AutoFragmentation]
