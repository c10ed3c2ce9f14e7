"""Recording a socket's traffic (the ``record=`` option): a transcript in JSON
lines of every connection the socket opened, from the stream seam.

The recorder wraps the ``open_stream`` the socket dials with, below the
socket's own logic and independent of it: it sees each call (a connection
attempt) and how it ended, and every byte of each stream both ways, which it
parses itself (the request and the answer's head, then WebSocket frames:
client frames unmasked, compressed messages inflated). The socket's own
events can be added with ``Recorder.record_event``. The format is documented
on the record-replay page; ``_replay`` reads it back.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Collection, Iterable
from types import TracebackType
from typing import Any, TextIO, TypeAlias

import attrs
import trio

from ._errors import (
    AttemptError,
    ConnectionLost,
    ConnectTimeout,
    HandshakeRejected,
    InvalidURLError,
    KeepaliveTimeout,
    ProtocolError,
    ProxyRejected,
    TransportError,
)
from ._events import (
    Closed,
    Connected,
    ConnectionFailed,
    Event,
    MessageReceived,
    Skipped,
    Undelivered,
)
from ._handshake import HeadReader, secret_header
from ._url import parse_url, redact_url
from ._version import __version__

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMAT",
    "VERSION",
    "Frames",
    "Part",
    "RecordOption",
    "Recorder",
    "error_fields",
    "recorder_for",
    "valid_close_code",
]

FORMAT = "trio-clientsocket-transcript"
"""The ``format`` of a transcript's header line."""
VERSION = 1
"""The transcript format's version: a reader refuses a newer one."""
DEFAULT_MAX_BYTES = 64 * 2**20
"""``Recorder(max_bytes=...)``'s default: 64 MiB."""

_OpenStream = Callable[[str], Awaitable[trio.abc.Stream]]
_MAX_HEAD = 65536
"""Bytes of a request head the recorder collects before giving up on it."""
_MIN_SECRET = 4
"""Shorter secrets are not searched for in free text (they would match words)."""

log = logging.getLogger("trio_clientsocket")

# -- errors, by name: what a transcript may name, and how to build it again ------

KNOWN_ERRORS: dict[str, type[BaseException]] = {
    "OSError": OSError,
    "ConnectionRefusedError": ConnectionRefusedError,
    "ConnectionResetError": ConnectionResetError,
    "ConnectionAbortedError": ConnectionAbortedError,
    "TimeoutError": TimeoutError,
    "socket.gaierror": socket.gaierror,
    "socket.herror": socket.herror,
    "ssl.SSLError": ssl.SSLError,
    "ssl.SSLCertVerificationError": ssl.SSLCertVerificationError,
    "ssl.SSLEOFError": ssl.SSLEOFError,
    "ssl.SSLZeroReturnError": ssl.SSLZeroReturnError,
    "trio.BrokenResourceError": trio.BrokenResourceError,
    "trio.TooSlowError": trio.TooSlowError,
    "trio_clientsocket.TransportError": TransportError,
    "trio_clientsocket.HandshakeRejected": HandshakeRejected,
    "trio_clientsocket.ProxyRejected": ProxyRejected,
    "trio_clientsocket.ConnectTimeout": ConnectTimeout,
    "trio_clientsocket.KeepaliveTimeout": KeepaliveTimeout,
    "trio_clientsocket.ConnectionLost": ConnectionLost,
    "trio_clientsocket.ProtocolError": ProtocolError,
    "trio_clientsocket.AttemptError": AttemptError,
    "trio_clientsocket.InvalidURLError": InvalidURLError,
}
"""Error classes a transcript names by these keys (``error_type``): the
nearest of them in an error's class hierarchy is recorded, and the replay
raises that class again."""
_NAMES = {cls: name for name, cls in KNOWN_ERRORS.items()}
_ATTRIBUTES = ("code", "reason", "by_server", "status_code", "socks_reply", "proxy", "timeout")
"""Attributes of the library's errors that a transcript keeps."""
_MAX_CAUSES = 8


def _known_name(error: BaseException) -> str | None:
    for cls in type(error).__mro__:
        name = _NAMES.get(cls)
        if name is not None:
            return name
    return None


def _leaves(error: BaseException | None, found: list[BaseException]) -> None:
    """The root causes behind ``error``: its ``__cause__`` chain, groups opened."""
    while error is not None and len(found) < _MAX_CAUSES:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                _leaves(inner, found)
            return
        if error.__cause__ is None:
            found.append(error)
            return
        error = error.__cause__


def error_fields(error: BaseException, scrub: Callable[[str], str]) -> dict[str, Any]:
    """An error as a transcript records it: ``error_type`` (a key of
    ``KNOWN_ERRORS``, or null), ``type`` (its own class, when another),
    ``error`` (its text, known secrets hidden), ``errno``, the library's
    attributes (``code``, ``status_code``...) and its root ``causes``."""
    name = _known_name(error)
    own = f"{type(error).__module__}.{type(error).__qualname__}".removeprefix("builtins.")
    fields: dict[str, Any] = {"error_type": name}
    if name is None or type(error) is not KNOWN_ERRORS[name]:
        fields["type"] = own
    fields["error"] = scrub(str(error))
    if isinstance(error, OSError):
        fields["errno"] = error.errno
        if error.strerror is not None:
            fields["strerror"] = scrub(str(error.strerror))
    for attribute in _ATTRIBUTES:
        value = getattr(error, attribute, None)
        if isinstance(value, bool | int | float | str):
            fields[attribute] = scrub(value) if isinstance(value, str) else value
    if error.__cause__ is not None:
        causes: list[BaseException] = []
        _leaves(error.__cause__, causes)
        fields["causes"] = [error_fields(cause, scrub) for cause in causes]
        fields["grouped"] = isinstance(error.__cause__, BaseExceptionGroup)
    return fields


def _report_fields(event: Event, scrub: Callable[[str], str]) -> dict[str, Any]:
    """A socket event as a ``report`` line records it."""
    fields: dict[str, Any] = {"event": type(event).__name__}
    match event:
        case Connected(url=url, subprotocol=subprotocol):
            fields.update(url=scrub(url), subprotocol=subprotocol)
        case ConnectionFailed(error=error, retry_in=retry_in):
            fields.update(error_fields(error, scrub))
            fields["retry_in"] = retry_in
        case MessageReceived(message=message):
            kind = "text" if isinstance(message, str) else "binary"
            size = len(message.encode()) if isinstance(message, str) else len(message)
            fields.update(kind=kind, size=size)
        case Undelivered(reason=reason, count=count):
            fields.update(reason=reason, count=count)
        case Skipped(count=count, undelivered=undelivered):
            fields.update(count=count, undelivered=undelivered)
        case Closed(url=url):
            fields["url"] = scrub(url) if url is not None else None
    return fields


# -- WebSocket frames, one direction ------------------------------------------------


def _unmask(payload: bytes, key: bytes) -> bytes:
    size = len(payload)
    if not size:
        return payload
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")


def valid_close_code(code: int) -> bool:
    """A code a close frame may carry on the wire (RFC 6455 7.4)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


@attrs.define
class Part:
    """What one direction of a connection carried: a ``message`` (``data``
    None when it was not kept), a ``ping``, ``pong`` or ``close``, or ``raw``
    bytes that are no valid frame (from the first invalid one on)."""

    kind: str
    data: bytes | None = None
    text: bool = False
    compressed: bool = False
    fragments: int = 1
    wire: int = 0
    """Payload bytes on the wire (compressed, when it was)."""
    code: int | None = None
    reason: str = ""


class _Violation(Exception):
    pass


class Frames:
    """One direction of a WebSocket connection, parsed into parts (``Part``):
    ``masked`` for the client's frames. Data frames are assembled into
    messages and inflated (``deflate()``) up to the ``room`` each ``feed``
    allows; a message larger than that is reported without its data, and on
    a compressed connection inflation stops there for good (its context is
    lost). From the first frame that breaks the protocol on, what comes is
    reported as ``raw`` bytes."""

    __slots__ = (
        "_buffer",
        "_deflate",
        "_inflater",
        "_masked",
        "_message",
        "_raw",
    )

    def __init__(self, masked: bool) -> None:
        self._masked = masked
        self._buffer = bytearray()
        self._raw = False
        self._deflate: tuple[int, bool] | None = None
        self._inflater: Any = None  # an _engine.Inflater while inflating
        self._message: _Message | None = None

    def deflate(self, bits: int, reset: bool) -> None:
        """permessage-deflate was negotiated: this direction's window and
        whether each message is compressed on its own."""
        from ._engine import Inflater  # the engines load only when compression is recorded

        self._deflate = (bits, reset)
        self._inflater = Inflater(bits, reset)

    def raw(self) -> None:
        """From here on, report every byte as ``raw``."""
        self._raw = True

    def feed(self, data: bytes, room: int) -> list[Part]:
        """Parse ``data``: what it completed. A message is kept while its size
        is at most ``room`` bytes."""
        if self._raw:
            return [Part("raw", bytes(data), wire=len(data))] if data else []
        buffer = self._buffer
        buffer += data
        parts: list[Part] = []
        start = 0
        try:
            while True:
                taken = self._frame(buffer, start, parts, room)
                if taken == 0:
                    break
                start += taken
        except _Violation:
            self._raw = True
            message, self._message = self._message, None
            rest = b"".join(message.frames) if message is not None else b""
            rest += bytes(buffer[start:])
            parts.append(Part("raw", rest, wire=len(rest)))
            buffer.clear()
            return parts
        del buffer[:start]
        return parts

    def _frame(self, buffer: bytearray, start: int, parts: list[Part], room: int) -> int:
        """Parse the frame at ``start``; the bytes it took, 0 if incomplete."""
        available = len(buffer) - start
        if available < 2:
            return 0
        first, second = buffer[start], buffer[start + 1]
        length = second & 0x7F
        head = 2
        if length == 126:
            head = 4
            if available < head:
                return 0
            length = int.from_bytes(buffer[start + 2 : start + 4], "big")
        elif length == 127:
            head = 10
            if available < head:
                return 0
            length = int.from_bytes(buffer[start + 2 : start + 10], "big")
            if length >> 63:
                raise _Violation
        masked = bool(second & 0x80)
        if masked != self._masked:
            raise _Violation
        key = b""
        if masked:
            if available < head + 4:
                return 0
            key = bytes(buffer[start + head : start + head + 4])
            head += 4
        if available < head + length:
            return 0
        payload = bytes(buffer[start + head : start + head + length])
        if masked:
            payload = _unmask(payload, key)
        fin, rsv, opcode = bool(first & 0x80), first & 0x70, first & 0x0F
        if opcode >= 8:
            self._control(opcode, fin, rsv, payload, parts)
            return head + length
        message = self._message
        frame = b""
        if rsv or not fin or message is not None:  # kept until the message is whole
            frame = bytes(buffer[start : start + head + length])
        self._data(opcode, fin, rsv, payload, frame, parts, room)
        return head + length

    def _control(self, opcode: int, fin: bool, rsv: int, payload: bytes, parts: list[Part]) -> None:
        if not fin or rsv or len(payload) > 125 or opcode > 10:
            raise _Violation
        if opcode == 9:
            parts.append(Part("ping", payload, wire=len(payload)))
        elif opcode == 10:
            parts.append(Part("pong", payload, wire=len(payload)))
        elif not payload:
            parts.append(Part("close"))
        else:
            if len(payload) < 2:
                raise _Violation
            code = int.from_bytes(payload[:2], "big")
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                raise _Violation from None
            if not valid_close_code(code):
                raise _Violation
            parts.append(Part("close", code=code, reason=reason, wire=len(payload)))

    def _data(
        self,
        opcode: int,
        fin: bool,
        rsv: int,
        payload: bytes,
        frame: bytes,
        parts: list[Part],
        room: int,
    ) -> None:
        message = self._message
        if opcode == 0:
            if message is None or rsv:
                raise _Violation
        elif opcode in (1, 2):
            compressed = rsv == 0x40
            if message is not None or (rsv and not compressed):
                raise _Violation
            if compressed and self._deflate is None:
                raise _Violation
            message = self._message = _Message(opcode == 1, compressed)
        else:
            raise _Violation
        message.fragments += 1
        message.wire += len(payload)
        if message.compressed:
            self._inflate(message, payload, fin, room)
        else:
            message.add(payload, room)
        if frame:
            message.frames.append(frame)  # if the message breaks the protocol: raw
        if fin:
            self._message = None
            parts.append(
                Part(
                    "message",
                    b"".join(message.pieces) if message.kept else None,
                    text=message.text,
                    compressed=message.compressed,
                    fragments=message.fragments,
                    wire=message.wire,
                )
            )

    def _inflate(self, message: _Message, payload: bytes, last: bool, room: int) -> None:
        inflater = self._inflater
        if inflater is None or not message.kept:
            message.kept = False
            return
        pieces = inflater.inflate(payload, last, room - message.size)
        if isinstance(pieces, list):
            for piece in pieces:
                message.size += len(piece)
                message.pieces.append(piece)
        elif pieces == 1009:  # past the room: the rest of the stream cannot be inflated
            message.kept = False
            message.pieces.clear()
            self._inflater = None
        else:
            raise _Violation  # the client fails such a message: replayed as it came


class _Message:
    __slots__ = ("compressed", "fragments", "frames", "kept", "pieces", "size", "text", "wire")

    def __init__(self, text: bool, compressed: bool) -> None:
        self.text = text
        self.compressed = compressed
        self.fragments = 0
        self.wire = 0
        self.size = 0
        self.kept = True
        self.pieces: list[bytes] = []
        self.frames: list[bytes] = []

    def add(self, payload: bytes, room: int) -> None:
        if not self.kept:
            return
        self.size += len(payload)
        if self.size > room:
            self.kept = False
            self.pieces.clear()
        else:
            self.pieces.append(payload)


def deflate_parameters(extensions: str | None, side: str) -> tuple[int, bool] | None:
    """The window bits and no-context-takeover of ``side``'s messages
    (``"server"`` or ``"client"``) under a ``Sec-WebSocket-Extensions``
    answer; None without permessage-deflate.

    Examples:
        >>> deflate_parameters("permessage-deflate; server_max_window_bits=12", "server")
        (12, False)
        >>> deflate_parameters("permessage-deflate; client_no_context_takeover", "client")
        (15, True)
    """
    for offer in (extensions or "").split(","):
        name, *params = (p.strip() for p in offer.split(";"))
        if name.lower() != "permessage-deflate":
            continue
        bits, reset = 15, False
        for param in params:
            key, _, value = param.partition("=")
            key = key.strip().lower()
            if key == f"{side}_no_context_takeover":
                reset = True
            elif key == f"{side}_max_window_bits" and value.strip().strip('"').isdigit():
                bits = int(value.strip().strip('"'))
        return max(9, min(15, bits)), reset
    return None


# -- the recorder ----------------------------------------------------------------------


class _Scrub:
    """Known secrets, hidden wherever they appear in free text."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self._ordered: list[str] = []

    def add(self, value: str | None) -> None:
        if value and len(value) >= _MIN_SECRET and value not in self.secrets:
            self.secrets.add(value)
            self._ordered = sorted(self.secrets, key=len, reverse=True)

    def add_url(self, url: str, visible_keys: Collection[str]) -> None:
        try:
            target = parse_url(url)
        except InvalidURLError:
            return
        self.add(target.password)
        if target.password is None:
            self.add(target.username)  # a bare userinfo is a token
        _, _, query = target.resource.partition("?")
        for param in query.split("&"):
            key, equals, value = param.partition("=")
            if equals and key not in visible_keys:
                self.add(value)

    def add_header(self, value: str) -> None:
        self.add(value)
        scheme, _, credentials = value.partition(" ")
        self.add(credentials)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            self.add(decoded.partition(":")[2])
        for cookie in value.split(";"):
            self.add(cookie.partition("=")[2].strip())

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, "***")
        return text


def _headers(
    pairs: Iterable[tuple[str, str]], scrub: _Scrub, visible_keys: Collection[str]
) -> list[list[str]]:
    out = []
    for name, value in pairs:
        if secret_header(name):
            shown = "***"
        elif name.lower() == "location":
            shown = scrub(redact_url(value, visible_keys))
        else:
            shown = scrub(value)
        out.append([name, shown])
    return out


class Recorder:
    """Writes a transcript of a socket's traffic: JSON lines, one event per
    line, each with its time in seconds since the first connection attempt
    (``trio.current_time()``: exact on the mock clock). The format is on the
    record-replay page. Give it to a socket with ``ClientSocket(url,
    record=recorder)`` (the socket takes a path too, and then owns the file);
    one recorder records one socket.

    Secrets are redacted as everywhere else: the URL's password and query
    values (but those named in ``visible_query_keys``), the value of every
    header that may hold a credential (``Authorization``, ``Cookie``,
    ``Set-Cookie``, anything named like a token, key or session), and those
    values wherever they appear in an error or a reason. Message bodies are
    recorded as they are: ``max_bytes=0`` leaves every body out.

    The file is bounded: bodies are written while it is under three quarters
    of ``max_bytes``, messages, pings and pongs without bodies while it is under
    ``max_bytes``; a ``truncated`` line says when each stops. Connection
    events (attempts, handshakes, closes, ends, the socket's reports but
    ``MessageReceived``) are always written: a few hundred bytes per attempt.
    Lines are written as they happen (line-buffered); a recorder that cannot
    write (a full disk) stops, logs a warning, and the socket carries on.

    Args:
        file: a path (the file is created, or truncated) or a writable text file.
        max_bytes: the size bound (default 64 MiB); 0 records no message data.
        visible_query_keys: query parameters whose values may be written
            (the socket's option of the same name).

    Examples:
        >>> async def capture(url):  # doctest: +SKIP
        ...     with Recorder("incident.jsonl") as recorder:
        ...         async with ClientSocket(url, record=recorder) as sock:
        ...             async for event in sock.events():
        ...                 recorder.record_event(event)  # the socket's view too
    """

    def __init__(
        self,
        file: str | os.PathLike[str] | TextIO,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        visible_query_keys: Iterable[str] = (),
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError("max_bytes must be an int >= 0")
        if isinstance(visible_query_keys, str):
            raise TypeError("visible_query_keys must be a collection of names, not a str")
        self._visible = frozenset(visible_query_keys)
        self.max_bytes = max_bytes
        """The size bound: see the class's description."""
        self._owned = isinstance(file, str | os.PathLike)
        if isinstance(file, str | os.PathLike):
            try:
                self._file: TextIO = open(  # noqa: SIM115 - closed by close()
                    file, "w", encoding="utf-8", buffering=1
                )
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise ValueError(f"cannot write {os.fspath(file)!r}: {reason}") from None
        elif callable(getattr(file, "write", None)):
            self._file = file
        else:
            raise TypeError(
                f"file must be a path or a writable text file, not {type(file).__name__}"
            )
        self.bytes_written = 0
        """Bytes written so far."""
        self._bodies = True
        self._data = True
        self._t0: float | None = None
        self._connections = 0
        self._scrub = _Scrub()
        self._failed = False
        self._closed = False

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def truncated(self) -> bool:
        """True once message bodies are no longer written (the size bound)."""
        return not self._bodies

    def close(self) -> None:
        """Write the ``stop`` line and close the file if the recorder opened
        it. Idempotent; the socket calls it when it owns the recorder."""
        if self._closed:
            return
        if self._t0 is not None:
            fields: dict[str, Any] = {"ev": "stop"}
            with contextlib.suppress(RuntimeError):  # closed outside trio: no time to give
                fields = {"t": self._time(), **fields}
            self._write(fields)
        self._closed = True
        if self._owned:
            self._file.close()

    def record_event(self, event: Event) -> None:
        """Add one of the socket's events (a ``report`` line), as the
        application saw it: ``Connected``, ``ConnectionFailed`` (the error's
        class, text, code and ``retry_in``), ``Closed``... A ``MessageReceived``
        is recorded by its kind and size only (its body is on its ``message``
        line).

        Examples:
            >>> async def follow(sock, recorder):  # doctest: +SKIP
            ...     async for event in sock.events():
            ...         recorder.record_event(event)
        """
        if not isinstance(event, Event):
            raise TypeError(f"record_event takes a socket event, not {type(event).__name__}")
        self._line(
            "report",
            None,
            _report_fields(event, self._scrub),
            data=isinstance(event, MessageReceived),
        )

    # -- writing ---------------------------------------------------------------------

    def _time(self) -> float:
        now = trio.current_time()
        if self._t0 is None:
            self._t0 = now
        return round(now - self._t0, 6)

    def _header(self, url: str | None) -> None:
        self._write(
            {
                "format": FORMAT,
                "version": VERSION,
                "library": __version__,
                "started": datetime.datetime.now(datetime.UTC).isoformat(),
                "url": url,
                "max_bytes": self.max_bytes,
            }
        )

    def _line(
        self,
        kind: str,
        connection: int | None,
        fields: dict[str, Any],
        *,
        data: bool = False,
        body: tuple[str, Any] | None = None,
        t: float | None = None,
    ) -> None:
        """Write one event line. ``data``: a message, ping, pong or raw line,
        under the size bound; ``body``: its (field, value), dropped past the
        bodies' bound."""
        if self._closed or self._failed:
            return
        if self._t0 is None:
            self._header(None)
        line: dict[str, Any] = {"t": self._time() if t is None else t, "ev": kind}
        if connection is not None:
            line["conn"] = connection
        line.update(fields)
        if not data:
            self._write(line)
            return
        if not self._data:
            return
        if body is not None and self._bodies:
            encoded = self._encode({**line, body[0]: body[1]})
            if self.bytes_written + encoded[1] <= self.max_bytes * 3 // 4:
                self._emit(encoded)
                return
            self._bodies = False
            self._notice("bodies")
        if body is not None:
            line["omitted"] = True
        encoded = self._encode(line)
        if self.bytes_written + encoded[1] <= self.max_bytes:
            self._emit(encoded)
            return
        self._data = False
        self._notice("messages")

    def _notice(self, what: str) -> None:
        fields = {"t": self._time(), "ev": "truncated", "what": what, "bytes": self.bytes_written}
        self._write(fields)

    @staticmethod
    def _encode(fields: dict[str, Any]) -> tuple[str, int]:
        """The line and its size in bytes (UTF-8)."""
        line = json.dumps(fields, ensure_ascii=False, separators=(",", ":")) + "\n"
        return line, len(line) if line.isascii() else len(line.encode())

    def _write(self, fields: dict[str, Any]) -> None:
        if not self._closed and not self._failed:
            self._emit(self._encode(fields))

    def _emit(self, encoded: tuple[str, int]) -> None:
        line, size = encoded
        try:
            self._file.write(line)
            if not self._owned:
                self._file.flush()
        except (OSError, ValueError) as exc:  # a full disk, a file closed under us
            self._failed = True
            log.warning("recording stopped: cannot write the transcript (%s)", exc)
            return
        self.bytes_written += size

    # -- the stream seam -------------------------------------------------------------

    def _wrap(self, open_stream: _OpenStream) -> _OpenStream:
        """``open_stream``, recorded: each call is a connection of the transcript."""

        async def recorded(url: str) -> trio.abc.Stream:
            self._scrub.add_url(url, self._visible)
            shown = self._scrub(redact_url(url, self._visible))
            first = self._t0 is None
            t = self._time()  # the first call is the transcript's time 0
            if first:
                self._header(shown)
            self._connections += 1
            number = self._connections
            self._line("connect", number, {"url": shown}, t=t)
            try:
                stream = await open_stream(url)
            except trio.Cancelled:
                self._line("connect_cancelled", number, {})
                raise
            except Exception as exc:
                self._line("connect_failed", number, error_fields(exc, self._scrub))
                raise
            self._line("open", number, {})
            return _RecordedStream(stream, _Connection(self, number))

        return recorded


class _Connection:
    """What the recorder knows of one stream: both directions, parsed."""

    def __init__(self, recorder: Recorder, number: int) -> None:
        self.recorder = recorder
        self.number = number
        self.request = bytearray()
        self.request_done = False
        self.head: HeadReader | None = HeadReader()
        self.answer = bytearray()  # the answer's bytes until its head is whole
        self.upgraded = False
        self.client = Frames(masked=True)
        self.server = Frames(masked=False)
        self.ended = False

    def _room(self) -> int:
        """Bytes a message may have and still be kept whole."""
        recorder = self.recorder
        if not recorder._bodies:
            return 0
        return max(0, recorder.max_bytes * 3 // 4 - recorder.bytes_written)

    def sent(self, data: bytes) -> None:
        if not self.request_done:
            self.request += data
            end = self.request.find(b"\r\n\r\n")
            if end < 0:
                if len(self.request) > _MAX_HEAD:
                    self.request_done = True  # not HTTP: nothing more to learn from it
                return
            self.request_done = True
            self._request(bytes(self.request[:end]))
            data = bytes(self.request[end + 4 :])
            self.request.clear()
            if not data:
                return
        for part in self.client.feed(data, self._room()):
            self._part("client", part)

    def received(self, data: bytes) -> None:
        if self.head is not None:
            self.answer += data
            try:
                got = self.head.feed(data)
            except ProtocolError:  # not HTTP: the replay sends the same bytes
                self.head = None
                self.upgraded = True
                self.server.raw()
                data = bytes(self.answer)
                self.answer.clear()
                self._part("server", Part("raw", data, wire=len(data)))
                return
            if got is None:
                return
            self.head = None
            self.answer.clear()
            response, _, rest = got
            scrub = self.recorder._scrub
            self.recorder._line(
                "response",
                self.number,
                {
                    "status": response.status,
                    "reason": scrub(response.reason),
                    "headers": _headers(response.headers, scrub, self.recorder._visible),
                },
            )
            if response.status != 101:
                return  # the body is not recorded: the client does not read it
            self.upgraded = True
            extensions = response.header("sec-websocket-extensions")
            for frames, side in ((self.server, "server"), (self.client, "client")):
                parameters = deflate_parameters(extensions, side)
                if parameters is not None:
                    frames.deflate(*parameters)
            data = rest
        if not self.upgraded or not data:
            return
        for part in self.server.feed(data, self._room()):
            self._part("server", part)

    def _request(self, head: bytes) -> None:
        recorder = self.recorder
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rpartition(" ")[0] or rest
        pairs = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            pairs.append((name.strip(), value.strip()))
            if secret_header(name.strip()):
                recorder._scrub.add_header(value.strip())
        recorder._line(
            "request",
            self.number,
            {
                "method": method,
                "target": recorder._scrub(redact_url(target, recorder._visible)),
                "headers": _headers(pairs, recorder._scrub, recorder._visible),
            },
        )

    def _part(self, who: str, part: Part) -> None:
        recorder = self.recorder
        fields: dict[str, Any] = {"from": who}
        body: tuple[str, Any] | None = None
        if part.kind == "message":
            fields["kind"] = "text" if part.text else "binary"
            fields["size"] = len(part.data) if part.data is not None else None
            if part.compressed:
                fields["compressed"] = True
                fields["wire"] = part.wire
            if part.fragments > 1:
                fields["fragments"] = part.fragments
            if part.data is not None:
                body = _body(part.data, part.text)
            else:  # larger than the room left: no more bodies from here
                if recorder._bodies:
                    recorder._bodies = False
                    recorder._notice("bodies")
                fields["omitted"] = True
        elif part.kind in ("ping", "pong", "raw"):
            fields["size"] = part.wire
            body = ("b64", base64.b64encode(part.data or b"").decode())
        else:  # close
            fields.update(code=part.code, reason=recorder._scrub(part.reason))
            recorder._line("close", self.number, fields)
            return
        recorder._line(part.kind, self.number, fields, data=True, body=body)

    def end(self, how: str) -> None:
        if not self.ended:
            self.ended = True
            self.recorder._line("end", self.number, {"how": how})


def _body(data: bytes, text: bool) -> tuple[str, Any]:
    if text:
        try:
            return "text", data.decode()
        except UnicodeDecodeError:
            pass  # recorded as it came: the replay sends the same bytes
    return "b64", base64.b64encode(data).decode()


class _RecordedStream(trio.abc.Stream):
    """A stream passed through, every byte each way told to its ``_Connection``."""

    def __init__(self, inner: trio.abc.Stream, connection: _Connection) -> None:
        self.inner = inner
        self.connection = connection

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.connection.sent(bytes(data))  # as the client meant it, even if cut off
        try:
            await self.inner.send_all(data)
        except trio.BrokenResourceError:
            self.connection.end("reset")
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self.inner.receive_some(max_bytes)
        except trio.BrokenResourceError:
            self.connection.end("reset")
            raise
        if data:
            self.connection.received(bytes(data))
        else:
            self.connection.end("eof")
        return data

    async def aclose(self) -> None:
        self.connection.end("client")
        await self.inner.aclose()


RecordOption: TypeAlias = str | os.PathLike[str] | TextIO | Recorder | None
"""The ``record`` option: a path, a writable text file, a ``Recorder``, or None."""


def recorder_for(record: object, visible_keys: Collection[str]) -> tuple[Recorder | None, bool]:
    """The recorder for the ``record`` option, and whether the socket owns it
    (it made it from a path or a file, and closes it). Raises naming the option."""
    if record is None:
        return None, False
    if isinstance(record, Recorder):
        return record, False
    if isinstance(record, str | os.PathLike) or callable(getattr(record, "write", None)):
        try:
            recorder = Recorder(record, visible_query_keys=visible_keys)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"record: {exc}") from None
        return recorder, True
    raise TypeError(
        "record must be a path, a writable text file or a trio_clientsocket.testing.Recorder, "
        f"not {type(record).__name__}"
    )
