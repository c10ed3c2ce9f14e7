"""Links: one established WebSocket connection, as the session drives it.

- ``WireLink`` is the project's own driver: it moves bytes between a trio
  stream and a sans-I/O engine (``_engine``), and does nothing else. Every
  write goes through one gate; automatic replies (pongs, the close reply)
  that come in while another write holds the gate go out right after it.
- ``TrioWebsocketLink`` (``_link_trio_websocket``, imported on first use) is
  trio-websocket's connection, used only through its public API
  (``get_message``, ``send_message``, ``ping``, ``aclose``), for
  ``transport="trio-websocket"``.

A link never decides what an ending means beyond recording it: ``outcome()``
turns the record into the error, through ``_engine.ending_error``.
"""

from __future__ import annotations

import os
import random
from typing import Protocol

import attrs
import trio

from ._engine import Engine, ending_error
from ._errors import TransportError
from ._events import Message, PingReceived, PongReceived

__all__ = ["ABORT_WRITE", "CHUNK", "READ", "Link", "LinkEnded", "Pings", "WireLink"]

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
UNANSWERED_MAX = 16
"""Pings nobody waits for (keepalive's) kept unanswered; older ones are
forgotten (a server that never answers must not grow the record)."""


class _Ping:
    __slots__ = ("at", "done", "rtt")

    def __init__(self, at: float | None, done: trio.Event | None) -> None:
        self.at = at  # when it went out; None until it has
        self.done = done  # set when it is answered, or the connection ends
        self.rtt: float | None = None


class Pings:
    """The pings of one connection that wait for their pong, in the order they
    went out. A pong answers the ping with its payload and every ping sent
    before it: a peer may answer only the latest (RFC 6455, 5.5.3)."""

    __slots__ = ("_pings",)

    def __init__(self) -> None:
        self._pings: dict[bytes, _Ping] = {}

    def payload(self) -> bytes:
        """A payload for a new ping: 4 random bytes no ping in flight has."""
        payload = random.getrandbits(32).to_bytes(4, "big")
        while payload in self._pings:
            payload = random.getrandbits(32).to_bytes(4, "big")
        return payload

    def expect(self) -> tuple[bytes, _Ping]:
        """A payload of its own for a ping that a task will wait for, and the
        record that tells it the round trip (``done`` is set)."""
        payload = self.payload()
        ping = self._pings[payload] = _Ping(None, trio.Event())
        return payload, ping

    def sent(self, payload: bytes, at: float) -> list[bytes]:
        """The ping with ``payload`` went out at ``at``; the payloads of the
        pings forgotten to make room for it (none waited for)."""
        ping = self._pings.pop(payload, None)
        forgotten = []
        if ping is None:
            ping = _Ping(at, None)
            if len(self._pings) >= UNANSWERED_MAX:
                for old, record in self._pings.items():
                    if record.done is None:
                        del self._pings[old]
                        forgotten.append(old)
                        break
        ping.at = at
        self._pings[payload] = ping  # last: the order they went out
        return forgotten

    def answer(self, payload: bytes, at: float) -> float | None:
        """A pong with ``payload`` came at ``at``: the round trip of the ping it
        answers, or None (no ping of ours has that payload)."""
        answered = self._pings.get(payload)
        if answered is None or answered.at is None:
            return None
        for key in list(self._pings):
            ping = self._pings[key]
            if ping.at is None:
                continue  # not sent yet: this pong cannot answer it
            del self._pings[key]
            ping.rtt = at - ping.at
            if ping.done is not None:
                ping.done.set()
            if ping is answered:
                break
        return answered.rtt

    def forget(self, payload: bytes) -> None:
        """Nobody waits for that ping's answer any more."""
        self._pings.pop(payload, None)

    def end(self) -> None:
        """The connection ended: every ping still waiting gets no answer."""
        for ping in self._pings.values():
            if ping.done is not None:
                ping.done.set()
        self._pings.clear()


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
    """The round trip of the last ping answered."""
    pings: Pings
    notices: list[PingReceived | PongReceived] | None
    """Where the pings and pongs received are noted for the application (None:
    they are not)."""
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

    def forget_ping(self, payload: bytes) -> None:
        """Nobody waits for the answer to that ping any more."""
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
        "_later",
        "_marks",
        "_ready",
        "_stash",
        "_stashed",
        "_stream",
        "_waiters",
        "bytes_in",
        "bytes_out",
        "messages_written",
        "notices",
        "pings",
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
        self.pings = Pings()
        self.notices: list[PingReceived | PongReceived] | None = None
        # with notices: those of the last engine read, each with how many of
        # its messages came before it; and what a read split at them left for
        # the next reads (the notices to put first, then the messages)
        self._marks: list[tuple[int, PingReceived | PongReceived]] = []
        self._later: list[tuple[list[PingReceived | PongReceived], list[Message]]] = []
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
        if self._later:  # the rest of a read that pings or pongs split
            assert self.notices is not None
            notices, messages = self._later.pop(0)
            self.notices += notices
            return messages
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
            if engine.controls:
                self._controls()
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
            if self._marks:
                messages = self._split(messages)
            if messages or self.notices:
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
                data = None  # waited for below: not in the handler, which would
                # keep the exception and its traceback alive as long as it waits
            except OSError:  # reset by the peer
                return b""
            if data is None:
                waited = True
                try:
                    await trio.lowlevel.wait_readable(fd)
                except trio.ClosedResourceError:
                    return b""
                continue
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

    def _controls(self) -> None:
        """The pings and pongs of the last read: a pong answers our pings; with
        notices, each is noted where it came among the messages."""
        noting = self.notices is not None
        for pong, payload, index in self._engine.controls:
            if pong:
                rtt = self.pings.answer(payload, self.rx_at)
                if rtt is not None:
                    self.rtt = rtt
                if noting:
                    self._marks.append((index, PongReceived(payload, rtt)))
            elif noting:
                self._marks.append((index, PingReceived(payload)))
        self._engine.controls.clear()

    def _split(self, messages: list[Message]) -> list[Message]:
        """Split a read's messages at its pings and pongs, so that each goes to
        the application in the order it came: the first part now (its notices
        first), the others by the next reads."""
        assert self.notices is not None
        parts: list[tuple[list[PingReceived | PongReceived], list[Message]]] = []
        notices: list[PingReceived | PongReceived] = []
        start = 0
        for index, notice in self._marks:
            if index > start:
                parts.append((notices, messages[start:index]))
                notices, start = [], index
            notices.append(notice)
        parts.append((notices, messages[start:]))
        self._marks.clear()
        first, now = parts[0]
        self.notices += first
        self._later += parts[1:]
        return now

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
                    sent = -1  # waited for below, out of the handler (see _receive)
                if sent < 0:
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
            self.pings.sent(payload, trio.current_time())
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

    def forget_ping(self, payload: bytes) -> None:
        self.pings.forget(payload)

    def outcome(self) -> TransportError:
        ending = self._engine.ending
        if ending.violation is not None and not self._fail_sent:
            ending = attrs.evolve(ending, close_sent=False)
        return ending_error(ending)

    async def aclose(self) -> None:
        self._broken = True
        await trio.aclose_forcefully(self._stream)
