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
from collections.abc import Sequence
from typing import Literal, Protocol, cast

import attrs
from websockets.client import ClientProtocol
from websockets.exceptions import PayloadTooBig
from websockets.exceptions import ProtocolError as WebsocketsProtocolError
from websockets.frames import BINARY, CONT, PONG, TEXT, Frame
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
from wsproto.extensions import PerMessageDeflate
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
INFLATE_SLICE = 1024
"""Bytes handed to wsproto at a time on a compressed connection."""

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


def deflate_slack(max_size: int) -> int:
    """How much larger than ``max_size`` a compressed frame may be: deflate
    makes incompressible data a little larger (stored blocks add 5 bytes in
    a few hundred at worst, with a server's smallest memory level)."""
    return max_size // 4 + 1024


@attrs.frozen
class Ending:
    """How a connection ended, as the engine saw it."""

    peer_close: tuple[int, str] | None = None
    """The peer's close frame: code (1005 when it had none) and reason."""
    violation: tuple[int, str] | None = None
    """The client failed the connection: the close code it sent and why (the
    server broke the protocol, or a message was too big)."""


def ending_error(ending: Ending) -> TransportError:
    """The error that reports a connection that ended this way.

    Examples:
        >>> ending_error(Ending(peer_close=(1001, "bye")))
        ConnectionLost('server closed the connection (code 1001, reason \\'bye\\')')
    """
    if ending.violation is not None:
        code, why = ending.violation
        if code == TOO_BIG:
            return ConnectionLost(TOO_BIG, why)
        return ProtocolError(f"the server broke the WebSocket protocol: {why}", code=code)
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

    def accept(self, response: HandshakeResponse, head: bytes, rest: bytes) -> list[Message]:
        """Take the server's 101 answer (checked already; its head as bytes) and
        what followed it; the messages in it. Raises ProtocolError."""
        ...

    def receive(self, data: bytes) -> list[Message]:
        """Parse received bytes: the complete messages in them."""
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


class _Assembly:
    """Fragments of one message being received, under the size and fragment limits."""

    __slots__ = ("decoder", "fragments", "parts", "size", "text")

    def __init__(self, text: bool) -> None:
        self.text = text
        self.parts: list[bytes | str] = []
        self.size = 0
        self.fragments = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")() if text else None


class WebsocketsEngine:
    """websockets' sans-I/O ``ClientProtocol`` behind the seam."""

    __slots__ = (
        "_assembly",
        "_deflate",
        "_exact",
        "_headers",
        "_max_size",
        "_p",
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
        # ``_handshake`` for every engine (the protocol's own handshake parser
        # would also keep the answer's headers alive for the connection's life).
        # websockets applies its limit to a compressed frame's payload too,
        # which deflate makes a little larger than incompressible data: offering
        # compression, the protocol gets room for that, and ``receive`` holds
        # each message to the exact limit once inflated.
        self._exact = compression is not None
        self._p = ClientProtocol(
            uri,
            extensions=[offer(self._deflate)] if self._deflate is not None else None,
            subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
            state=WS_OPEN,
            max_size=max_size + deflate_slack(max_size) if self._exact else max_size,
            logger=_QUIET,
        )
        self._max_size = max_size
        self._assembly: _Assembly | None = None
        self._violation: tuple[int, str] | None = None
        self.key = self._p.key
        self.pong: bytes | None = None
        self._headers = list(headers)

    def request(self) -> bytes:
        request = self._p.connect()
        for name, value in self._headers:
            request.headers[name] = value
        self._headers = []
        return request.serialize()

    def accept(self, response: HandshakeResponse, head: bytes, rest: bytes) -> list[Message]:
        answer = response.header("sec-websocket-extensions")
        if answer and self._deflate is not None:  # the name was checked already
            self._p.extensions = [negotiate(self._deflate, answer)]
            self.compressed = True
        return self.receive(rest) if rest else []

    def receive(self, data: bytes) -> list[Message]:
        p = self._p
        p.receive_data(data)
        out: list[Message] = []
        frames: list[Frame] = p.events_received()  # type: ignore[assignment]  # OPEN: frames only
        for frame in frames:
            opcode = frame.opcode
            payload: bytes = frame.data  # type: ignore[assignment]  # bytes or bytearray
            if opcode is TEXT:
                if frame.fin and self._assembly is None:
                    if self._exact and len(payload) > self._max_size:
                        self._fail(TOO_BIG, "a message exceeded max_message_size")
                        break
                    try:
                        out.append(payload.decode())
                    except UnicodeDecodeError as exc:
                        self._fail(1007, f"invalid UTF-8 in a text message ({exc.reason})")
                        break
                else:
                    self._assembly = _Assembly(text=True)
                    if not self._part(payload, frame.fin, out):
                        break
            elif opcode is BINARY:
                if frame.fin and self._assembly is None:
                    if self._exact and len(payload) > self._max_size:
                        self._fail(TOO_BIG, "a message exceeded max_message_size")
                        break
                    out.append(bytes(payload))  # the parser may hand a bytearray
                else:
                    self._assembly = _Assembly(text=False)
                    if not self._part(payload, frame.fin, out):
                        break
            elif opcode is CONT:
                if not self._part(payload, frame.fin, out):
                    break
            elif opcode is PONG:
                self.pong = bytes(payload)
            # PING: the protocol queued the pong itself; CLOSE: see ending.
        return out

    def _part(self, data: bytes, fin: bool, out: list[Message]) -> bool:
        """Add a fragment to the message being assembled; False if that failed
        the connection."""
        assembly = self._assembly
        assert assembly is not None  # the protocol refuses a stray continuation
        assembly.fragments += 1
        if assembly.fragments > fragment_limit(self._max_size):
            self._fail(TOO_BIG, "a message had too many fragments")
            return False
        if self._exact:
            assembly.size += len(data)
            if assembly.size > self._max_size:
                self._fail(TOO_BIG, "a message exceeded max_message_size")
                return False
        decoder = assembly.decoder
        if decoder is not None:
            try:
                text = decoder.decode(data, fin)
            except UnicodeDecodeError as exc:
                self._fail(1007, f"invalid UTF-8 in a text message ({exc.reason})")
                return False
            if text:
                assembly.parts.append(text)
        elif data:
            assembly.parts.append(bytes(data))
        if fin:
            self._assembly = None
            if decoder is not None:
                out.append("".join(assembly.parts))  # type: ignore[arg-type]
            else:
                out.append(b"".join(assembly.parts))  # type: ignore[arg-type]
        return True

    def _fail(self, code: int, why: str) -> None:
        self._assembly = None
        if self._violation is None:
            self._violation = (code, why)
        self._p.fail(code, why)

    def receive_eof(self) -> None:
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
        p = self._p
        return p.close_rcvd is not None or p.parser_exc is not None or self._violation is not None

    @property
    def ending(self) -> Ending:
        p = self._p
        violation = self._violation
        if violation is None:
            error = p.parser_exc
            if isinstance(error, PayloadTooBig):
                violation = (TOO_BIG, "a message exceeded max_message_size")
            elif isinstance(error, WebsocketsProtocolError):
                violation = (1002, str(error))
            elif isinstance(error, UnicodeDecodeError):
                violation = (1007, f"invalid UTF-8 ({error.reason})")
        peer = p.close_rcvd
        peer_close = (peer.code, peer.reason) if peer is not None else None
        return Ending(peer_close=peer_close, violation=violation)


class WsprotoEngine:
    """wsproto's ``WSConnection`` behind the seam."""

    __slots__ = (
        "_assembly",
        "_deflate",
        "_deflate_offer",
        "_ended",
        "_headers",
        "_max_size",
        "_out",
        "_peer_close",
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
            PerMessageDeflate(
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
        self._assembly: _Assembly | None = None
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

    def accept(self, response: HandshakeResponse, head: bytes, rest: bytes) -> list[Message]:
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
        return self.receive(rest) if rest else []

    def receive(self, data: bytes) -> list[Message]:
        if self._ended:
            return []
        if self.compressed and len(data) > INFLATE_SLICE:
            # wsproto inflates each piece it is given whole: in slices, a
            # deflate bomb inflates at most ~1,000 x a slice past the size limit
            out: list[Message] = []
            for start in range(0, len(data), INFLATE_SLICE):
                self._ws.receive_data(data[start : start + INFLATE_SLICE])
                out += self._events()
                if self._ended:
                    break
            return out
        self._ws.receive_data(data)
        return self._events()

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
        assembly = self._assembly
        if assembly is None:
            if event.message_finished:
                size = len(data) if type(data) is not str or data.isascii() else len(
                    data.encode()
                )
                if size > self._max_size:
                    self._fail(TOO_BIG, "a message exceeded max_message_size")
                    return False
                out.append(data if type(data) is str else bytes(cast(bytes, data)))
                return True
            assembly = self._assembly = _Assembly(text=False)
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
            self._assembly = None
            if isinstance(event, TextMessage):
                out.append("".join(assembly.parts))  # type: ignore[arg-type]
            else:
                out.append(b"".join(assembly.parts))  # type: ignore[arg-type]
        return True

    def _fail(self, code: int, why: str) -> None:
        self._assembly = None
        self._ended = True
        if self._violation is None:
            self._violation = (code, why)
        if self._ws.state is ConnectionState.OPEN:
            self._out.append(self._ws.send(CloseConnection(code=code, reason=why[:120])))

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
