"""The engine seam: a sans-I/O WebSocket client connection. Bytes in, messages
out, bytes to send; no I/O and no time.

Two engines, used only through their libraries' public API:

- ``WebsocketsEngine`` (the default, ``transport="websockets"``): websockets'
  ``ClientProtocol``, whose parser and frame masking run in C.
- ``WsprotoEngine`` (``transport="wsproto"``): wsproto's ``WSConnection``.

Both assemble messages the same way, under the same limits: a message's size
is counted in bytes as they arrive on the wire (after decompression), text and
binary alike, and a message of too many fragments is refused. Each records
how the connection ended in one ``Ending``, which ``ending_error`` turns into
the error the socket reports: the only place where that is decided.
"""

from __future__ import annotations

import codecs
import logging
import os
import zlib
from collections.abc import Sequence
from typing import Literal, Protocol, cast

import attrs
from websockets.client import ClientProtocol
from websockets.exceptions import ProtocolError as WebsocketsProtocolError
from websockets.extensions.permessage_deflate import PerMessageDeflate as WebsocketsDeflate
from websockets.frames import PING, PONG, Frame
from websockets.frames import Opcode as WebsocketsOpcode
from websockets.protocol import OPEN as WS_OPEN
from websockets.uri import WebSocketURI

from ._compression import Deflate, negotiate, offer
from ._errors import ConnectionLost, ProtocolError, TransportError
from ._events import Message
from ._handshake import HandshakeResponse
from ._url import Target

__all__ = [
    "Ending",
    "Engine",
    "EngineName",
    "WebsocketsEngine",
    "ending_error",
    "fragment_limit",
]

EngineName = Literal["websockets", "wsproto"]
TOO_BIG = 1009
INFLATE_SLICE = 256
"""Bytes handed to wsproto at a time on a compressed connection: deflate's
best ratio is ~1,000:1, so each inflates to at most ~256 KiB."""
INFLATE_STEP = 32768
"""Most bytes the websockets engine inflates at a time."""
MASK_SMALL = 200
"""Largest payload ``client_frame`` masks itself."""
REASON_MAX = 120
"""Characters of the reason the client's close frame gives when it fails the
connection (a control frame holds 125 bytes; the reasons are ASCII)."""
ROOM = 2**62
"""``receive()``'s default room: parse everything."""
_DEFLATE_TAIL = b"\x00\x00\xff\xff"
"""What a compressed message's last frame leaves out (RFC 7692, 7.2.2)."""

# websockets logs each request line (query string included) at DEBUG: its
# protocol gets a logger of its own that never logs, so no secret leaks.
_QUIET = logging.getLogger("trio_clientsocket.engine")
_QUIET.setLevel(logging.CRITICAL + 1)
_QUIET.propagate = False


def client_frame(first: int, payload: bytes) -> bytes:
    """A whole client frame (RFC 6455 5.2): ``first`` is its first byte (FIN,
    RSV, opcode), the payload masked with a random key. Small payloads are
    masked as one integer; larger ones by websockets' masking (in C)."""
    size = len(payload)
    if size > MASK_SMALL:
        return Frame(WebsocketsOpcode(first & 0x0F), payload).serialize(mask=True)
    mask = os.urandom(4)
    head = (
        bytes((first, 0x80 | size)) if size < 126 else bytes((first, 0xFE, size >> 8, size & 0xFF))
    )
    if not size:
        return head + mask
    key = (mask * ((size + 3) >> 2))[:size]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return head + mask + masked.to_bytes(size, "little")


def fragment_limit(max_size: int) -> int:
    """Frames one message may have: enough for any real sender (16 bytes a
    fragment on average at the size limit), few enough that a server sending
    endless empty fragments is refused promptly."""
    return max(1024, max_size // 16)


@attrs.frozen
class Ending:
    """How a connection ended, as the engine saw it."""

    peer_close: tuple[int, str] | None = None
    """The peer's close frame: code (1005 when it had none) and reason."""
    violation: tuple[int, str] | None = None
    """The client failed the connection: the close code it failed it with
    and why (the server broke the protocol, or a message was too big)."""
    close_sent: bool = True
    """The client's close frame for ``violation`` went out (False: the
    connection could no longer carry it)."""


UNSENT = "; the connection could not carry the close frame"


def ending_error(ending: Ending) -> TransportError:
    """The error that reports a connection that ended this way. The code of
    an error for a violation is the one the client's close frame carried:
    when that frame could not be sent, the error says so, and claims no code
    (``ProtocolError.code`` is None, a message too big is a 1006).

    Examples:
        >>> ending_error(Ending(peer_close=(1001, "bye")))
        ConnectionLost('server closed the connection (code 1001, reason \\'bye\\')')
        >>> ending_error(Ending(violation=(1007, "invalid UTF-8"))).code
        1007
        >>> ending_error(Ending(violation=(1007, "invalid UTF-8"), close_sent=False)).code is None
        True
    """
    if ending.violation is not None:
        code, why = ending.violation
        if not ending.close_sent:
            why += UNSENT
        if code == TOO_BIG:
            return ConnectionLost(TOO_BIG if ending.close_sent else 1006, why)
        return ProtocolError(
            f"the server broke the WebSocket protocol: {why}",
            code=code if ending.close_sent else None,
        )
    if ending.peer_close is not None:
        code, reason = ending.peer_close
        return ConnectionLost(code, reason or None, by_server=True)
    return ConnectionLost(1006, "connection dropped without a close frame")


class Engine(Protocol):
    """What the driver needs of a sans-I/O client connection."""

    key: str
    """The request's ``Sec-WebSocket-Key``."""
    controls: list[tuple[bool, bytes, int]]
    """The pings (False) and pongs (True) received since the driver last
    emptied the list, in order: each with its payload and how many of the
    messages ``receive()`` returned came before it (pings are answered
    already)."""
    extension_names: tuple[str, ...]
    """The extensions the request offers."""
    compressed: bool
    """permessage-deflate was negotiated."""

    def request(self) -> bytes:
        """The handshake request to write."""
        ...

    def accept(self, response: HandshakeResponse, head: bytes, rest: bytes) -> None:
        """Take the server's 101 answer (checked already; its head as bytes);
        what followed it waits in ``backlog``. Raises ProtocolError."""
        ...

    def receive(self, data: bytes, room: int = ROOM) -> list[Message]:
        """Parse received bytes (and what waits in ``backlog`` before them):
        the complete messages in them. Parsing stops once the messages reach
        ``room`` bytes; what is left waits in ``backlog``."""
        ...

    @property
    def backlog(self) -> bool:
        """Bytes received earlier wait to be parsed: ``receive(b"", room)``."""
        ...

    @property
    def failed(self) -> bool:
        """The client failed the connection (a violation is recorded)."""
        ...

    def receive_eof(self) -> None: ...

    def send(self, message: Message) -> bytes:
        """The frame for ``message`` (valid text: the socket checks it first)."""
        ...

    def ping(self, payload: bytes) -> bytes: ...

    def close(self, code: int, reason: str) -> bytes:
        """Our close frame, or b"" when the connection is no longer open."""
        ...

    def pending(self) -> bytes:
        """Bytes the engine wrote on its own (pongs, the close reply)."""
        ...

    @property
    def writable(self) -> bool:
        """Data frames may be sent (we have not sent a close frame)."""
        ...

    @property
    def ended(self) -> bool:
        """Nothing more will come in: the peer's close, a violation, or EOF."""
        ...

    @property
    def ending(self) -> Ending: ...


def _header_bytes(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


class Inflater:
    """The server's compressed messages (RFC 7692), inflated a piece at a time
    under the size limit, for both engines: a deflate bomb is refused before
    it inflates, and the output comes in pieces of at most ``INFLATE_STEP``
    bytes (zlib hands each over without a copy). A server may end a message
    with a final deflate block: the next message then starts a new stream
    (one that refers back past it does not inflate, and fails the connection),
    and nothing may follow that block within the message."""

    __slots__ = ("_bits", "_reset", "_zlib")

    def __init__(self, bits: int, reset: bool) -> None:
        self._bits = bits
        self._reset = reset  # no context takeover: a new stream for each message
        self._zlib: _Zlib | None = None

    def inflate(self, chunk: bytes, last: bool, room: int) -> list[bytes] | int:
        """The output of ``chunk`` (and the message's end when ``last``); the
        close code that fails the connection instead: 1009 once more than
        ``room`` bytes come out, 1007 for data that does not inflate."""
        inflater = self._zlib
        if inflater is None:
            inflater = self._zlib = zlib.decompressobj(wbits=-self._bits)
        pieces: list[bytes] = []
        size = 0
        tail = last
        while True:
            if inflater.eof:  # the server's final block
                if chunk and chunk is not _DEFLATE_TAIL:
                    return 1007  # data after the end of the stream
                break
            try:
                piece = inflater.decompress(chunk, INFLATE_STEP)
            except zlib.error:
                return 1007
            if piece:
                size += len(piece)
                if size > room:
                    return TOO_BIG
                pieces.append(piece)
            chunk = inflater.unconsumed_tail or inflater.unused_data
            if chunk or len(piece) == INFLATE_STEP:
                continue  # more to come of what was given
            if not tail:
                break
            chunk, tail = _DEFLATE_TAIL, False
        if last and (self._reset or inflater.eof):
            self._zlib = None
        return pieces


class _Zlib(Protocol):
    """What the engine uses of a ``zlib.decompressobj()``."""

    @property
    def unconsumed_tail(self) -> bytes: ...

    @property
    def unused_data(self) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = 0, /) -> bytes: ...


class _Message:
    """A message being received: its size, fragments and parts so far (text is
    decoded as it comes, so that invalid UTF-8 fails at once)."""

    __slots__ = ("decoder", "fragments", "inflate", "parts", "size")

    def __init__(self, text: bool, inflate: bool) -> None:
        self.parts: list[bytes | str] = []
        self.size = 0
        self.fragments = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")() if text else None
        self.inflate = inflate


class _Backlog:
    """What both engines do with received bytes they have not parsed yet: the
    bytes that came with the handshake answer, and those left once a read's
    messages filled the room. ``_done``: nothing more is parsed (the server's
    close, a violation, the end of the stream)."""

    __slots__ = ("_data", "_done", "_held")

    def __init__(self) -> None:
        self._data = b""  # received bytes not parsed yet
        self._held = False  # parsing stopped for room: _data can be parsed now
        self._done = False

    def _keep(self, rest: bytes) -> None:
        """What followed the handshake answer: the link's first read parses it."""
        if rest:
            self._data = rest
            self._held = True

    def _take(self, data: bytes) -> bytes:
        """``data`` behind what waits, to parse now."""
        if self._data:
            data = self._data + data if data else self._data
            self._data = b""
        self._held = False
        return data

    @property
    def backlog(self) -> bool:
        """Received bytes wait to be parsed (``receive(b"", room)``)."""
        return self._held and not self._done

    @property
    def ended(self) -> bool:
        return self._done


class WebsocketsEngine(_Backlog):
    """websockets' sans-I/O ``ClientProtocol`` behind the seam.

    The data frames (text, binary, continuation) are parsed here, straight
    from the received bytes: a message's size is held to the limit from its
    frame headers, and past it once inflated, a piece at a time; text is
    decoded as each piece arrives, so invalid UTF-8 fails the connection at
    the first bad byte, even in the middle of a frame; and parsing stops once
    a read has produced ``room`` bytes of messages, the rest waiting in
    ``backlog`` until the application makes room. Control frames go, whole,
    to websockets' protocol, which answers pings and the close frame and
    checks them; it also frames what the client sends. Anything else a
    server must not send fails the connection with 1002 here.
    """

    __slots__ = (
        "_deflate",
        "_done",
        "_fin",
        "_headers",
        "_inflater",
        "_left",
        "_max_size",
        "_message",
        "_p",
        "_queued",
        "_violation",
        "compressed",
        "controls",
        "extension_names",
        "key",
    )

    def __init__(
        self,
        target: Target,
        headers: Sequence[tuple[str, str]],
        max_size: int,
        subprotocols: Sequence[str] = (),
        compression: Deflate | None = None,
    ) -> None:
        path, _, query = target.resource.partition("?")
        uri = WebSocketURI(target.secure, target.host, target.port, path, query)
        self._deflate = compression
        self.extension_names: tuple[str, ...] = (
            ("permessage-deflate",) if compression is not None else ()
        )
        self.compressed = False
        # Created OPEN: the handshake answer is read and checked by
        # ``_handshake`` for every engine. The protocol sees only control
        # frames (which are never larger than 125 bytes).
        self._p = ClientProtocol(
            uri,
            extensions=[offer(compression)] if compression is not None else None,
            subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
            state=WS_OPEN,
            max_size=None,
            logger=_QUIET,
        )
        self._max_size = max_size
        self._queued = False  # the protocol queued bytes (a pong, a close frame)
        super().__init__()
        self._left = 0  # payload bytes of the current data frame still to come
        self._fin = False  # the current data frame ends its message
        self._message: _Message | None = None
        self._inflater: Inflater | None = None  # once compression is agreed
        self._violation: tuple[int, str] | None = None
        self.key = self._p.key
        self.controls: list[tuple[bool, bytes, int]] = []
        self._headers = list(headers)

    def request(self) -> bytes:
        request = self._p.connect()
        for name, value in self._headers:
            request.headers[name] = value
        self._headers = []
        return request.serialize()

    def accept(self, response: HandshakeResponse, head: bytes, rest: bytes) -> None:
        answer = response.header("sec-websocket-extensions")
        if answer and self._deflate is not None:  # the name was checked already
            agreed = negotiate(self._deflate, answer)
            self._inflater = Inflater(
                agreed.remote_max_window_bits, agreed.remote_no_context_takeover
            )
            # the protocol compresses what the client sends; it never decodes
            # (the engine inflates the server's messages), so it holds no decoder
            self._p.extensions = [
                WebsocketsDeflate(
                    True,
                    agreed.local_no_context_takeover,
                    agreed.remote_max_window_bits,
                    agreed.local_max_window_bits,
                    agreed.compress_settings,
                )
            ]
            self.compressed = True
        self._keep(rest)

    def receive(self, data: bytes, room: int = ROOM) -> list[Message]:
        out: list[Message] = []
        if self._done:
            return out
        data = self._take(data)
        end = len(data)
        pos = 0
        produced = 0
        max_size = self._max_size
        while pos < end:
            if self._left:
                # the payload of a data frame, as much of it as has come
                take = self._left if self._left <= end - pos else end - pos
                self._left -= take
                pos += take
                done = self._payload(data[pos - take : pos], not self._left and self._fin, out)
                if done < 0:
                    return out
                produced += done
                if produced >= room and pos < end:
                    self._held = True
                    break
                continue
            if end - pos < 2:
                break
            first = data[pos]
            length = data[pos + 1]
            if length < 126:
                start = pos + 2
            elif length == 126:
                if end - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
                if length < 126:
                    self._fail(1002, "a frame length not in its shortest form")
                    return out
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
                if length >> 63:
                    self._fail(1002, "a frame length with its most significant bit set")
                    return out
                if length < 65536:
                    self._fail(1002, "a frame length not in its shortest form")
                    return out
            else:
                self._fail(1002, "a masked frame from the server")
                return out
            stop = start + length
            # the common frame: a whole message in one frame, all of it here
            if (first == 0x81 or first == 0x82) and stop <= end and self._message is None:
                if length > max_size:
                    self._fail(TOO_BIG, "a message exceeded max_message_size")
                    return out
                if first == 0x81:
                    try:
                        out.append(data[start:stop].decode())
                    except UnicodeDecodeError as exc:
                        self._fail(1007, f"invalid UTF-8 in a text message ({exc.reason})")
                        return out
                else:
                    out.append(data[start:stop])
                pos = stop
                produced += length
                if produced >= room and pos < end:
                    self._held = True
                    break
                continue
            opcode = first & 0x0F
            if opcode >= 0x8:
                if opcode > 0xA:
                    self._fail(1002, f"an unknown opcode ({opcode})")
                    return out
                if length > 125:
                    self._fail(1002, "a control frame longer than 125 bytes")
                    return out
                if stop > end:
                    break  # the rest of the control frame has not come yet
                self._control(data[pos:stop], len(out))
                if self._done:
                    return out
                pos = stop
                continue
            if opcode > 0x2:
                self._fail(1002, f"an unknown opcode ({opcode})")
                return out
            if first & 0x70 and (first & 0x30 or not self.compressed or opcode == 0):
                self._fail(1002, "reserved bits set in a frame")
                return out
            message = self._message
            if opcode:
                if message is not None:
                    self._fail(1002, "a new message began before the last one ended")
                    return out
                message = self._message = _Message(opcode == 0x1, bool(first & 0x40))
            elif message is None:
                self._fail(1002, "a continuation frame with no message to continue")
                return out
            message.fragments += 1
            if message.fragments > fragment_limit(max_size):
                self._fail(TOO_BIG, "a message had too many fragments")
                return out
            if not message.inflate and message.size + length > max_size:
                self._fail(TOO_BIG, "a message exceeded max_message_size")
                return out
            self._fin = first >= 0x80
            self._left = length
            pos = start
            if not length:
                done = self._payload(b"", self._fin, out)
                if done < 0:
                    return out
                produced += done
                if produced >= room and pos < end:
                    self._held = True
                    break
        if pos < end:
            self._data = data[pos:]
        return out

    def _payload(self, chunk: bytes, last: bool, out: list[Message]) -> int:
        """Add a piece of a data frame's payload to the message; the bytes of
        the message it completed (0 if none), or -1 if it failed the connection."""
        message = self._message
        assert message is not None
        if message.inflate:
            pieces = self._inflate(message, chunk, last)
            if self._done:
                return -1
        else:
            message.size += len(chunk)
            pieces = [chunk]
        decoder = message.decoder
        parts = message.parts
        if decoder is not None:
            try:
                for index, piece in enumerate(pieces):
                    text = decoder.decode(piece, last and index == len(pieces) - 1)
                    if text:
                        parts.append(text)
                if last and not pieces:
                    decoder.decode(b"", True)
            except UnicodeDecodeError as exc:
                self._fail(1007, f"invalid UTF-8 in a text message ({exc.reason})")
                return -1
        else:
            parts.extend(piece for piece in pieces if piece)
        if not last:
            return 0
        self._message = None
        if decoder is not None:
            out.append(parts[0] if len(parts) == 1 else "".join(parts))  # type: ignore[arg-type]
        else:
            out.append(parts[0] if len(parts) == 1 else b"".join(parts))  # type: ignore[arg-type]
        return message.size

    def _inflate(self, message: _Message, chunk: bytes, last: bool) -> list[bytes]:
        """Inflate a piece of a compressed message (see ``Inflater``)."""
        assert self._inflater is not None  # the frame's RSV1 was checked
        pieces = self._inflater.inflate(chunk, last, self._max_size - message.size)
        if isinstance(pieces, int):
            if pieces == TOO_BIG:
                self._fail(TOO_BIG, "a message exceeded max_message_size")
            else:
                self._fail(pieces, "a compressed message that does not inflate")
            return []
        message.size += sum(map(len, pieces))
        return pieces

    def _control(self, frame: bytes, index: int) -> None:
        """A whole control frame: the protocol answers it (pong, the close
        reply) or fails the connection."""
        p = self._p
        p.receive_data(frame)
        self._queued = True
        for event in p.events_received():
            opcode = event.opcode  # type: ignore[union-attr]  # OPEN: frames only
            if opcode is PONG or opcode is PING:
                pong = opcode is PONG
                self.controls.append((pong, bytes(event.data), index))  # type: ignore[union-attr]
        if p.close_rcvd is not None or p.parser_exc is not None:
            self._done = True
            self._message = None
            self._data = b""

    def _fail(self, code: int, why: str) -> None:
        self._message = None
        self._done = True
        self._data = b""
        if self._violation is None:
            self._violation = (code, why)
        self._p.fail(code, why[:REASON_MAX])
        self._queued = True

    def receive_eof(self) -> None:
        self._done = True
        self._p.receive_eof()

    def send(self, message: Message) -> bytes:
        p = self._p
        if not self.compressed:  # framed here: the protocol adds nothing to it
            if type(message) is str:
                return client_frame(0x81, message.encode())
            return client_frame(0x82, cast(bytes, message))
        if type(message) is str:
            p.send_text(message.encode())
        else:
            p.send_binary(cast(bytes, message))
        writes = p.data_to_send()
        return writes[0] if len(writes) == 1 else b"".join(writes)

    def ping(self, payload: bytes) -> bytes:
        self._p.send_ping(payload)
        return b"".join(self._p.data_to_send())

    def close(self, code: int, reason: str) -> bytes:
        if self._p.state is not WS_OPEN:
            return b""
        self._p.send_close(code, reason)
        return b"".join(self._p.data_to_send())

    def pending(self) -> bytes:
        if not self._queued:
            return b""
        self._queued = False
        return b"".join(self._p.data_to_send())

    @property
    def writable(self) -> bool:
        return self._p.state is WS_OPEN

    @property
    def failed(self) -> bool:
        return self._violation is not None or isinstance(
            self._p.parser_exc, WebsocketsProtocolError | UnicodeDecodeError
        )

    @property
    def ending(self) -> Ending:
        p = self._p
        violation = self._violation
        if violation is None:
            # a control frame the protocol refused (EOF is no violation)
            error = p.parser_exc
            if isinstance(error, WebsocketsProtocolError):
                violation = (1002, str(error))
            elif isinstance(error, UnicodeDecodeError):
                violation = (1007, f"invalid UTF-8 in a close reason ({error.reason})")
        peer = p.close_rcvd
        peer_close = (peer.code, peer.reason) if peer is not None else None
        return Ending(peer_close=peer_close, violation=violation)
