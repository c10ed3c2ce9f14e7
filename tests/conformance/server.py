"""The fuzzing server: Autobahn's ``fuzzingserver`` mode on Trio, one case per
connection.

``open_fuzzing_server()`` listens on 127.0.0.1 (an ephemeral port) and
``FuzzingServer.run_case(case, client)`` runs one case: it gives the client a
URL of its own (``/run/<n>/<case id>``), runs ``client(url)``, plays the case
on the connection that arrives there, grades it when the TCP connection is
gone and returns a ``CaseResult``. A second connection to the same URL (a
client that reconnects) is refused with 404.

Per connection, as autobahn's ``WebSocketServerProtocol`` with the fuzzing
server's options (``failByDrop=False``, ``closeHandshakeTimeout=1``,
``openHandshakeTimeout=5``, TCP_NODELAY):

- The opening handshake is checked (GET, HTTP/1.1, Host once, Upgrade:
  websocket, Connection: upgrade, Sec-WebSocket-Version 13, a Sec-WebSocket-Key
  of 16 bytes in base64); a bad one is answered 400 and fails the case.
  permessage-deflate is what ``case.accept_deflate(parse_offers(...))`` agrees.
- What ``on_open`` writes goes out in the same TCP write as the 101 answer.
  Every later callback (a received frame, a timer) writes what it queued in one
  TCP write when it returns. ``sync=True`` and ``chopsize`` follow autobahn's
  send queue: the first queued piece joins the pending write, every later one
  (and whatever is written while pieces wait) gets a TCP write of its own.
- A close from the client is answered (its code echoed) unless ours went
  first, then the server drops TCP (``was_clean``). After our close the server
  waits up to 1 s for the client's, then drops TCP (not clean). ``kill_after``
  fails the connection as autobahn's ``failConnection``: a close 1001 when
  open, dropping TCP when already closing. A client's ping is answered with a
  pong while open. A protocol violation by the client fails the connection
  (1002, or 1007 for invalid UTF-8) and the case (FAILED, the violation as the
  result).
- A case that has not ended after ``case_limit`` seconds (a safety net: every
  case's own timers end it long before) is dropped and FAILED.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import trio

from . import frames
from .case import (
    CLOSE_GOING_AWAY,
    FAILED,
    Case,
    Event,
    ExpectedClose,
    State,
)

try:
    from .deflate import Deflate, parse_offers
except ImportError:  # helper B's module not there yet: no compression
    Deflate = Any  # type: ignore[misc,assignment]
    parse_offers = None  # type: ignore[assignment]

__all__ = ["CaseResult", "Client", "FuzzingServer", "open_fuzzing_server"]

OPEN_HANDSHAKE_TIMEOUT = 5.0
CLOSE_HANDSHAKE_TIMEOUT = 1.0
DRAIN_TIMEOUT = 2.0
"""Seconds a graceful drop may spend writing what is queued before TCP goes."""
CONNECT_TIMEOUT = 15.0
"""Seconds from starting the client until its connection must arrive."""
CLIENT_GRACE = 10.0
"""Seconds a client may take to end after its connection is gone."""
MAX_REQUEST = 16384
RECEIVE_SIZE = 65536
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")

Client = Callable[[str], Awaitable[None]]
"""A client under test: connects once to the URL, echoes, ends with its connection."""


@dataclass
class CaseResult:
    """One case's outcome, graded."""

    id: str
    behavior: str
    behavior_close: str
    result: str
    result_close: str
    remote_close_code: int | None
    duration: float
    """Seconds from the 101 answer to the end of the TCP connection."""
    report_time: bool
    connection_was_open: bool
    client_sent_close: bool
    """The client sent a close frame (a client that fails the connection
    SHOULD send one, RFC 6455 section 7.1.7; autobahn does not grade it)."""
    expected: dict[str, list[Event]] = field(default_factory=dict)
    """What the case expected (verdict -> events), as it stated it on open."""
    expected_close: ExpectedClose | None = None
    """How the case expected the connection to close (None: it never opened)."""
    received: list[Event] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the harness saw besides the grading: the client's error, a client
    that did not end, a case that hit the limit."""


@dataclass
class _Request:
    path: str
    headers: dict[str, list[str]]
    error: str | None


def parse_request(head: bytes) -> _Request:
    """The client's upgrade request (up to and including the blank line),
    checked as autobahn's server checks it: ``error`` says what is wrong."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return _Request("", {}, "the request is not ASCII")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    path = urlsplit(parts[1]).path if len(parts) == 3 else ""
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return _Request(path, headers, f"malformed header line {line!r}")
        headers.setdefault(name.lower(), []).append(value.strip())

    def error() -> str | None:
        if len(parts) != 3:
            return f"bad request line {lines[0]!r}"
        if parts[0] != "GET":
            return f"method {parts[0]!r} is not GET"
        if parts[2] != "HTTP/1.1":
            return f"HTTP version {parts[2]!r} is not HTTP/1.1"
        if "#" in parts[1]:
            return "the resource has a fragment identifier"
        for name in ("host", "sec-websocket-key", "sec-websocket-version"):
            if len(headers.get(name, ())) != 1:
                return f"{name} header appears {len(headers.get(name, ()))} times, not once"
        upgrade = ",".join(headers.get("upgrade", ())).split(",")
        if "websocket" not in (u.strip().lower() for u in upgrade):
            return "Upgrade header lacks 'websocket'"
        connection = ",".join(headers.get("connection", ())).split(",")
        if "upgrade" not in (c.strip().lower() for c in connection):
            return "Connection header lacks 'upgrade'"
        if headers["sec-websocket-version"][0] != "13":
            return f"Sec-WebSocket-Version is {headers['sec-websocket-version'][0]!r}, not 13"
        key = headers["sec-websocket-key"][0]
        if not _KEY.fullmatch(key):
            return f"Sec-WebSocket-Key {key!r} is not 16 bytes in base64"
        return None

    return _Request(path, headers, error())


def _accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


async def _read_request(stream: trio.SocketStream) -> tuple[bytes, bytes] | None:
    """The request head and the bytes after it, or None if the client did not
    send one (in time, or in size)."""
    data = bytearray()
    with trio.move_on_after(OPEN_HANDSHAKE_TIMEOUT):
        while b"\r\n\r\n" not in data and len(data) <= MAX_REQUEST:
            try:
                chunk = await stream.receive_some(RECEIVE_SIZE)
            except trio.BrokenResourceError:
                return None
            if not chunk:
                return None
            data += chunk
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    return bytes(data[: end + 4]), bytes(data[end + 4 :])


@dataclass
class _Slot:
    case: Case
    send: trio.MemorySendChannel[tuple[trio.SocketStream, _Request, bytes]]
    taken: bool = False


class FuzzingServer:
    """The listening server; ``run_case`` plays one case against a client."""

    def __init__(self, listener: trio.SocketListener, *, case_limit: float) -> None:
        self._listener = listener
        self.port: int = listener.socket.getsockname()[1]
        self.case_limit = case_limit
        self._slots: dict[str, _Slot] = {}
        self._serial = 0

    async def _serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await self._listener.accept()
                nursery.start_soon(self._route, stream)

    async def _route(self, stream: trio.SocketStream) -> None:
        """Read the upgrade request and hand the connection to its case."""
        got = await _read_request(stream)
        request = parse_request(got[0]) if got is not None else None
        slot = self._slots.get(request.path) if request is not None else None
        if got is None or request is None or slot is None or slot.taken:
            with trio.move_on_after(1):
                with suppress(trio.BrokenResourceError):
                    await stream.send_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
            await stream.aclose()
            return
        slot.taken = True
        slot.send.send_nowait((stream, request, got[1]))

    async def run_case(self, case: Case, client: Client, *, agent: str = "client") -> CaseResult:
        """Play ``case`` against one run of ``client``; the graded result."""
        self._serial += 1
        path = f"/run/{self._serial}/{case.id}"
        url = f"ws://127.0.0.1:{self.port}{path}?agent={agent}"
        send, receive = trio.open_memory_channel[tuple[trio.SocketStream, _Request, bytes]](1)
        self._slots[path] = _Slot(case, send)
        notes: list[str] = []
        client_done = trio.Event()

        async def run_client() -> None:
            try:
                await client(url)
            except Exception as exc:  # the client's failure is a finding, not a crash
                notes.append(f"the client raised {type(exc).__name__}: {exc}")
            finally:
                client_done.set()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_client)
                arrived = await _first_connection(receive, client_done)
                if arrived is None:
                    result = _never_opened(case, "the client never completed a connection")
                else:
                    stream, request, rest = arrived
                    result = await _Connection(stream, case, self.case_limit).run(request, rest)
                with trio.move_on_after(CLIENT_GRACE):
                    await client_done.wait()
                if not client_done.is_set():
                    notes.append(
                        f"the client had not ended {CLIENT_GRACE:g} s after its connection"
                    )
                nursery.cancel_scope.cancel()
        finally:
            del self._slots[path]
            # A connection that arrived but was not played (the client ended first).
            while True:
                try:
                    stream, _, _ = receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                await stream.aclose()
        result.notes[:0] = notes
        return result


async def _first_connection(
    receive: trio.MemoryReceiveChannel[tuple[trio.SocketStream, _Request, bytes]],
    client_done: trio.Event,
) -> tuple[trio.SocketStream, _Request, bytes] | None:
    """The case's connection, or None if the client ended (or timed out) first."""
    with trio.move_on_after(CONNECT_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_when, client_done, nursery.cancel_scope)
            arrived = await receive.receive()
            nursery.cancel_scope.cancel()
            return arrived
    try:
        return receive.receive_nowait()  # it arrived as the client ended
    except trio.WouldBlock:
        return None


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _never_opened(case: Case, why: str) -> CaseResult:
    case.behavior = FAILED
    case.result = why
    case.behavior_close = FAILED
    case.result_close = "The WebSocket opening handshake was never completed!"
    return _result(case)


def _result(case: Case, conn: _Connection | None = None, duration: float = 0.0) -> CaseResult:
    """The graded ``case``, and what its connection (if it opened) saw."""
    return CaseResult(
        id=case.id,
        behavior=case.behavior,
        behavior_close=case.behavior_close,
        result=case.result,
        result_close=case.result_close,
        remote_close_code=conn.remote_close_code if conn is not None else None,
        duration=duration,
        report_time=case.report_time,
        connection_was_open=conn is not None,
        client_sent_close=conn is not None and conn.client_sent_close,
        expected=dict(case.expected),
        expected_close=case.expected_close if conn is not None else None,
        received=list(case.received),
    )


class _Connection:
    """One connection: the ``Peer`` the case drives, and the protocol around it."""

    def __init__(self, stream: trio.SocketStream, case: Case, limit: float) -> None:
        self._stream = stream
        self._case = case
        self._limit = limit
        self.deflate: Deflate | None = None
        self.state = State.CONNECTING
        self.connection_was_open = False
        self.closed_by_me = False
        self.failed_by_me = False
        self.dropped_by_me = False
        self.was_clean = False
        self.remote_close_code: int | None = None
        self.tx_frames: dict[int, int] = {}
        self.client_sent_close = False
        self._violations: list[str] = []
        self._failures: list[str] = []
        self._buffer: list[bytes] = []  # the pending TCP write
        self._queue: deque[bytes] = deque()  # pieces written one TCP write each
        self._triggered = False
        self._wake = trio.Event()
        self._ended = trio.Event()
        self._draining = False
        self._nursery: trio.Nursery | None = None
        self._reader = frames.FrameReader()

    # -- the run ------------------------------------------------------------------

    async def run(self, request: _Request, rest: bytes) -> CaseResult:
        case = self._case
        if request.error is not None:
            await self._refuse(request.error)
            return _never_opened(
                case, f"the client's opening handshake is invalid: {request.error}"
            )
        response = [
            "HTTP/1.1 101 Switching Protocols",
            "Server: trio-clientsocket-conformance",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {_accept(request.headers['sec-websocket-key'][0])}",
        ]
        extensions = request.headers.get("sec-websocket-extensions", [])
        if extensions and parse_offers is not None:
            self.deflate = case.accept_deflate(parse_offers(extensions))
        if self.deflate is not None:
            response.append(f"Sec-WebSocket-Extensions: {self.deflate.response_header()}")
            self._reader = frames.FrameReader(self.deflate.decompress)
        self._buffer.append(("\r\n".join(response) + "\r\n\r\n").encode())
        start = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.state = State.OPEN
                self.connection_was_open = True
                nursery.start_soon(self._writer)
                case.on_open(self)
                self._wake.set()
                nursery.start_soon(self._read, rest)
                with trio.move_on_after(self._limit):
                    await self._ended.wait()
                if not self._ended.is_set():
                    self._failures.append(f"the case did not end within {self._limit:g} s")
                    self._drop(abort=True)
                nursery.cancel_scope.cancel()
        finally:
            self.state = State.CLOSED
            await self._stream.aclose()
        duration = trio.current_time() - start
        case.on_connection_lost(self)
        if self._violations:
            case.behavior = FAILED
            case.result = "The client violated RFC 6455: " + "; ".join(
                dict.fromkeys(self._violations)
            )
        if self._failures:
            case.behavior = FAILED
            case.result = "; ".join(self._failures)
        return _result(case, self, duration)

    async def _refuse(self, why: str) -> None:
        body = why.encode("ascii", "replace")
        head = (
            f"HTTP/1.1 400 Bad Request\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with trio.move_on_after(1):
            with suppress(trio.BrokenResourceError):
                await self._stream.send_all(head.encode() + body)
        await self._stream.aclose()

    async def _writer(self) -> None:
        while True:
            if self._buffer:
                data = b"".join(self._buffer)
                self._buffer.clear()
            elif self._queue:
                data = self._queue.popleft()
            else:
                self._triggered = False
                if self._draining:
                    self._ended.set()
                    return
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lost()
                return

    async def _read(self, rest: bytes) -> None:
        if rest:
            self._receive(rest)
        while True:
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                if not self._draining:  # a graceful drop ends when its writes are out
                    self._lost()
                return
            self._receive(data)

    def _lost(self) -> None:
        """The TCP connection is gone (or unusable)."""
        self.state = State.CLOSED
        self._ended.set()

    def _receive(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return  # autobahn ignores what arrives after it dropped the connection
        for event in self._reader.feed(data):
            if self.state is State.CLOSED:
                return
            if isinstance(event, frames.Violation):
                self._violations.append(event.reason)
                self._fail_connection(event.code, event.reason)
            elif isinstance(event, frames.Message):
                if not self.failed_by_me:
                    self._case.on_message(self, event.payload, event.binary)
            elif isinstance(event, frames.Ping):
                if self.state is State.OPEN:
                    self.send_pong(event.payload)
                self._case.on_ping(self, event.payload)
            elif isinstance(event, frames.Pong):
                self._case.on_pong(self, event.payload)
            else:
                self._on_close(event)
        if self._reader.broken:
            self._drop(abort=True)

    def _on_close(self, close: frames.Close) -> None:
        """A close frame from the client (autobahn's ``onCloseFrame``)."""
        self.client_sent_close = True
        self.remote_close_code = close.code
        if close.error is not None:
            self._violations.append(close.error.reason)
            self._fail_connection(close.error.code, close.error.reason)
        if self.state is State.CLOSING:  # the answer to our close
            self.was_clean = True
            self._drop(abort=True)
        elif self.state is State.OPEN:  # the client starts: answer, echoing its code
            self.was_clean = True
            self._send_close_frame(frames.close_payload(close.code), reply=True)
            self._drop(abort=False)
        else:
            self.was_clean = False

    # -- autobahn's closing machinery ----------------------------------------------

    def _send_close_frame(self, payload: bytes, *, reply: bool) -> None:
        if self.state is not State.OPEN:
            return
        self.send_frame(frames.OP_CLOSE, payload)
        self.state = State.CLOSING
        self.closed_by_me = not reply
        if self.closed_by_me:
            self._later(CLOSE_HANDSHAKE_TIMEOUT, self._close_handshake_timeout)

    def _close_handshake_timeout(self) -> None:
        self.was_clean = False
        self._drop(abort=True)

    def _fail_connection(self, code: int = CLOSE_GOING_AWAY, reason: str = "Going Away") -> None:
        if self.state is State.CLOSED:
            return
        self.failed_by_me = True
        if self.state is not State.CLOSING:
            payload = frames.close_payload(code, reason.encode()[:123])
            self._send_close_frame(payload, reply=False)
        else:
            self._drop(abort=False)

    def _drop(self, *, abort: bool) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.dropped_by_me = True
        if abort:
            self._ended.set()
        else:
            self._draining = True
            self._wake.set()
            self._later(DRAIN_TIMEOUT, self._ended.set, when_closed=True)

    def _later(self, delay: float, fn: Callable[[], None], *, when_closed: bool = False) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._timer, delay, fn, when_closed)

    async def _timer(self, delay: float, fn: Callable[[], None], when_closed: bool) -> None:
        await trio.sleep(delay)
        if when_closed or self.state is not State.CLOSED:
            fn()

    def _send_data(self, data: bytes, *, sync: bool = False, chopsize: int | None = None) -> None:
        """autobahn's ``sendData``: the pending write, or the queue of pieces."""
        if self.state is State.CLOSED and not self._draining:
            return
        if chopsize:
            self._queue.extend(frames.chops(data, chopsize))
        elif sync or self._queue:
            self._queue.append(data)
        else:
            self._buffer.append(data)
            self._wake.set()
            return
        if not self._triggered:  # the first piece joins the pending write
            self._triggered = True
            self._buffer.append(self._queue.popleft())
        self._wake.set()

    # -- the Peer API ----------------------------------------------------------------

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bytes | None = None,
        payload_len: int | None = None,
        chopsize: int | None = None,
        sync: bool = False,
    ) -> None:
        data = frames.encode_frame(
            opcode, payload, fin=fin, rsv=rsv, mask=mask, payload_len=payload_len
        )
        self.tx_frames[opcode] = self.tx_frames.get(opcode, 0) + 1
        self._send_data(data, sync=sync, chopsize=chopsize)

    def send_message(
        self,
        payload: bytes,
        binary: bool,
        *,
        fragment_size: int | None = None,
        sync: bool = False,
    ) -> None:
        if self.state is not State.OPEN:
            return
        opcode = frames.OP_BINARY if binary else frames.OP_TEXT
        rsv = 0
        if self.deflate is not None:
            payload = self.deflate.compress(payload)
            rsv = 4
        if not fragment_size or len(payload) <= fragment_size:
            self.send_frame(opcode, payload, rsv=rsv, sync=sync)
            return
        # autobahn's loop: a payload that is a multiple of the size ends with an empty frame
        i = 0
        while True:
            j = i + fragment_size
            done = j > len(payload)
            self.send_frame(opcode, payload[i:j], fin=done, rsv=rsv, sync=sync)
            if done:
                return
            opcode, rsv = frames.OP_CONTINUATION, 0
            i = j

    def send_ping(self, payload: bytes = b"") -> None:
        if self.state is State.OPEN:
            self.send_frame(frames.OP_PING, payload)

    def send_pong(self, payload: bytes = b"") -> None:
        if self.state is State.OPEN:
            self.send_frame(frames.OP_PONG, payload)

    def send_close(self, code: int | None = None, reason: bytes = b"") -> None:
        if code is not None and code != 1000 and not 3000 <= code <= 4999:
            raise ValueError(f"send_close: code {code} is not 1000 or 3000-4999")
        if len(reason) > 123:
            reason = reason[:120] + b"..."
        self._send_close_frame(frames.close_payload(code, reason), reply=False)

    def send_close_frame_raw(self, payload: bytes) -> None:
        self._send_close_frame(payload, reply=False)

    def send_raw(self, data: bytes) -> None:
        self._send_data(data)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self._later(delay, fn)

    def kill_after(self, delay: float) -> None:
        self._later(delay, self._fail_connection)

    def close_after(self, delay: float) -> None:
        self._later(delay, self.send_close)

    def fail(self, result: str) -> None:
        self._failures.append(result)


@asynccontextmanager
async def open_fuzzing_server(*, case_limit: float = 150.0) -> AsyncIterator[FuzzingServer]:
    """A ``FuzzingServer`` on 127.0.0.1 (ephemeral port) for the block's length."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0]:
        server = FuzzingServer(listeners[0], case_limit=case_limit)
        async with trio.open_nursery() as nursery:
            await nursery.start(server._serve)
            try:
                yield server
            finally:
                nursery.cancel_scope.cancel()
