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
import zlib
from collections.abc import Sequence
from typing import Literal, Protocol, cast

import attrs
from websockets.client import ClientProtocol
from websockets.exceptions import ProtocolError as WebsocketsProtocolError
from websockets.extensions.permessage_deflate import PerMessageDeflate as WebsocketsDeflate
from websockets.frames import PONG
from websockets.protocol import OPEN as WS_OPEN
from websockets.uri import WebSocketURI
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate
from wsproto.utilities import ProtocolError as WsprotoError

from ._compression import Deflate, negotiate, offer
from ._errors import ConnectionLost, ProtocolError, TransportError
from ._events import Message
from ._handshake import HandshakeResponse, request_key
from ._url import Target

__all__ = [
    "ENGINES",
    "Ending",
    "Engine",
    "EngineName",
    "WebsocketsEngine",
    "WsprotoEngine",
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
    pong: bytes | None
    """The payload of the last pong received."""
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


class _Inflater(Protocol):
    """What the engine uses of a ``zlib.decompressobj()``."""

    @property
    def unconsumed_tail(self) -> bytes: ...

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


class WebsocketsEngine:
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
        "_data",
        "_deflate",
        "_done",
        "_fin",
        "_headers",
        "_held",
        "_inflater",
        "_left",
        "_max_size",
        "_message",
        "_p",
        "_remote_bits",
        "_remote_reset",
        "_violation",
        "compressed",
        "extension_names",
        "key",
        "pong",
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
        self._data = b""  # received bytes not parsed yet
        self._held = False  # parsing stopped for room: _data can be parsed now
        self._left = 0  # payload bytes of the current data frame still to come
        self._fin = False  # the current data frame ends its message
        self._message: _Message | None = None
        self._inflater: _Inflater | None = None
        self._remote_bits = 15
        self._remote_reset = False  # a new inflater for each message
        self._violation: tuple[int, str] | None = None
        self._done = False  # nothing more is parsed: a close frame, a violation, EOF
        self.key = self._p.key
        self.pong: bytes | None = None
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
            self._remote_bits = agreed.remote_max_window_bits
            self._remote_reset = agreed.remote_no_context_takeover
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
        if rest:
            self._data = rest
            self._held = True  # the link parses it before its first read

    @property
    def backlog(self) -> bool:
        """Received bytes wait to be parsed (``receive(b"", room)``)."""
        return self._held and not self._done

    def receive(self, data: bytes, room: int = ROOM) -> list[Message]:
        out: list[Message] = []
        if self._done:
            return out
        if self._data:
            data = self._data + data if data else self._data
            self._data = b""
        self._held = False
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
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
                if length >> 63:
                    self._fail(1002, "a frame length with its most significant bit set")
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
                self._control(data[pos:stop])
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
        """Inflate a piece of a compressed message, never more than the limit
        allows (a deflate bomb is refused before it inflates), in pieces of
        ``INFLATE_STEP`` bytes (zlib hands each over without a copy)."""
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = zlib.decompressobj(wbits=-self._remote_bits)
        pieces: list[bytes] = []
        tail = last
        try:
            while True:
                piece = inflater.decompress(chunk, INFLATE_STEP)
                if piece:
                    message.size += len(piece)
                    if message.size > self._max_size:
                        self._fail(TOO_BIG, "a message exceeded max_message_size")
                        return pieces
                    pieces.append(piece)
                chunk = inflater.unconsumed_tail
                if chunk or len(piece) == INFLATE_STEP:
                    continue  # more to come of what was given
                if not tail:
                    break
                chunk, tail = _DEFLATE_TAIL, False
        except zlib.error as exc:
            self._fail(1002, f"a compressed message that does not inflate ({exc})")
            return pieces
        if last and self._remote_reset:
            self._inflater = None
        return pieces

    def _control(self, frame: bytes) -> None:
        """A control frame (whole, or a header the protocol refuses): the
        protocol answers it (pong, the close reply) or fails the connection."""
        p = self._p
        p.receive_data(frame)
        for event in p.events_received():
            if event.opcode is PONG:  # type: ignore[union-attr]  # OPEN: frames only
                self.pong = bytes(event.data)  # type: ignore[union-attr]
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

    def receive_eof(self) -> None:
        self._done = True
        self._p.receive_eof()

    def send(self, message: Message) -> bytes:
        p = self._p
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
        return b"".join(self._p.data_to_send())

    @property
    def writable(self) -> bool:
        return self._p.state is WS_OPEN

    @property
    def ended(self) -> bool:
        return self._done

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


class WsprotoEngine:
    """wsproto's ``WSConnection`` behind the seam."""

    __slots__ = (
        "_data",
        "_deflate",
        "_deflate_offer",
        "_ended",
        "_headers",
        "_held",
        "_max_size",
        "_message",
        "_out",
        "_peer_close",
        "_produced",
        "_subprotocols",
        "_target",
        "_violation",
        "_ws",
        "compressed",
        "extension_names",
        "key",
        "pong",
    )

    def __init__(
        self,
        target: Target,
        headers: Sequence[tuple[str, str]],
        max_size: int,
        subprotocols: Sequence[str] = (),
        compression: Deflate | None = None,
    ) -> None:
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._deflate_offer = compression
        self._deflate = (
            WsprotoDeflate(
                client_no_context_takeover=compression.client_no_context_takeover,
                client_max_window_bits=compression.client_max_window_bits,
                server_no_context_takeover=compression.server_no_context_takeover,
                server_max_window_bits=compression.server_max_window_bits,
            )
            if compression is not None
            else None
        )
        self.extension_names: tuple[str, ...] = (
            ("permessage-deflate",) if compression is not None else ()
        )
        self.compressed = False
        self._target = target
        self._headers = list(headers)
        self._subprotocols = list(subprotocols)
        self._max_size = max_size
        self._message: _Message | None = None
        self._data = b""  # received bytes not handed to wsproto yet
        self._held = False  # handing them stopped for room
        self._produced = 0  # bytes of the messages completed by this receive()
        self._out: list[bytes] = []
        self._peer_close: tuple[int, str] | None = None
        self._violation: tuple[int, str] | None = None
        self._ended = False
        self.key = ""
        self.pong: bytes | None = None

    def request(self) -> bytes:
        data = self._ws.send(
            Request(
                host=self._target.host_header,
                target=self._target.resource,
                extra_headers=_header_bytes(self._headers),
                subprotocols=self._subprotocols,
                extensions=[self._deflate] if self._deflate is not None else [],
            )
        )
        self.key = request_key(data)
        return data

    def accept(self, response: HandshakeResponse, head: bytes, rest: bytes) -> None:
        answer = response.header("sec-websocket-extensions")
        if answer and self._deflate_offer is not None:
            negotiate(self._deflate_offer, answer)  # the same rules as the other engine
        ws = self._ws
        try:
            ws.receive_data(head + b"\r\n\r\n")
            events = list(ws.events())
        except WsprotoError as exc:
            raise ProtocolError(f"invalid handshake response: {exc}") from exc
        for event in events:
            if isinstance(event, AcceptConnection):
                self.compressed = bool(event.extensions)
        if not any(isinstance(event, AcceptConnection) for event in events):
            # check_upgrade() passed it: wsproto refused it for a reason of its own
            rejected = any(isinstance(event, RejectConnection) for event in events)
            raise ProtocolError(
                "invalid handshake response" + (" (refused by wsproto)" if rejected else "")
            )
        if rest:
            self._data = rest
            self._held = True  # the link parses it before its first read

    @property
    def backlog(self) -> bool:
        return self._held and not self._ended

    @property
    def failed(self) -> bool:
        return self._violation is not None

    def receive(self, data: bytes, room: int = ROOM) -> list[Message]:
        if self._ended:
            return []
        if self._data:
            data = self._data + data if data else self._data
            self._data = b""
        self._held = False
        self._produced = 0
        if not self.compressed or len(data) <= INFLATE_SLICE:
            self._ws.receive_data(data)
            return self._events()
        # wsproto inflates each piece it is given whole: in slices, a deflate
        # bomb inflates at most ~1,000 x a slice past the size limit, and the
        # slices stop once the messages fill the room
        out: list[Message] = []
        for start in range(0, len(data), INFLATE_SLICE):
            if self._produced >= room:
                self._data = data[start:]
                self._held = True
                break
            self._ws.receive_data(data[start : start + INFLATE_SLICE])
            out += self._events()
            if self._ended:
                break
        return out

    def _events(self) -> list[Message]:
        ws = self._ws
        out: list[Message] = []
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                if not self._part(event, out):
                    break
            elif isinstance(event, Ping):
                if ws.state is ConnectionState.OPEN:
                    self._out.append(ws.send(event.response()))
            elif isinstance(event, Pong):
                self.pong = bytes(event.payload)
            elif isinstance(event, CloseConnection):
                state = ws.state
                if state is ConnectionState.REMOTE_CLOSING:
                    self._peer_close = (event.code, event.reason or "")
                    self._out.append(ws.send(event.response()))
                elif state is ConnectionState.CLOSED:
                    if event.code != 1006:  # 1006: end of stream, not a frame
                        self._peer_close = (event.code, event.reason or "")
                else:  # wsproto found the server's bytes invalid: state unchanged
                    self._fail(event.code, event.reason or "invalid frame")
                self._ended = True
                break
        return out

    def _part(self, event: TextMessage | BytesMessage, out: list[Message]) -> bool:
        data = event.data
        assembly = self._message
        if assembly is None:
            if event.message_finished:
                size = len(data) if type(data) is not str or data.isascii() else len(
                    data.encode()
                )
                if size > self._max_size:
                    self._fail(TOO_BIG, "a message exceeded max_message_size")
                    return False
                out.append(data if type(data) is str else bytes(cast(bytes, data)))
                self._produced += size
                return True
            # wsproto decodes text itself, as it comes
            assembly = self._message = _Message(text=False, inflate=False)
        if type(data) is str:
            assembly.size += len(data) if data.isascii() else len(data.encode())
        else:
            assembly.size += len(data)
        assembly.fragments += 1
        if assembly.size > self._max_size:
            self._fail(TOO_BIG, "a message exceeded max_message_size")
            return False
        if assembly.fragments > fragment_limit(self._max_size):
            self._fail(TOO_BIG, "a message had too many fragments")
            return False
        if data:
            assembly.parts.append(data if type(data) is str else bytes(cast(bytes, data)))
        if event.message_finished:
            self._message = None
            self._produced += assembly.size
            if isinstance(event, TextMessage):
                out.append("".join(assembly.parts))  # type: ignore[arg-type]
            else:
                out.append(b"".join(assembly.parts))  # type: ignore[arg-type]
        return True

    def _fail(self, code: int, why: str) -> None:
        self._message = None
        self._data = b""
        self._ended = True
        if self._violation is None:
            self._violation = (code, why)
        if self._ws.state is ConnectionState.OPEN:
            self._out.append(self._ws.send(CloseConnection(code=code, reason=why[:REASON_MAX])))

    def receive_eof(self) -> None:
        if not self._ended and self._ws.state is not ConnectionState.CLOSED:
            self._ws.receive_data(None)
        self._ended = True

    def send(self, message: Message) -> bytes:
        if type(message) is str:
            return self._ws.send(TextMessage(data=message))
        return self._ws.send(BytesMessage(data=cast(bytes, message)))

    def ping(self, payload: bytes) -> bytes:
        return self._ws.send(Ping(payload=payload))

    def close(self, code: int, reason: str) -> bytes:
        if self._ws.state is not ConnectionState.OPEN:
            return b""
        return self._ws.send(CloseConnection(code=code, reason=reason))

    def pending(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    @property
    def writable(self) -> bool:
        return self._ws.state is ConnectionState.OPEN

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def ending(self) -> Ending:
        return Ending(peer_close=self._peer_close, violation=self._violation)


ENGINES: dict[str, type[WebsocketsEngine] | type[WsprotoEngine]] = {
    "websockets": WebsocketsEngine,
    "wsproto": WsprotoEngine,
}
