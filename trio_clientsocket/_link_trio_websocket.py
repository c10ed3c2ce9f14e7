"""The trio-websocket transport, ``transport="trio-websocket"``: trio-websocket's
connection behind the link seam (see ``_link``), through its public API only
(``get_message``, ``send_message``, ``ping``, ``aclose``), with a stream under
it that reads the handshake answer and walks the frame headers. Imported on
first use."""

from __future__ import annotations

import contextlib

import trio
import trio_websocket
from websockets.frames import Close, Frame, Opcode

from ._engine import REASON_MAX, TOO_BIG, Ending, ending_error, fragment_limit
from ._errors import ConnectionLost, HandshakeRejected, ProtocolError, TransportError
from ._events import Message, PingReceived, PongReceived
from ._handshake import HandshakeResponse, HeadReader, check_upgrade, request_key
from ._link import ABORT_WRITE, CHUNK, READ, LinkEnded, Pings
from ._queues import Slot

__all__ = ["CountingStream", "FrameWatch", "TrioWebsocketLink"]


class FrameWatch:
    """Walks the frame headers of the server's bytes (without touching the
    payloads), for the trio-websocket transport: it tells whether the server
    sent a close frame, and finds a message of too many fragments, or of more
    than 4 x ``max_size`` bytes, before trio-websocket assembles it.
    (trio-websocket's own limit counts characters: it refuses a message of
    more than ``max_size`` of them with 1009, and the link refuses one of
    fewer characters but more bytes once it is complete.)"""

    __slots__ = (
        "_close",
        "_fragments",
        "_header",
        "_max_size",
        "_size",
        "_skip",
        "bad_close",
        "close_frame",
        "violation",
    )

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._header = b""  # an incomplete frame header
        self._skip = 0  # payload bytes of the current frame still to come
        self._close: bytearray | None = None  # the payload of a close frame, as it comes
        self._size = 0  # bytes of the message being received
        self._fragments = 0
        self.close_frame: tuple[int, str] | None = None
        """The server sent a valid close frame."""
        self.bad_close: tuple[int, str] | None = None
        """The server's close frame was invalid: the code to fail with, and why."""
        self.violation: tuple[int, str] | None = None
        """A message over the limits: the stream is to be cut."""

    def feed(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view and self.violation is None:
            if self._skip:
                step = min(self._skip, len(view))
                if self._close is not None:
                    self._close += view[:step]
                self._skip -= step
                view = view[step:]
                if not self._skip and self._close is not None:
                    self._check_close(bytes(self._close))
                continue
            header = self._header + bytes(view[:14])
            if len(header) < 2:
                self._header, view = header, view[len(view) :]
                continue
            length, need = header[1] & 0x7F, 2
            if length == 126:
                need = 4
            elif length == 127:
                need = 10
            need += 4 if header[1] & 0x80 else 0
            if len(header) < need:
                self._header, view = header, view[len(view) :]
                continue
            if length == 126:
                length = int.from_bytes(header[2:4], "big")
            elif length == 127:
                length = int.from_bytes(header[2:10], "big")
            view = view[need - len(self._header) :]
            self._header = b""
            self._frame(header[0], header[1] & 0x80, length)
            self._skip = length

    def _frame(self, first: int, masked: int, length: int) -> None:
        opcode = first & 0x0F
        if opcode == 0x8:
            if masked:
                self.bad_close = (1002, "a masked close frame from the server")
            elif length:
                self._close = bytearray()
            else:
                self.close_frame = self.close_frame or (1005, "")  # no code
            return
        if opcode > 0x2:
            return  # ping, pong (or invalid: trio-websocket refuses those)
        if opcode != 0x0:
            self._size = self._fragments = 0
        self._size += length
        self._fragments += 1
        if self._size > 4 * self._max_size:
            self.violation = (TOO_BIG, "a message exceeded max_message_size")
        elif self._fragments > fragment_limit(self._max_size):
            self.violation = (TOO_BIG, "a message had too many fragments")

    def _check_close(self, payload: bytes) -> None:
        self._close = None
        if len(payload) < 2:
            self.bad_close = (1002, "a close frame with a 1-byte payload")
            return
        code = int.from_bytes(payload[:2], "big")
        if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
            self.bad_close = (1002, f"a close frame with the invalid code {code}")
            return
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError:
            self.bad_close = (1007, "a close frame whose reason is not UTF-8")
            return
        self.close_frame = self.close_frame or (code, reason)


class CountingStream(trio.abc.Stream):
    """The stream under trio-websocket. It counts bytes; it reads and checks
    the handshake answer's head itself, as for the other engines (skipping
    ``100 Continue``, refusing a non-101 at its status line, naming what is
    wrong with a 101), and hands trio-websocket only a valid 101, or the end
    of the stream with the reason in ``failure``; and its ``FrameWatch`` cuts
    off a message over the limits."""

    def __init__(
        self, inner: trio.abc.Stream, subprotocols: tuple[str, ...], max_size: int
    ) -> None:
        self.inner = inner
        self.bytes_in = 0
        self.bytes_out = 0
        self.rx_at = trio.current_time()
        self.request = b""  # the handshake request, as written
        self.failure: TransportError | None = None  # why the handshake failed
        self.handshake: trio.CancelScope | None = None  # cancelled when it cannot finish
        self.subprotocol: str | None = None
        self.response: HandshakeResponse | None = None
        self._subprotocols = subprotocols
        self._head: HeadReader | None = HeadReader()
        self.written = Slot()
        self.watch = FrameWatch(max_size)
        self.fail_sent = False
        """The close frame that failed the connection went out."""
        self._writing = trio.Lock()  # trio-websocket's writes and the link's own

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._writing:
            await self._send_all(data)

    async def send_fail(self, code: int, reason: str) -> None:
        """Fail the connection as RFC 6455 says: our close frame with ``code``
        (trio-websocket only drops the stream), between trio-websocket's
        writes, within ``ABORT_WRITE`` (shielded: the session may be ending
        meanwhile, on a write that found the connection over); ``fail_sent``
        says whether it went."""
        if self.fail_sent:
            return
        frame = Frame(Opcode.CLOSE, Close(code, reason[:REASON_MAX]).serialize())
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + ABORT_WRITE
            async with self._writing:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.inner.send_all(frame.serialize(mask=True))
                    self.bytes_out += len(frame.data) + 6
                    self.fail_sent = True

    async def _send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not self.request:
            self.request = bytes(data)
        try:
            if len(data) <= 2 * CHUNK:
                await self.inner.send_all(data)
                self.bytes_out += len(data)
            else:  # in pieces, so that a long write shows its progress
                view = memoryview(data)
                for start in range(0, len(view), CHUNK):
                    chunk = view[start : start + CHUNK]
                    await self.inner.send_all(chunk)
                    self.bytes_out += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The stream is dead: close it, so that trio-websocket's reader,
            # which may be waiting to read, ends too (and the link with it).
            if self._head is not None:  # the request: trio-websocket says nothing
                self._refuse(ConnectionLost(1006, "connection closed during the handshake"))
            await trio.aclose_forcefully(self.inner)
            raise
        finally:
            self.written.wake()

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def _read(self, max_bytes: int | None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        self.bytes_in += len(data)
        self.rx_at = trio.current_time()
        return data

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._head is not None:
            return await self._answer()
        data = await self._read(max_bytes)
        watch = self.watch
        if watch.violation is None:
            watch.feed(data)
            if watch.violation is not None:
                # cut the server off before trio-websocket assembles the message
                await self.send_fail(*watch.violation)
                await trio.aclose_forcefully(self.inner)
                return b""
        return data

    async def _answer(self) -> bytes:
        head_reader = self._head
        assert head_reader is not None
        while True:
            try:
                data = bytes(await self._read(READ))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                return self._refuse(None)
            try:
                got = head_reader.feed(data)
            except ProtocolError as exc:
                return self._refuse(exc)
            if got is not None:
                break
        self._head = None
        response, head, rest = got
        if response.status != 101:
            return self._refuse(HandshakeRejected(response.status, rest, response.headers))
        self.response = response
        try:
            self.subprotocol = check_upgrade(
                response, request_key(self.request), self._subprotocols, ()
            )
        except ProtocolError as exc:
            return self._refuse(exc)
        self.watch.feed(rest)
        return head + b"\r\n\r\n" + rest

    def _refuse(self, failure: TransportError | None) -> bytes:
        """End the handshake: trio-websocket sees the end of the stream."""
        self._head = None
        self.failure = failure or ConnectionLost(1006, "connection closed during the handshake")
        if self.handshake is not None:
            self.handshake.cancel()  # trio-websocket would wait for its answer forever
        return b""

    async def aclose(self) -> None:
        await self.inner.aclose()


class TrioWebsocketLink:
    """trio-websocket's connection behind the seam, through its public API."""

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        stream: CountingStream,
        nursery: trio.Nursery,
        max_size: int,
    ) -> None:
        self._ws = ws
        self._stream = stream
        self._nursery = nursery
        self._max_size = max_size
        self._gate = trio.Lock()
        self._closing = False
        self._close_scope: trio.CancelScope | None = None
        self._close_done = trio.Event()
        self._violation: tuple[int, str] | None = None
        """How the client failed the connection, once known."""
        self._self_closed = False
        """trio-websocket sent the close frame for ``_violation`` itself (it
        does for a message too big only)."""
        self._failing: trio.Event | None = None  # set once the failure is settled
        self.rtt: float | None = None
        self.pings = Pings()
        self._ping_scopes: dict[bytes, trio.CancelScope] = {}  # the tasks awaiting pongs
        self._aborted = False  # aclose() was called
        self.notices: list[PingReceived | PongReceived] | None = None  # not offered here
        self.torn = False
        self.torn_message: Message | None = None
        self.messages_written = 0

    @property
    def bytes_in(self) -> int:
        return self._stream.bytes_in

    @property
    def bytes_out(self) -> int:
        return self._stream.bytes_out

    @property
    def rx_at(self) -> float:
        return self._stream.rx_at

    @property
    def writable(self) -> bool:
        return self._ws.closed is None and not self._closing and not self.torn

    @property
    def gate_busy(self) -> bool:
        return self._gate.locked()

    @property
    def over(self) -> bool:
        return self._ws.closed is not None and not self._closing

    async def read(self, room: int) -> list[Message]:
        try:
            message = await self._ws.get_message()
        except trio_websocket.ConnectionClosed:
            if self._closing:
                # trio-websocket ends get_message() as soon as our close frame
                # goes; the connection ends once the answer came (or close gave up)
                await self._close_done.wait()
            else:
                await self._fail()
            raise LinkEnded from None
        if (
            type(message) is str
            and 4 * len(message) > self._max_size
            and len(message.encode()) > self._max_size
        ):
            # trio-websocket counts characters; the limit is in bytes
            self._violation = (TOO_BIG, "a message exceeded max_message_size")
            self._self_closed = True
            self._closing = True
            with trio.move_on_after(ABORT_WRITE):
                await self._ws.aclose(TOO_BIG, "message too big")
            raise LinkEnded
        return [message]

    async def write(self, message: Message) -> None:
        async with self._gate:
            if not self.writable:
                raise LinkEnded
            try:
                await self._ws.send_message(message)
            except trio_websocket.ConnectionClosed:
                await self._fail()
                raise LinkEnded from None
            except trio.Cancelled:
                self.torn = True
                self.torn_message = message
                raise
            self.messages_written += 1

    async def ping(self, payload: bytes) -> int:
        async with self._gate:
            if not self.writable:
                raise LinkEnded
            for old in self.pings.sent(payload, trio.current_time()):
                self._forget_task(old)
            written = self._stream.bytes_out
            mark = self._stream.bytes_in
            self._nursery.start_soon(self._ping_task, payload)
            # Hold the gate until the ping frame is on the wire.
            try:
                while self._stream.bytes_out == written:
                    if self._ws.closed is not None or self._aborted:
                        raise LinkEnded  # the connection ended before the ping went
                    await self._stream.written.wait()
            except trio.Cancelled:
                # The ping task may hold trio-websocket's send lock, part-way
                # through the frame: nothing more may be written.
                self.torn = True
                raise
            return mark

    def forget_ping(self, payload: bytes) -> None:
        self.pings.forget(payload)
        self._forget_task(payload)

    def _forget_task(self, payload: bytes) -> None:
        """Nobody waits for that ping's answer: its task, which waits inside
        trio-websocket for the pong, ends (trio-websocket keeps the payload in
        its own record until a later pong or the connection's end)."""
        scope = self._ping_scopes.pop(payload, None)
        if scope is not None:
            scope.cancel()

    async def _ping_task(self, payload: bytes) -> None:
        with trio.CancelScope() as scope:
            self._ping_scopes[payload] = scope
            try:
                await self._ws.ping(payload)
            except (trio_websocket.ConnectionClosed, ValueError):
                return
            finally:
                if self._ping_scopes.get(payload) is scope:
                    del self._ping_scopes[payload]
            rtt = self.pings.answer(payload, trio.current_time())
            if rtt is not None:
                self.rtt = rtt

    async def close(self, code: int, reason: str, *, reply: bool = True) -> None:
        self._closing = True
        async with self._gate:
            if self.torn or self._ws.closed is not None:
                self._close_done.set()
                return
            stream = self._stream
            written = stream.bytes_out
            # trio-websocket's aclose() writes the close frame and waits for the
            # answer; the link's teardown (aclose) ends that wait, so that a
            # reader task that died (trio-websocket issue #184) cannot hold it.
            with trio.CancelScope() as self._close_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._aclose_ws, code, reason)
                    while stream.bytes_out == written and self._ws.closed is None:
                        await stream.written.wait()
                    if not reply:
                        nursery.cancel_scope.cancel()
            self._close_scope = None

    async def _aclose_ws(self, code: int, reason: str) -> None:
        try:
            with contextlib.suppress(trio_websocket.ConnectionClosed):
                await self._ws.aclose(code, reason)
        finally:
            self._close_done.set()
            self._stream.written.wake()

    def _peer_closed(self) -> bool:
        """trio-websocket's record of the end is the server's close frame (and
        not wsproto's refusal of bytes before it, which it records the same
        way: as a close with the code the client is to send)."""
        reason = self._ws.closed
        return (
            reason is not None
            and reason.code != 1006
            and (int(reason.code), reason.reason or "") == self._stream.watch.close_frame
        )

    def _failure(self) -> tuple[int, str] | None:
        """How the client failed the connection, if it did."""
        watch = self._stream.watch
        violation = self._violation or watch.violation or watch.bad_close
        reason = self._ws.closed
        if (
            violation is None
            and reason is not None
            and reason.code != 1006
            and not self._closing
            and not self._peer_closed()
        ):
            # wsproto refused the server's bytes (1002, 1007, 1009)
            violation = (int(reason.code), reason.reason or "an invalid frame")
        return violation

    async def _fail(self) -> None:
        """trio-websocket ended the connection: record whether the client
        failed it (what comes after, such as the server's answer to its close
        frame, changes nothing), and send the close frame trio-websocket does
        not send when the server's bytes were invalid."""
        if self._failing is not None:
            await self._failing.wait()  # the reader or a writer is at it
            return
        if self._violation is not None:
            return
        self._failing = trio.Event()
        try:
            violation = self._violation = self._failure()
            if violation is None:
                return
            if violation[0] == TOO_BIG and self._stream.watch.violation is None:
                self._self_closed = True  # trio-websocket's own limit: it sent 1009
            else:
                await self._stream.send_fail(*violation)
        finally:
            self._failing.set()

    def outcome(self) -> TransportError:
        violation = self._violation or self._failure()
        if violation is not None:
            sent = self._stream.fail_sent or self._self_closed
            return ending_error(Ending(violation=violation, close_sent=sent))
        reason = self._ws.closed
        if reason is None or not self._peer_closed():
            return ending_error(Ending())
        return ending_error(Ending(peer_close=(int(reason.code), reason.reason or "")))

    async def aclose(self) -> None:
        self._aborted = True
        self._stream.written.wake()  # a ping waiting for its frame to go
        if self._close_scope is not None:
            self._close_scope.cancel()
        await trio.aclose_forcefully(self._stream.inner)
