"""Replaying a transcript (``_record``) as an in-memory server, on the mock clock.

Connection by connection: the n-th call of ``open_stream`` gets what the n-th
recorded one got (a failure raised again, a handshake answered with the same
status and headers, then the server's frames and the end of the stream),
each at the same time after the call as recorded. The server's answers to the
client (a pong to its k-th ping, its reply to the client's close frame and
what followed) come the same time after what they answer. The client's
messages are compared with the recording's; a difference is a
``ReplayDivergence``.
"""

from __future__ import annotations

import base64
import errno
import json
import math
import os
import zlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, TextIO

import attrs
import trio

from ._errors import (
    ConnectionLost,
    ConnectTimeout,
    HandshakeRejected,
    KeepaliveTimeout,
    ProtocolError,
    ProxyRejected,
)
from ._events import Message
from ._handshake import accept_token, request_key
from ._loop import UrlSource
from ._record import FORMAT, KNOWN_ERRORS, VERSION, Frames, Part, deflate_parameters
from ._socket import ClientSocket

__all__ = ["ReplayDivergence", "ReplayServer", "open_replay_server"]

_ROOM = 2**62
"""The client's messages are parsed whole, whatever their size."""
_MAX_REQUEST = 65536
_GRACE = 1e-6
"""How long past its time a server action waits for the client's messages
that came before it in the recording (the recording's precision)."""


def _shown(message: Message | None, size: int | None = None, text: bool = True) -> str:
    if message is None:
        kind = "text" if text else "binary"
        return f"<a {kind} message of {size} bytes, its body not recorded>"
    if isinstance(message, str):
        return repr(message) if len(message) <= 80 else repr(message[:77]) + "..."
    return f"<{len(message)} bytes: {message[:16].hex()}{'...' if len(message) > 16 else ''}>"


class ReplayDivergence(AssertionError):
    """The application's messages did not follow the recording: it sent
    another message than the recorded one, one more than recorded on that
    connection, or none where the recording has one. Raised when the
    ``open_replay_server`` block exits (the first one; all are in
    ``ReplayServer.divergences``), unless ``strict=False``.

    Attributes:
        connection: the connection (1-based, in the order ``open_stream`` was called).
        time: seconds since the replay's first connection: when the message
            came, or by when the missing one was due.
        expected: the recorded message (None: the application sent more).
        came: what the application sent (None: nothing came).

    Examples:
        >>> error = ReplayDivergence(2, 3.5, expected="a", came="b")
        >>> str(error)
        "connection 2, at 3.500 s: the application sent 'b' where the recording has 'a'"
    """

    def __init__(
        self,
        connection: int,
        time: float,
        *,
        expected: Message | None,
        came: Message | None,
        shown_expected: str | None = None,
    ) -> None:
        wanted = shown_expected or _shown(expected)
        if came is None:
            text = (
                f"connection {connection}: the recording has the application send {wanted} "
                f"by {time:.3f} s; it did not"
            )
        elif expected is None and shown_expected is None:
            text = (
                f"connection {connection}, at {time:.3f} s: the application sent "
                f"{_shown(came)}, more messages than the recording has on that connection"
            )
        else:
            text = (
                f"connection {connection}, at {time:.3f} s: the application sent "
                f"{_shown(came)} where the recording has {wanted}"
            )
        super().__init__(text)
        self.connection = connection
        self.time = time
        self.expected = expected
        self.came = came


# -- the transcript, read --------------------------------------------------------------


@attrs.define
class _Action:
    """Something the server did, ``at`` seconds after its anchor."""

    at: float
    kind: str  # message, ping, pong, close, raw, eof, reset
    data: bytes | None = None
    text: bool = False
    compressed: bool = False
    fragments: int = 1
    code: int | None = None
    reason: str = ""
    after: int = 0
    """The client's messages that came before it in the recording."""


@attrs.define
class _Expected:
    """A message the client sent, ``at`` seconds after the connection began."""

    at: float
    text: bool
    data: bytes | None
    size: int | None

    def matches(self, part: Part) -> bool:
        if part.text != self.text:
            return False
        if self.data is None:
            return self.size is None or (part.data is not None and len(part.data) == self.size)
        return part.data == self.data

    def message(self) -> Message | None:
        if self.data is None:
            return None
        return self.data.decode("utf-8", "replace") if self.text else self.data


@attrs.define
class _Script:
    """One recorded connection, as the replay plays it."""

    number: int
    start: float
    complete: bool
    outcome: str = "pending"  # failed, cancelled, open, or pending (the recording ended first)
    outcome_at: float = 0.0
    error: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    response_at: float = 0.0
    timed: list[_Action] = attrs.Factory(list)
    """The server's actions, at times after the connection began."""
    after_close: list[_Action] = attrs.Factory(list)
    """The server's actions after the client's close frame, at times after it."""
    client_closed: float | None = None
    """When the client's close frame went, after the connection began."""
    close_answered: bool = False
    """The client's close frame answered the server's (which came first)."""
    server_closed: bool = False
    pongs: list[tuple[float, bytes] | None] = attrs.Factory(list)
    """For the client's k-th ping: the server's pong, that long after it (None: no answer)."""
    pings: list[tuple[float, bytes]] = attrs.Factory(list)
    expected: list[_Expected] = attrs.Factory(list)
    last: float = 0.0
    """When the connection's last recorded event happened, after it began."""
    ended: bool = False


def _payload(event: dict[str, Any]) -> bytes | None:
    if "text" in event:
        return str(event["text"]).encode()
    if "b64" in event:
        return base64.b64decode(str(event["b64"]))
    return None


def _lines(source: str | os.PathLike[str] | TextIO | Iterable[str]) -> tuple[str, list[str]]:
    if isinstance(source, str | os.PathLike):
        name = os.fspath(source)
        try:
            with open(source, encoding="utf-8") as file:
                return name, file.read().splitlines()
        except OSError as exc:
            raise ValueError(
                f"cannot read the transcript {name!r}: {exc.strerror or exc}"
            ) from None
    return "the transcript", [line.rstrip("\n") for line in source]


def _read(source: str | os.PathLike[str] | TextIO | Iterable[str]) -> tuple[
    dict[str, Any], dict[int, _Script], list[dict[str, Any]]
]:
    """The header, the connections and the socket's reports of a transcript."""
    name, lines = _lines(source)
    events: list[dict[str, Any]] = []
    for index, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise ValueError(f"{name}, line {index}: not JSON") from None
        if not isinstance(value, dict):
            raise ValueError(f"{name}, line {index}: not a JSON object")
        events.append(value)
    if not events or events[0].get("format") != FORMAT:
        raise ValueError(f"{name} is not a trio-clientsocket transcript (no {FORMAT} header)")
    header = events[0]
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(
            f"{name} is a transcript of version {version!r}; this library reads version "
            f"{VERSION} and older"
        )
    scripts: dict[int, _Script] = {}
    reports: list[dict[str, Any]] = []
    truncated = False
    for event in events[1:]:
        kind = event.get("ev")
        number = event.get("conn")
        if kind == "report":
            reports.append(event)
        elif kind == "truncated" and event.get("what") == "messages":
            truncated = True
            for earlier in scripts.values():
                earlier.complete = earlier.complete and earlier.ended
        if not isinstance(number, int):
            continue
        t = float(event.get("t", 0.0))
        if kind == "connect":
            scripts[number] = _Script(number, t, complete=not truncated)
            continue
        found = scripts.get(number)
        if found is not None:
            _add(found, kind, t - found.start, event)
    return header, scripts, reports


def _add(script: _Script, kind: Any, offset: float, event: dict[str, Any]) -> None:
    """Add one recorded event of its connection to ``script``."""
    script.last = max(script.last, offset)
    if kind in ("connect_failed", "connect_cancelled", "open"):
        script.outcome = {"connect_failed": "failed", "connect_cancelled": "cancelled"}.get(
            kind, "open"
        )
        script.outcome_at = offset
        script.error = event if kind == "connect_failed" else None
        return
    if kind == "response":
        script.response, script.response_at = event, offset
        return
    client = event.get("from") == "client"
    if client:
        if kind == "message":
            size = event.get("size")
            script.expected.append(
                _Expected(
                    offset,
                    event.get("kind") == "text",
                    _payload(event),
                    size if isinstance(size, int) else None,
                )
            )
        elif kind == "ping":
            script.pings.append((offset, _payload(event) or b""))
            script.pongs.append(None)
        elif kind == "close" and script.client_closed is None:
            script.client_closed = offset
            script.close_answered = script.server_closed
        return
    if kind == "end":
        script.ended = True
        if event.get("how") in ("eof", "reset"):
            _server_action(script, _Action(offset, str(event["how"])))
        return
    if kind not in ("message", "ping", "pong", "close", "raw"):
        return
    action = _Action(
        offset,
        kind,
        data=_payload(event),
        text=event.get("kind") == "text",
        compressed=bool(event.get("compressed")),
        fragments=max(1, int(event.get("fragments", 1))),
        code=event.get("code"),
        reason=str(event.get("reason", "")),
    )
    if kind == "message" and action.data is None:
        return  # its body was not recorded: not replayed
    if kind == "close":
        script.server_closed = True
    if kind == "pong":
        payload = action.data or b""
        for index, (at, ping) in enumerate(script.pings):
            if script.pongs[index] is None and ping == payload:
                script.pongs[index] = (offset - at, payload)  # the answer to that ping
                return
    _server_action(script, action)


def _server_action(script: _Script, action: _Action) -> None:
    if script.client_closed is None:
        action.after = len(script.expected)
        script.timed.append(action)
    else:
        action.at -= script.client_closed
        script.after_close.append(action)


def rebuild_error(fields: dict[str, Any]) -> BaseException:
    """The error a ``connect_failed`` line records, raised again: the same
    class (the nearest known one), attributes and text."""
    text = str(fields.get("error", ""))
    cls = KNOWN_ERRORS.get(str(fields.get("error_type")))
    code, number = fields.get("code"), fields.get("errno")
    error: BaseException
    if cls is None:
        error = RuntimeError(f"{fields.get('type', 'an unknown error')}: {text}")
    elif issubclass(cls, OSError):
        strerror = fields.get("strerror")
        if isinstance(number, int) and isinstance(strerror, str):
            error = cls(number, strerror)
        else:
            error = cls(text)
    else:
        if cls is ConnectionLost:
            error = ConnectionLost(
                code if isinstance(code, int) else 1006,
                fields.get("reason"),
                by_server=bool(fields.get("by_server")),
            )
        elif cls is ProtocolError:
            error = ProtocolError(text, code=code if isinstance(code, int) else None)
        elif cls is HandshakeRejected:
            status = fields.get("status_code")
            error = HandshakeRejected(status if isinstance(status, int) else 0)
        elif cls is ProxyRejected:
            status, reply = fields.get("status_code"), fields.get("socks_reply")
            error = ProxyRejected(
                str(fields.get("proxy", "")),
                status if isinstance(status, int) else None,
                socks_reply=reply if isinstance(reply, int) else None,
            )
        elif cls in (ConnectTimeout, KeepaliveTimeout):
            timeout = fields.get("timeout")
            error = cls(float(timeout) if isinstance(timeout, int | float) else 0.0)
        else:
            error = cls(text)
        error.args = (text,)  # the same words
    causes = fields.get("causes")
    if isinstance(causes, list) and causes:
        rebuilt = [rebuild_error(c) for c in causes if isinstance(c, dict)]
        leaves = [c for c in rebuilt if isinstance(c, Exception)]
        if fields.get("grouped") and leaves:
            error.__cause__ = ExceptionGroup(text, leaves)
        elif rebuilt:
            error.__cause__ = rebuilt[0]
    return error


# -- the wire, server side ---------------------------------------------------------------


def _frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, size))
    elif size < 65536:
        head = bytes((first, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + size.to_bytes(8, "big")
    return head + payload


class _Deflater:
    """The server's side of permessage-deflate: one message at a time."""

    def __init__(self, bits: int, reset: bool) -> None:
        self._bits = bits
        self._reset = reset
        self._zlib: Any = None

    def compress(self, data: bytes) -> bytes:
        compressor = self._zlib
        if compressor is None:
            compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._bits)
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self._zlib = None if self._reset else compressor
        return out.removesuffix(b"\x00\x00\xff\xff") or b"\x00"


class _ReplayStream(trio.abc.Stream):
    """The client's end of a replayed connection: what the server writes
    waits here for ``receive_some``; what the client sends goes to the server."""

    def __init__(self, to_server: trio.MemorySendChannel[bytes]) -> None:
        self._to_server = to_server
        self._buffer = bytearray()
        self._eof = False
        self._reset = False
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()

    # the server's side (no waiting)

    def write(self, data: bytes) -> None:
        if not self._eof:
            self._buffer += data
            self._lot.unpark_all()

    def end(self, reset: bool) -> None:
        self._eof = True
        self._reset = self._reset or reset
        self._lot.unpark_all()

    # the client's side

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the stream is closed")
            if self._buffer:
                size = len(self._buffer) if max_bytes is None else max_bytes
                data = bytes(self._buffer[:size])
                del self._buffer[:size]
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
            if self._reset:
                raise trio.BrokenResourceError("connection reset (replayed)")
            if self._eof:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return b""
            await self._lot.park()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        if self._reset:
            raise trio.BrokenResourceError("connection reset (replayed)")
        self._to_server.send_nowait(bytes(data))
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._to_server.close()
            self._lot.unpark_all()
        await trio.lowlevel.checkpoint()


class _Played:
    """One recorded connection, played to the client."""

    def __init__(
        self, replay: ReplayServer, script: _Script, stream: _ReplayStream, start: float
    ) -> None:
        self.replay = replay
        self.script = script
        self.stream = stream
        self.start = start
        self.request_seen = trio.Event()
        self.key: str | None = None
        self.deflater: _Deflater | None = None
        self.offered_deflate = False
        self.client = Frames(masked=True)
        self.sent = 0  # the client's messages so far
        self.heard = trio.lowlevel.ParkingLot()  # woken at each
        self.pings = 0
        self.client_closed = False
        self.server_closed = False
        self.ended_at: float | None = None

    async def serve(self, inbox: trio.MemoryReceiveChannel[bytes]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._play)
                await self._read(inbox, nursery)
                nursery.cancel_scope.cancel()
        finally:
            self.ended_at = trio.current_time()
            self.replay._finish(self.script.number)

    async def _play(self) -> None:
        script = self.script
        if script.response is not None:
            await trio.sleep_until(self.start + script.response_at)
            await self.request_seen.wait()
            self.stream.write(self._head(script.response))
        await self._run(script.timed, self.start)
        await trio.sleep_until(self.start + script.last)
        self.replay._finish(script.number)

    async def _run(self, actions: list[_Action], anchor: float) -> None:
        for action in actions:
            due = anchor + action.at
            await trio.sleep_until(due)
            if action.after > self.sent:  # what it answered has not come yet: a moment's grace
                with trio.move_on_at(due + _GRACE):
                    while action.after > self.sent:
                        await self.heard.park()
            self._do(action)

    def _head(self, response: dict[str, Any]) -> bytes:
        lines = [f"HTTP/1.1 {response.get('status')} {response.get('reason', '')}"]
        for name, value in response.get("headers") or ():
            lower = str(name).lower()
            if lower == "sec-websocket-accept" and self.key is not None:
                value = accept_token(self.key)
            elif lower == "sec-websocket-extensions":
                if not self.offered_deflate:
                    continue  # the client did not offer it: the replay does without
                self._deflate(str(value))
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    def _deflate(self, extensions: str) -> None:
        server = deflate_parameters(extensions, "server")
        if server is not None:
            self.deflater = _Deflater(*server)
        client = deflate_parameters(extensions, "client")
        if client is not None:
            self.client.deflate(*client)

    def _do(self, action: _Action) -> None:
        stream = self.stream
        kind = action.kind
        if kind == "eof" or kind == "reset":
            stream.end(reset=kind == "reset")
        elif kind == "raw":
            stream.write(action.data or b"")
        elif kind == "close":
            if self.server_closed:
                return  # one close frame: the replay's client closed first this time
            self.server_closed = True
            payload = b""
            if action.code is not None:
                payload = action.code.to_bytes(2, "big") + action.reason.encode()
            stream.write(_frame(8, payload))
        elif kind in ("ping", "pong"):
            stream.write(_frame(9 if kind == "ping" else 10, action.data or b""))
        elif action.data is not None:
            self._message(action)

    def _message(self, action: _Action) -> None:
        payload = action.data or b""
        compressed = action.compressed and self.deflater is not None
        if compressed:
            assert self.deflater is not None
            payload = self.deflater.compress(payload)
        step = max(1, math.ceil(len(payload) / action.fragments))
        frames = []
        for index in range(action.fragments):
            opcode = (1 if action.text else 2) if index == 0 else 0
            frames.append(
                _frame(
                    opcode,
                    payload[index * step : (index + 1) * step],
                    fin=index == action.fragments - 1,
                    rsv1=compressed and index == 0,
                )
            )
        self.stream.write(b"".join(frames))

    async def _read(self, inbox: trio.MemoryReceiveChannel[bytes], nursery: trio.Nursery) -> None:
        request = bytearray()
        async for data in inbox:
            if not self.request_seen.is_set():
                request += data
                end = request.find(b"\r\n\r\n")
                if end < 0 and len(request) <= _MAX_REQUEST:
                    continue
                head = bytes(request[:end]) if end >= 0 else b""
                data = bytes(request[end + 4 :]) if end >= 0 else b""
                self._request(head)
            for part in self.client.feed(data, _ROOM):
                self._client_part(part, nursery)

    def _request(self, head: bytes) -> None:
        try:
            self.key = request_key(head)
        except ValueError:
            self.key = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-extensions":
                self.offered_deflate = b"permessage-deflate" in value.lower()
        self.request_seen.set()

    def _client_part(self, part: Part, nursery: trio.Nursery) -> None:
        script = self.script
        now = trio.current_time()
        if part.kind == "message":
            index = self.sent
            self.sent += 1
            self.heard.unpark_all()
            came: Message | None = part.data
            if part.text and part.data is not None:
                came = part.data.decode("utf-8", "replace")
            expected = script.expected[index] if index < len(script.expected) else None
            if expected is None:
                if script.complete:  # else the recording has no more of them
                    self.replay._diverged(script.number, now, expected=None, came=came)
            elif not expected.matches(part):
                self.replay._diverged(
                    script.number,
                    now,
                    expected=expected.message(),
                    came=came,
                    shown=_shown(expected.message(), expected.size, expected.text),
                )
        elif part.kind == "ping":
            index = self.pings
            self.pings += 1
            payload = part.data or b""
            if index >= len(script.pongs):  # more pings than recorded: a live server answers
                self.stream.write(_frame(10, payload))
            elif (answer := script.pongs[index]) is not None:
                nursery.start_soon(self._run, [_Action(answer[0], "pong", payload)], now)
        elif part.kind == "close" and not self.client_closed:
            self.client_closed = True
            if script.client_closed is not None and script.close_answered == self.server_closed:
                # as recorded: its answer (or what followed the server's close) follows
                nursery.start_soon(self._run, script.after_close, now)
            elif not self.server_closed:  # not as recorded: answer as a server does
                self.server_closed = True
                payload = b"" if part.code is None else part.code.to_bytes(2, "big")
                self.stream.write(_frame(8, payload))
                self.stream.end(reset=False)

    def missing(self, now: float) -> _Expected | None:
        """The first recorded message of the client that has not come and is due."""
        script = self.script
        if self.sent >= len(script.expected):
            return None
        expected = script.expected[self.sent]
        if self.ended_at is not None or self.start + expected.at <= now:
            return expected
        return None


class ReplayServer:
    """A transcript played back as an in-memory server: create it with
    ``open_replay_server``, wire sockets to it with ``client()`` or
    ``open_stream``. Connection by connection, in order: the n-th
    ``open_stream`` call gets what the n-th recorded connection got, each
    thing the same time after the call as recorded (on the mock clock,
    exactly). The client's own messages are compared with the recording's.

    Attributes:
        header: the transcript's header line (format, version, library,
            started, url, max_bytes).
        url: the URL recorded first (secrets shown as ``***``).
        recorded: how many connections the transcript has.
        connections: how many ``open_stream`` calls came so far.
        reports: the socket's events as recorded (``report`` lines, each a
            dict with ``t``, ``event`` and its fields), for comparison.
        divergences: every ``ReplayDivergence`` so far.
        started_at: ``trio.current_time()`` of the first ``open_stream``
            call: a recorded time ``t`` corresponds to ``started_at + t``.

    Examples:
        >>> async def test_incident(autojump_clock):  # doctest: +SKIP
        ...     async with open_replay_server("incident.jsonl") as replay:
        ...         async with replay.client() as sock:
        ...             await replay.wait_finished()
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        header: dict[str, Any],
        scripts: dict[int, _Script],
        reports: list[dict[str, Any]],
    ) -> None:
        self._nursery = nursery
        self._scripts = scripts
        self._played: dict[int, _Played] = {}
        self._finished: set[int] = set()
        self._changed = trio.lowlevel.ParkingLot()
        self.header = header
        url = header.get("url")
        self.url: str | None = url if isinstance(url, str) else None
        self.recorded = max(scripts, default=0)
        self.connections = 0
        self.reports = reports
        self.divergences: list[ReplayDivergence] = []
        self.started_at: float | None = None

    @property
    def finished(self) -> bool:
        """True once every recorded connection was opened and played to its
        last recorded moment (or ended by the client)."""
        return self.connections >= self.recorded and len(self._finished) >= self.recorded

    async def wait_finished(self) -> None:
        """Wait until ``finished``: everything recorded has been played.

        Examples:
            >>> async def run(replay, sock):  # doctest: +SKIP
            ...     await replay.wait_finished()
        """
        while not self.finished:
            await self._changed.park()
        await trio.lowlevel.checkpoint()

    def client(self, url: UrlSource | None = None, **options: Any) -> ClientSocket:
        """A ``ClientSocket`` wired to the replay (not yet entered): ``url``
        defaults to the recorded one; the options are ClientSocket's (give it
        those of the application under test, for the same timings).

        Examples:
            >>> async def test_it(replay):  # doctest: +SKIP
            ...     async with replay.client(reconnect=Backoff(jitter=0)) as sock:
            ...         await sock.wait_connected()
        """
        return ClientSocket(
            url if url is not None else self.url or "ws://replay.test/",
            open_stream=self.open_stream,
            **options,
        )

    async def open_stream(self, url: str) -> trio.abc.Stream:
        """The ``open_stream`` option of ``ClientSocket``: the next recorded
        connection, played. Past the recorded ones, connections are refused.

        Examples:
            >>> ClientSocket(url, open_stream=replay.open_stream)  # doctest: +SKIP
        """
        self.connections += 1
        number = self.connections
        start = trio.current_time()
        if self.started_at is None:
            self.started_at = start
        script = self._scripts.get(number)
        if script is None:
            await trio.lowlevel.checkpoint()
            raise ConnectionRefusedError(
                errno.ECONNREFUSED,
                f"the transcript has no connection {number} (it has {self.recorded})",
            )
        if script.outcome in ("cancelled", "pending"):
            # it never ended while recorded: it hangs until the client gives up
            self._nursery.start_soon(self._finish_at, number, start + script.last)
            await trio.sleep_forever()
        try:
            await trio.sleep_until(start + script.outcome_at)
        except BaseException:
            self._finish(number)
            raise
        if script.outcome == "failed":
            self._finish(number)
            raise rebuild_error(script.error or {})
        to_server, inbox = trio.open_memory_channel[bytes](math.inf)
        stream = _ReplayStream(to_server)
        played = self._played[number] = _Played(self, script, stream, start)
        self._nursery.start_soon(played.serve, inbox)
        return stream

    async def _finish_at(self, number: int, when: float) -> None:
        await trio.sleep_until(when)
        self._finish(number)

    def _finish(self, number: int) -> None:
        if number not in self._finished:
            self._finished.add(number)
            self._changed.unpark_all()

    def _diverged(
        self,
        connection: int,
        now: float,
        *,
        expected: Message | None,
        came: Message | None,
        shown: str | None = None,
    ) -> None:
        since = now - (self.started_at or 0.0)
        self.divergences.append(
            ReplayDivergence(connection, since, expected=expected, came=came, shown_expected=shown)
        )
        self._changed.unpark_all()

    def _check_missing(self) -> None:
        now = trio.current_time()
        for number, played in sorted(self._played.items()):
            expected = played.missing(now)
            if expected is not None:
                due = played.start + expected.at
                self._diverged(
                    number,
                    min(due, now),
                    expected=expected.message(),
                    came=None,
                    shown=_shown(expected.message(), expected.size, expected.text),
                )


@asynccontextmanager
async def open_replay_server(
    transcript: str | os.PathLike[str] | TextIO | Iterable[str], *, strict: bool = True
) -> AsyncIterator[ReplayServer]:
    """Play a transcript (``ClientSocket(record=...)``, ``connect --record``)
    as an in-memory server for the duration of the block; best on the mock
    clock (pytest-trio's ``autojump_clock``), where an hour of recorded
    traffic takes milliseconds and every time is the recorded one.

    When the block exits, the application's messages are checked once more
    (a recorded message whose time has come and that was not sent is a
    divergence), and with ``strict`` (the default) the first
    ``ReplayDivergence`` is raised; with ``strict=False`` they are left in
    ``replay.divergences`` for the test to assert.

    Raises:
        ValueError: the transcript cannot be read, is not one, or is of a
            newer version.

    Examples:
        >>> async def test_incident(autojump_clock):  # doctest: +SKIP
        ...     async with open_replay_server("incident.jsonl") as replay:
        ...         async with replay.client() as sock, trio.open_nursery() as nursery:
        ...             nursery.start_soon(my_application, sock)
        ...             await replay.wait_finished()
        ...             nursery.cancel_scope.cancel()
    """
    header, scripts, reports = _read(transcript)
    failure: BaseException | None = None
    async with trio.open_nursery() as nursery:
        replay = ReplayServer(nursery, header, scripts, reports)
        try:
            yield replay
        except BaseException as exc:  # re-raised below, outside the nursery, ungrouped
            failure = exc
        else:
            replay._check_missing()
        finally:
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if strict and replay.divergences:
        first = replay.divergences[0]
        more = len(replay.divergences) - 1
        if more:
            first.args = (f"{first} (and {more} more: see ReplayServer.divergences)",)
        raise first
