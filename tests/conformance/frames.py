"""WebSocket frames on the fuzzing server's side: a raw writer that can break
every rule, and a strict reader for what the client sends.

The writer (``encode_frame``, ``frame_header``) writes any opcode, RSV bits,
FIN, masked or not. ``payload_len`` follows autobahn's ``sendFrame``: the frame
carries exactly ``payload_len`` octets, ``payload`` repeated (and cut) to fill
them, so a short pattern makes a large message. A header that lies about what
follows it is ``frame_header(opcode, length)`` written with fewer (or other)
octets after it.

The reader (``FrameReader``) takes the client's bytes as they come, in any
chops, and returns what they complete: messages (fragments assembled, text
kept as the raw bytes received), pings, pongs, close frames, and violations.
It checks what autobahn's server checks (RFC 6455 section 5): every frame
masked, RSV bits only for an agreed extension, known opcodes, control frames
unfragmented and at most 125 octets, minimal length encoding, continuation
frames only inside a message and data frames never inside one, text valid
UTF-8 (checked frame by frame, so that it fails fast), close codes that may be
sent and close reasons in UTF-8. A violation is returned as a ``Violation``
with the close code it earns (1002, or 1007 for invalid UTF-8); the reader goes
on parsing the frames that follow (so that the client's close can still be
read), but drops the message the violation was in.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "CLOSE_CODES_ALLOWED",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Close",
    "FrameReader",
    "Message",
    "Ping",
    "Pong",
    "Violation",
    "apply_mask",
    "chops",
    "close_code_allowed",
    "close_payload",
    "encode_frame",
    "frame_header",
]

OP_CONTINUATION = 0
OP_TEXT = 1
OP_BINARY = 2
OP_CLOSE = 8
OP_PING = 9
OP_PONG = 10

CLOSE_CODES_ALLOWED = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})
"""The codes of 1000-2999 an endpoint may send (autobahn's list); 3000-4999 are free."""

PROTOCOL_ERROR = 1002
INVALID_PAYLOAD = 1007
MAX_MESSAGE = 2**26
"""The largest message the reader assembles (64 MiB: four times section 9's largest)."""


def close_code_allowed(code: int) -> bool:
    """Whether a close frame may carry ``code`` (RFC 6455 section 7.4)."""
    return code in CLOSE_CODES_ALLOWED or 3000 <= code <= 4999


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """``data`` XORed with the 4-byte ``mask`` (masking and unmasking alike)."""
    if not data:
        return b""
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def frame_header(
    opcode: int,
    length: int,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
) -> bytes:
    """A frame header announcing ``length`` payload octets (what follows it is
    the caller's business). ``rsv`` is the three RSV bits as a number 0-7."""
    if not 0 <= opcode <= 15 or not 0 <= rsv <= 7 or length < 0 or length >= 2**63:
        raise ValueError(f"cannot encode opcode={opcode} rsv={rsv} length={length}")
    if mask is not None and len(mask) != 4:
        raise ValueError("mask must be 4 bytes")
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    masked = 0x80 if mask is not None else 0
    if length <= 125:
        head = bytes((b0, masked | length))
    elif length <= 0xFFFF:
        head = bytes((b0, masked | 126)) + struct.pack("!H", length)
    else:
        head = bytes((b0, masked | 127)) + struct.pack("!Q", length)
    return head + (mask or b"")


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    payload_len: int | None = None,
) -> bytes:
    """One frame. With ``payload_len`` the frame carries that many octets:
    ``payload`` repeated and cut to fit (autobahn's ``sendFrame``)."""
    if payload_len is not None:
        if not payload:
            raise ValueError("payload_len needs a non-empty payload to repeat")
        payload = (payload * (payload_len // len(payload) + 1))[:payload_len]
    body = payload if mask is None else apply_mask(payload, mask)
    return frame_header(opcode, len(payload), fin=fin, rsv=rsv, mask=mask) + body


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    """The payload of a close frame: the code in network order, then the reason."""
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    return struct.pack("!H", code) + reason


def chops(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of ``size`` octets (the last may be shorter;
    empty data is one empty piece, as autobahn writes it)."""
    if size < 1:
        raise ValueError("chop size must be >= 1")
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


@dataclass(frozen=True)
class Message:
    """A whole data message: text as the UTF-8 bytes received."""

    payload: bytes
    binary: bool


@dataclass(frozen=True)
class Ping:
    payload: bytes


@dataclass(frozen=True)
class Pong:
    payload: bytes


@dataclass(frozen=True)
class Close:
    """A close frame: ``code`` None when it had no payload. ``error`` names
    what is wrong with it (a code that may not be sent, a reason that is not
    UTF-8) with the close code it earns, or is None."""

    code: int | None
    reason: bytes
    error: Violation | None = None


@dataclass(frozen=True)
class Violation:
    """The client broke RFC 6455: ``code`` is the close code it earns."""

    code: int
    reason: str


FrameEvent = Message | Ping | Pong | Close | Violation

Inflate = Callable[[bytes], bytes]
"""Decompresses one whole message (the agreed permessage-deflate), or raises."""


class FrameReader:
    """Parses a byte stream of frames into ``FrameEvent``s.

    ``feed(data)`` returns the events the data completes, in order.
    ``inflate``: the agreed permessage-deflate's decompressor (RSV1 is then
    allowed on a message's first frame), None without compression.
    ``from_client``: the frames must be masked (the server reads the client),
    else they must not be (the suite's raw client reads the server).
    ``check_rsv`` and ``check_utf8`` switch those checks off (for the raw
    client's deliberately broken variants): RSV bits are then ignored, text and
    close reasons taken as they are.
    """

    def __init__(
        self,
        inflate: Inflate | None = None,
        *,
        from_client: bool = True,
        check_rsv: bool = True,
        check_utf8: bool = True,
    ) -> None:
        self._inflate = inflate
        self._from_client = from_client
        self._check_rsv = check_rsv
        self._check_utf8 = check_utf8
        self._buffer = bytearray()
        self._in_message = False
        self._opcode = OP_TEXT  # of the message in progress
        self._compressed = False
        self._fragments: list[bytes] = []
        self._size = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._discard = False  # the message in progress had a violation
        self.broken = False
        """The stream cannot be parsed any further (every later byte is ignored)."""

    def feed(self, data: bytes) -> list[FrameEvent]:
        if self.broken:
            return []
        self._buffer += data
        events: list[FrameEvent] = []
        pos = 0
        buf = self._buffer
        while True:
            parsed = self._parse(buf, pos, events)
            if parsed is None:
                break
            pos = parsed
        del buf[:pos]
        return events

    def _parse(self, buf: bytearray, pos: int, events: list[FrameEvent]) -> int | None:
        """Parse one frame at ``pos``; the position after it, or None if incomplete."""
        if len(buf) - pos < 2:
            return None
        b0, b1 = buf[pos], buf[pos + 1]
        fin = bool(b0 & 0x80)
        rsv = (b0 >> 4) & 7
        opcode = b0 & 0x0F
        masked = bool(b1 & 0x80)
        length = b1 & 0x7F
        head = 2
        if length == 126:
            head = 4
        elif length == 127:
            head = 10
        if masked:
            head += 4
        if len(buf) - pos < head:
            return None
        if length == 126:
            (length,) = struct.unpack_from("!H", buf, pos + 2)
            minimal = length >= 126
        elif length == 127:
            (length,) = struct.unpack_from("!Q", buf, pos + 2)
            minimal = length >= 0x10000
            if length >= 2**63:
                events.append(Violation(PROTOCOL_ERROR, "frame length >= 2**63: unparseable"))
                self.broken = True
                return None
        else:
            minimal = True
        if len(buf) - pos < head + length:
            return None
        start = pos + head
        payload = bytes(buf[start : start + length])
        if masked:
            payload = apply_mask(payload, bytes(buf[start - 4 : start]))
        self._frame(opcode, fin, rsv, masked, minimal, payload, events)
        return start + length

    def _frame(
        self,
        opcode: int,
        fin: bool,
        rsv: int,
        masked: bool,
        minimal: bool,
        payload: bytes,
        events: list[FrameEvent],
    ) -> None:
        problems: list[str] = []
        if masked != self._from_client:
            problems.append(
                "unmasked frame from the client" if self._from_client else "masked server frame"
            )
        if not minimal:
            problems.append(f"payload length {len(payload)} not in its minimal encoding")
        control = opcode >= 8
        compressible = (
            self._inflate is not None and rsv == 4 and not control and opcode != OP_CONTINUATION
        )
        if rsv and not compressible and self._check_rsv:
            problems.append(f"RSV bits {rsv:03b} set without an extension that defines them")
        if control:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                problems.append(f"reserved control opcode {opcode}")
            if not fin:
                problems.append("fragmented control frame")
            if len(payload) > 125:
                problems.append(f"control frame with {len(payload)} octets of payload")
            if opcode == OP_CLOSE and len(payload) == 1:
                problems.append("close frame with a 1-octet payload")
        elif opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY):
            problems.append(f"reserved data opcode {opcode}")
        elif opcode == OP_CONTINUATION and not self._in_message:
            problems.append("continuation frame outside a fragmented message")
        elif opcode != OP_CONTINUATION and self._in_message:
            problems.append(f"new data frame (opcode {opcode}) inside a fragmented message")
        if problems:
            events.append(Violation(PROTOCOL_ERROR, "; ".join(problems)))
        if control:
            if opcode == OP_CLOSE:
                events.append(_close(payload, self._check_utf8))
            elif opcode == OP_PING:
                events.append(Ping(payload))
            elif opcode == OP_PONG:
                events.append(Pong(payload))
            return
        if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY):
            return  # a reserved data opcode: its payload means nothing
        if opcode != OP_CONTINUATION and not self._in_message:
            self._start(opcode, rsv == 4 and compressible, discard=bool(problems))
        elif problems:
            self._discard = True
        if not self._in_message:  # a continuation outside a message: nothing to add to
            return
        self._data(payload, fin, events)

    def _start(self, opcode: int, compressed: bool, *, discard: bool) -> None:
        self._in_message = True
        self._opcode = opcode
        self._compressed = compressed
        self._fragments = []
        self._size = 0
        self._utf8.reset()
        self._discard = discard

    def _data(self, payload: bytes, fin: bool, events: list[FrameEvent]) -> None:
        if not self._discard:
            self._size += len(payload)
            if self._size > MAX_MESSAGE:
                events.append(
                    Violation(1009, f"message over the suite's limit of {MAX_MESSAGE} octets")
                )
                self._discard = True
            else:
                self._fragments.append(payload)
                text = self._opcode == OP_TEXT
                if text and not self._compressed and not self._valid_utf8(payload, fin):
                    events.append(Violation(INVALID_PAYLOAD, "invalid UTF-8 in a text message"))
                    self._discard = True
        if not fin:
            return
        self._in_message = False
        if self._discard:
            return
        data = b"".join(self._fragments)
        self._fragments = []
        if self._compressed:
            assert self._inflate is not None
            try:
                data = self._inflate(data)
            except ValueError as exc:
                events.append(Violation(PROTOCOL_ERROR, f"bad compressed message: {exc}"))
                return
            if self._opcode == OP_TEXT and not self._valid_utf8(data, True):
                events.append(Violation(INVALID_PAYLOAD, "invalid UTF-8 in a text message"))
                return
        events.append(Message(data, self._opcode == OP_BINARY))

    def _valid_utf8(self, data: bytes, final: bool) -> bool:
        if not self._check_utf8:
            return True
        try:
            self._utf8.decode(data, final)
        except UnicodeDecodeError:
            return False
        return True


def _close(payload: bytes, check_utf8: bool) -> Close:
    if len(payload) < 2:
        return Close(None, b"")  # a 1-octet payload was reported as a violation already
    (code,) = struct.unpack_from("!H", payload)
    reason = payload[2:]
    error = None
    if not close_code_allowed(code):
        error = Violation(PROTOCOL_ERROR, f"close code {code} may not be sent")
    elif check_utf8:
        try:
            reason.decode("utf-8")
        except UnicodeDecodeError:
            error = Violation(INVALID_PAYLOAD, "close reason is not valid UTF-8")
    return Close(code, reason, error)
