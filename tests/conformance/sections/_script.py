"""The shape most cases of sections 2-5 share: on open, send a list of frames
(and maybe a close), expect an exact list of events, and end with
``kill_after`` or ``close_after``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..case import (
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    Case,
    Event,
    ExpectedClose,
    Peer,
)

__all__ = ["CLIENT_FAILS", "CLOSE", "SERVER_CLOSES", "Frame", "Scripted"]


@dataclass(frozen=True)
class Frame:
    """One ``send_frame`` call."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    chopsize: int | None = None
    sync: bool = False


CLOSE: Literal["close"] = "close"
"""A step: ``send_close(1000)``."""

SERVER_CLOSES = ExpectedClose(closed_by_me=True, close_code=[CLOSE_NORMAL], require_clean=True)
"""The usual end of a case that passes: we close with 1000, cleanly."""
CLIENT_FAILS = ExpectedClose(
    closed_by_me=False, close_code=[CLOSE_PROTOCOL_ERROR], require_clean=False
)
"""The client must fail the connection (1002, or just drop TCP)."""


class Scripted(Case):
    """``partial(Scripted, ...)`` is the factory of a case of this shape."""

    def __init__(
        self,
        id: str,
        description: str,
        expectation: str,
        steps: Sequence[Frame | Literal["close"]],
        expected: dict[str, list[Event]],
        expected_close: ExpectedClose,
        end: tuple[Literal["kill", "close"], float],
    ) -> None:
        super().__init__()
        self.id = id
        self.description = description
        self.expectation = expectation
        self._steps = steps
        self._expected = expected
        self._expected_close = expected_close
        self._end = end

    def on_open(self, p: Peer) -> None:
        self.expected = {verdict: list(events) for verdict, events in self._expected.items()}
        self.expected_close = ExpectedClose(**vars(self._expected_close))
        for step in self._steps:
            if step == CLOSE:
                p.send_close(CLOSE_NORMAL)
            else:
                p.send_frame(
                    step.opcode,
                    step.payload,
                    fin=step.fin,
                    rsv=step.rsv,
                    chopsize=step.chopsize,
                    sync=step.sync,
                )
        how, delay = self._end
        if how == "kill":
            p.kill_after(delay)
        else:
            p.close_after(delay)
