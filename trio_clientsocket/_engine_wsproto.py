"""The second engine, ``transport="wsproto"``: wsproto's ``WSConnection``
behind the engine seam (see ``_engine``). Imported on first use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from websockets.extensions.permessage_deflate import PerMessageDeflate as WebsocketsDeflate
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
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits
from wsproto.utilities import ProtocolError as WsprotoError

from ._compression import Deflate, negotiate
from ._engine import (
    INFLATE_SLICE,
    REASON_MAX,
    ROOM,
    TOO_BIG,
    Ending,
    Inflater,
    _Backlog,
    _header_bytes,
    _Message,
    fragment_limit,
)
from ._errors import ProtocolError
from ._events import Message
from ._handshake import HandshakeResponse, request_key
from ._url import Target

__all__ = ["WsprotoEngine"]


class _WsprotoDeflate(WsprotoDeflate):
    """wsproto's permessage-deflate (it compresses what the client sends),
    with the parameters ``negotiate`` agreed (wsproto's own parser refuses a
    valid ``server_max_window_bits=8``) and the server's messages inflated by
    ``Inflater``, under the size limit (wsproto's own also loses its place in
    a compressed message when a control frame comes between its frames)."""

    def __init__(self, offer: Deflate, max_size: int) -> None:
        super().__init__(
            client_no_context_takeover=offer.client_no_context_takeover,
            client_max_window_bits=offer.client_max_window_bits,
            server_no_context_takeover=offer.server_no_context_takeover,
            server_max_window_bits=offer.server_max_window_bits,
        )
        self.agreed: WebsocketsDeflate | None = None
        """What ``negotiate`` made of the server's answer (set before wsproto
        reads the answer)."""
        self._max_size = max_size
        self._inflater: Inflater | None = None
        self._control = False  # the frame coming in is a control frame
        self._inflating = False  # the message coming in is compressed
        self._size = 0  # its size so far, inflated

    def enabled(self) -> bool:
        return self._inflater is not None

    def finalize(self, offer: str) -> None:
        agreed = self.agreed
        assert agreed is not None
        self.client_no_context_takeover = agreed.local_no_context_takeover
        self.client_max_window_bits = agreed.local_max_window_bits
        self._inflater = Inflater(agreed.remote_max_window_bits, agreed.remote_no_context_takeover)

    def frame_inbound_header(
        self, proto: object, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        self._control = opcode.iscontrol()
        if rsv.rsv1 and (self._control or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR
        if not self._control and opcode is not Opcode.CONTINUATION:
            self._inflating = rsv.rsv1
            self._size = 0
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(self, proto: object, data: bytes) -> bytes | CloseReason:
        if self._control or not self._inflating:
            return data
        return self._inflate(bytes(data), False)

    def frame_inbound_complete(self, proto: object, fin: bool) -> bytes | CloseReason | None:
        if self._control or not self._inflating or not fin:
            return None
        self._inflating = False
        return self._inflate(b"", True)

    def _inflate(self, data: bytes, last: bool) -> bytes | CloseReason:
        assert self._inflater is not None
        pieces = self._inflater.inflate(data, last, self._max_size - self._size)
        if isinstance(pieces, int):
            return CloseReason(pieces)
        out = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._size += len(out)
        return out


class WsprotoEngine(_Backlog):
    """wsproto's ``WSConnection`` behind the seam."""

    __slots__ = (
        "_deflate",
        "_deflate_offer",
        "_headers",
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
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._deflate_offer = compression
        self._deflate = _WsprotoDeflate(compression, max_size) if compression is not None else None
        self.extension_names: tuple[str, ...] = (
            ("permessage-deflate",) if compression is not None else ()
        )
        self.compressed = False
        self._target = target
        self._headers = list(headers)
        self._subprotocols = list(subprotocols)
        self._max_size = max_size
        self._message: _Message | None = None
        super().__init__()
        self._produced = 0  # bytes of the messages completed by this receive()
        self._out: list[bytes] = []
        self._peer_close: tuple[int, str] | None = None
        self._violation: tuple[int, str] | None = None
        self.key = ""
        self.controls: list[tuple[bool, bytes, int]] = []

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
        if answer and self._deflate is not None and self._deflate_offer is not None:
            # the same rules as the other engine; the extension takes what they agreed
            self._deflate.agreed = negotiate(self._deflate_offer, answer)
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
        self._keep(rest)

    @property
    def failed(self) -> bool:
        return self._violation is not None

    def receive(self, data: bytes, room: int = ROOM) -> list[Message]:
        if self._done:
            return []
        data = self._take(data)
        self._produced = 0
        if not self.compressed or len(data) <= INFLATE_SLICE:
            self._ws.receive_data(data)
            return self._events([])
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
            self._events(out)
            if self._done:
                break
        return out

    def _events(self, out: list[Message]) -> list[Message]:
        """Append the messages of the events wsproto parsed to ``out``."""
        ws = self._ws
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                if not self._part(event, out):
                    break
            elif isinstance(event, Ping):
                self.controls.append((False, bytes(event.payload), len(out)))
                if ws.state is ConnectionState.OPEN:
                    self._out.append(ws.send(event.response()))
            elif isinstance(event, Pong):
                self.controls.append((True, bytes(event.payload), len(out)))
            elif isinstance(event, CloseConnection):
                state = ws.state
                code = int(event.code)  # wsproto's CloseReason, or an int
                if state is ConnectionState.REMOTE_CLOSING:
                    self._peer_close = (code, event.reason or "")
                    self._out.append(ws.send(event.response()))
                elif state is ConnectionState.CLOSED:
                    if code != 1006:  # 1006: end of stream, not a frame
                        self._peer_close = (code, event.reason or "")
                elif code == TOO_BIG:  # the inflater's limit (wsproto: "error in extension")
                    self._fail(TOO_BIG, "a message exceeded max_message_size")
                elif event.reason == "error in extension":  # the inflater: 1007
                    self._fail(code, "a compressed message that does not inflate")
                else:  # wsproto found the server's bytes invalid: state unchanged
                    self._fail(code, event.reason or "invalid frame")
                self._done = True
                break
        return out

    def _part(self, event: TextMessage | BytesMessage, out: list[Message]) -> bool:
        data = event.data
        assembly = self._message
        if assembly is None:
            if event.message_finished:
                size = len(data) if type(data) is not str or data.isascii() else len(data.encode())
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
        self._done = True
        if self._violation is None:
            self._violation = (code, why)
        if self._ws.state is ConnectionState.OPEN:
            self._out.append(self._ws.send(CloseConnection(code=code, reason=why[:REASON_MAX])))

    def receive_eof(self) -> None:
        if not self._done and self._ws.state is not ConnectionState.CLOSED:
            self._ws.receive_data(None)
        self._done = True

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
    def ending(self) -> Ending:
        return Ending(peer_close=self._peer_close, violation=self._violation)
