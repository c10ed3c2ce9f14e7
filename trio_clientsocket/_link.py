"""Links: one established WebSocket connection, as the session drives it.

- ``WireLink`` is the project's own driver: it moves bytes between a trio
  stream and a sans-I/O engine (``_engine``), and does nothing else. Every
  write goes through one gate; automatic replies (pongs, the close reply)
  that come in while another write holds the gate go out right after it.
- ``TrioWebsocketLink`` is trio-websocket's connection, used only through its
  public API (``get_message``, ``send_message``, ``ping``, ``aclose``), for
  ``transport="trio-websocket"``.

A link never decides what an ending means beyond recording it: ``outcome()``
turns the record into the error, through ``_engine.ending_error``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Protocol

import attrs
import trio
import trio_websocket
from websockets.frames import Close, Frame, Opcode

from ._engine import REASON_MAX, TOO_BIG, Ending, Engine, ending_error, fragment_limit
from ._errors import ConnectionLost, HandshakeRejected, ProtocolError, TransportError
from ._events import Message
from ._handshake import HandshakeResponse, HeadReader, check_upgrade, request_key
from ._queues import Slot

__all__ = ["CHUNK", "READ", "CountingStream", "Link", "LinkEnded", "TrioWebsocketLink", "WireLink"]

READ = 65536
"""Bytes asked of the stream per read."""
ABORT_WRITE = 0.05
"""Seconds trio-websocket may take to write the close frame that refuses a
message too big (it then waits for the answer, which nobody needs)."""
SCHEDULE_EVERY = 16
"""A reader or writer whose socket is always ready lets other tasks run once
in this many calls."""
STASH_MAX = 65536
"""Bytes of automatic replies (pongs) that may wait for a write holding the gate
before the reader stops reading."""
CHUNK = 65536
"""Piece size of a long write (over ``2 * CHUNK``), handed to the stream one by
one, so that its progress shows (keepalive reads it); shorter writes go whole."""


class LinkEnded(Exception):
    """The link cannot carry this: the connection has ended (or is closing).

    ``partial`` is True when a write broke part-way: the frame may have been
    partly written (the message may or may not have arrived)."""

    def __init__(self, *, partial: bool = False) -> None:
        super().__init__("the connection has ended")
        self.partial = partial


class Link(Protocol):
    """What the session needs of a connection."""

    rtt: float | None
    torn: bool
    """A write was cut part-way through a frame: nothing more may be written."""
    torn_message: Message | None
    """The message whose frame was cut (None when it was another write, a ping)."""
    messages_written: int
    """Messages whose frame went out whole. A write cancelled after its frame
    went, while it flushed other frames, still sent its message: the caller
    compares this count before and after."""

    @property
    def bytes_in(self) -> int: ...

    @property
    def bytes_out(self) -> int: ...

    @property
    def rx_at(self) -> float:
        """``trio.current_time()`` of the last bytes received."""
        ...

    @property
    def writable(self) -> bool:
        """A data frame may be written now (not closing, not ended, not torn)."""
        ...

    @property
    def gate_busy(self) -> bool:
        """A write is under way."""
        ...

    @property
    def over(self) -> bool:
        """The connection has ended for good (the peer's close, a violation,
        the stream's end), whether or not the reader has come to it yet."""
        ...

    async def read(self, room: int) -> list[Message]:
        """The next message(s), about ``room`` bytes of them at most (one
        message may go past it); LinkEnded once nothing more will come."""
        ...

    async def write(self, message: Message) -> None:
        """Write one message; LinkEnded (nothing written) if it cannot."""
        ...

    async def ping(self, payload: bytes) -> int:
        """Write a ping; returns once it is written, with ``bytes_in`` as it was
        when the ping went out (what comes in after that answers it)."""
        ...

    async def close(self, code: int, reason: str, *, reply: bool = True) -> None:
        """Write our close frame, if the connection is still open. With
        ``reply``, a link that cannot hand the peer's answer to the reader
        waits for it here."""
        ...

    def outcome(self) -> TransportError:
        """The error that reports how the connection ended."""
        ...

    async def aclose(self) -> None:
        """Close the underlying stream at once."""
        ...


class WireLink:
    """A connection driven by the project: a trio stream and an engine."""

    __slots__ = (
        "_broken",
        "_drained",
        "_engine",
        "_fail_sent",
        "_fd",
        "_gate",
        "_ping",
        "_ping_at",
        "_ready",
        "_stash",
        "_stashed",
        "_stream",
        "_waiters",
        "bytes_in",
        "bytes_out",
        "messages_written",
        "rtt",
        "rx_at",
        "torn",
        "torn_message",
    )

    def __init__(
        self, stream: trio.abc.Stream, engine: Engine, bytes_in: int, bytes_out: int
    ) -> None:
        self._stream = stream
        self._engine = engine
        # A TCP stream is read and written through its socket under trio's
        # waits (POSIX): no task switch per call while the socket is ready.
        self._fd = (
            stream.socket.fileno()
            if type(stream) is trio.SocketStream and os.name == "posix"
            else -1
        )
        self._ready = 0  # calls since the last schedule point
        self._drained = False  # the last read took all the socket had
        self._gate = False  # a write holds the gate
        self._waiters: trio.lowlevel.ParkingLot | None = None  # created when first needed
        self._broken = False  # the stream failed or reached EOF
        self._fail_sent = False  # the close frame that failed the connection went out
        self._ping: bytes | None = None
        self._ping_at = 0.0
        self._stash: list[bytes] = []  # automatic replies waiting for the gate
        self._stashed = 0
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out
        self.rx_at = trio.current_time()
        self.rtt: float | None = None
        self.torn = False
        self.torn_message: Message | None = None
        self.messages_written = 0

    @property
    def writable(self) -> bool:
        return self._engine.writable and not self.torn and not self._broken

    @property
    def gate_busy(self) -> bool:
        return self._gate

    @property
    def over(self) -> bool:
        return self._broken or self._engine.ended

    # -- reading -----------------------------------------------------------------

    async def read(self, room: int) -> list[Message]:
        engine = self._engine
        while True:
            if engine.backlog:
                # what came earlier (with the handshake answer, or past the room)
                messages = engine.receive(b"", room)
            else:
                if engine.ended:
                    if self._stash and not self.torn:
                        # the close reply waited for a write: it goes before the end
                        await self._send_waiting()
                    raise LinkEnded
                data = await self._receive()
                if not data:
                    self._broken = True
                    engine.receive_eof()
                    raise LinkEnded
                self.rx_at = trio.current_time()
                self.bytes_in += len(data)
                messages = engine.receive(bytes(data) if type(data) is not bytes else data, room)
            if engine.pong is not None:
                self._pong()
            if not self.torn:
                # pongs, the close reply, our close after a violation
                out = engine.pending()
                if out:
                    if not self._gate:
                        await self._flush(out)
                    else:
                        # a write holds the gate: it sends these after its frame;
                        # the reader stops reading while too much waits (a ping
                        # flood against a blocked uplink must not grow memory)
                        self._stash.append(out)
                        self._stashed += len(out)
                        if self._stashed > STASH_MAX:
                            await self._send_waiting()
            if messages:
                return messages

    async def _receive(self) -> bytes | bytearray:
        """The next bytes from the stream; b"" at its end or when it broke."""
        fd = self._fd
        if fd < 0:
            try:
                return await self._stream.receive_some(READ)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        # The last read took all there was: wait before reading again (a read
        # that finds nothing costs more than the wait).
        waited = self._drained
        if waited:
            try:
                await trio.lowlevel.wait_readable(fd)
            except trio.ClosedResourceError:  # the link was closed meanwhile
                return b""
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                data = os.read(fd, READ)
            except BlockingIOError:
                waited = True
                try:
                    await trio.lowlevel.wait_readable(fd)
                except trio.ClosedResourceError:
                    return b""
                continue
            except OSError:  # reset by the peer
                return b""
            self._drained = len(data) < READ
            if waited:
                self._ready = 0
            else:
                await self._schedule()
            return data

    async def _schedule(self) -> None:
        """A schedule point every ``SCHEDULE_EVERY`` calls that did not wait:
        a socket that is always ready never starves the other tasks."""
        self._ready += 1
        if self._ready >= SCHEDULE_EVERY:
            self._ready = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    def _pong(self) -> None:
        pong, self._engine.pong = self._engine.pong, None
        if pong == self._ping and self._ping is not None:
            self.rtt = self.rx_at - self._ping_at
            self._ping = None

    # -- writing -----------------------------------------------------------------

    async def _acquire(self) -> None:
        if not self._gate:
            self._gate = True
            return
        if self._waiters is None:
            self._waiters = trio.lowlevel.ParkingLot()
        await self._waiters.park()  # woken holding the gate: handed over in order

    def _release(self) -> None:
        if self._waiters:
            self._waiters.unpark()  # the gate passes to the first waiter, still taken
        else:
            self._gate = False

    async def _flush(self, out: bytes) -> None:
        """Write ``out``, which the engine queued by itself, and what it queues
        meanwhile (gate taken here)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._gate = True
        try:
            await self._send(out)
            await self._send_pending()
        except LinkEnded:
            pass
        finally:
            self._release()

    async def _send_waiting(self) -> None:
        """Wait for the gate, then write what waits; a link that ends meanwhile
        is left for the reader to notice."""
        await self._acquire()
        try:
            await self._send_pending()
        except LinkEnded:
            pass
        finally:
            self._release()

    async def _send_pending(self) -> None:
        """Write what waits (the stash, and what the engine queued), until
        nothing does: the reader may add to it while this writes."""
        while True:
            if self._stash:
                data = b"".join(self._stash)
                self._stash, self._stashed = [], 0
            else:
                data = self._engine.pending()
                if not data:
                    engine = self._engine
                    if engine.ended and engine.failed:
                        self._fail_sent = True  # it was queued when the engine failed
                    return
            await self._send(data)

    async def _send(self, data: bytes) -> None:
        """Hand ``data`` to the stream (gate held). Cancelled part-way: ``torn``."""
        if self._fd >= 0:
            await self._write(data)
            return
        stream = self._stream
        try:
            if len(data) <= 2 * CHUNK:
                await stream.send_all(data)
                self.bytes_out += len(data)
                return
            view = memoryview(data)
            for start in range(0, len(view), CHUNK):
                chunk = view[start : start + CHUNK]
                await stream.send_all(chunk)
                self.bytes_out += len(chunk)
        except trio.Cancelled:
            self.torn = True
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._broken = True
            raise LinkEnded(partial=True) from None

    async def _write(self, data: bytes) -> None:
        """``_send`` through the socket: what it takes now goes at once; the rest
        when it can take more (the progress shows in ``bytes_out``)."""
        fd = self._fd
        view: bytes | memoryview = data
        try:
            while True:
                try:
                    sent = os.write(fd, view)
                except BlockingIOError:
                    self._ready = 0
                    await trio.lowlevel.wait_writable(fd)
                    continue
                self.bytes_out += sent
                if sent == len(view):
                    return
                view = memoryview(view)[sent:]
        except trio.Cancelled:
            self.torn = True
            raise
        except (OSError, trio.ClosedResourceError):  # reset, closed, broken pipe
            self._broken = True
            raise LinkEnded(partial=True) from None

    async def write(self, message: Message) -> None:
        if self._gate:
            await self._acquire()
        else:
            # Cancelled now, nothing is written and the engine has not framed it.
            await trio.lowlevel.checkpoint_if_cancelled()
            self._gate = True
        try:
            if not self.writable:
                raise LinkEnded
            # No checkpoint between framing and writing: with compression the
            # engine's state already counts this frame as sent.
            try:
                await self._send(self._engine.send(message))
            except trio.Cancelled:
                self.torn_message = message
                raise
            self.messages_written += 1
            await self._send_pending()
        finally:
            self._release()
        if self._fd >= 0:
            await self._schedule()

    async def ping(self, payload: bytes) -> int:
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._acquire()
        try:
            if not self.writable:
                raise LinkEnded
            self._ping = payload
            self._ping_at = trio.current_time()
            mark = self.bytes_in
            await self._send(self._engine.ping(payload))
            await self._send_pending()
            return mark
        finally:
            self._release()

    async def close(self, code: int, reason: str, *, reply: bool = True) -> None:
        await self._acquire()
        try:
            if self.torn or self._broken:
                return
            data = self._engine.close(code, reason)
            if data:
                await self._send(data)
            await self._send_pending()
        except LinkEnded:
            pass
        finally:
            self._release()

    def outcome(self) -> TransportError:
        ending = self._engine.ending
        if ending.violation is not None and not self._fail_sent:
            ending = attrs.evolve(ending, close_sent=False)
        return ending_error(ending)

    async def aclose(self) -> None:
        self._broken = True
        await trio.aclose_forcefully(self._stream)


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
            sent_at = trio.current_time()
            written = self._stream.bytes_out
            mark = self._stream.bytes_in
            self._nursery.start_soon(self._ping_task, payload, sent_at)
            # Hold the gate until the ping frame is on the wire.
            try:
                while self._stream.bytes_out == written and self._ws.closed is None:
                    await self._stream.written.wait()
            except trio.Cancelled:
                # The ping task may hold trio-websocket's send lock: a message
                # written after it could be cut off behind it. Write no more.
                self._closing = True
                raise
            return mark

    async def _ping_task(self, payload: bytes, sent_at: float) -> None:
        try:
            await self._ws.ping(payload)
        except (trio_websocket.ConnectionClosed, ValueError):
            return
        self.rtt = trio.current_time() - sent_at

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
        if self._close_scope is not None:
            self._close_scope.cancel()
        await trio.aclose_forcefully(self._stream.inner)
