"""The transport seam: one WebSocket connection, as ClientSocket uses it.

Two implementations:

- ``TrioWebsocketConnection`` (the default, ``transport="trio-websocket"``):
  trio-websocket's connection, whose own reader task hands each message over
  through a channel.
- ``WsprotoConnection`` (``transport="wsproto"``): wsproto driven directly on
  the trio stream by ClientSocket's reader task, with no task or channel in
  between; a read of 64 KiB can deliver many messages in one go.

Both raise ``trio_websocket.ConnectionClosed`` with a ``trio_websocket.CloseReason``
when the connection ends, so that ClientSocket handles them alike.
"""

from __future__ import annotations

import contextlib
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import trio
import trio_websocket
from trio_websocket import CloseReason, ConnectionClosed
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import ProtocolError as WsprotoError

from ._errors import ConnectionLost, HandshakeRejected, ProtocolError
from ._events import Message
from ._queues import Slot
from ._transport import ObservedStream
from ._url import Target

__all__ = ["TOO_BIG", "Connection", "Transport", "TrioWebsocketConnection", "WsprotoConnection"]

Transport = Literal["trio-websocket", "wsproto"]
TOO_BIG = "Exceeded maximum message size"
_READ = 65536
_QUEUE = 16  # messages trio-websocket's reader may parse ahead of ClientSocket's


class Connection(Protocol):
    """What ClientSocket needs of a connection."""

    @property
    def closed(self) -> CloseReason | None: ...

    async def receive_batch(self) -> list[Message]:
        """The next message(s); ConnectionClosed once the connection has ended."""
        ...

    async def send_message(self, message: Message) -> None: ...

    async def ping(self) -> None:
        """Send a ping and wait for its pong."""
        ...

    async def aclose(self, code: int) -> None:
        """Send a close frame and wait for the peer's."""
        ...


class _Inbox:
    """Takes the place of trio-websocket's internal message channel (both ends).

    trio-websocket's reader task hands each message through a memory channel,
    whose ``send()`` switches tasks once per message; ClientSocket's reader then
    takes them one switch at a time. Here the reader task appends to a list
    without yielding while fewer than ``bound`` messages wait, so that one read
    of 64 KiB is parsed in one step and ClientSocket's reader takes the whole
    batch in one step too. When ``bound`` messages wait, trio-websocket's reader
    waits (backpressure, as with its own channel).

    At most one task waits on each side: trio-websocket's reader and ClientSocket's.

    Once ClientSocket calls ``push_to()``, trio-websocket's reader hands each
    message on itself, so that no reader task of ClientSocket's is needed (a
    task less per socket): ``take`` delivers it, or returns what must wait for
    room, which ``wait`` then waits to deliver (backpressure on trio-websocket's
    reader); ``on_end`` is called once the connection has ended."""

    __slots__ = ("_bound", "_closed", "_items", "_on_end", "_reader", "_take", "_wait", "_writer")

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._items: list[Message] = []
        self._closed = False
        self._reader = Slot()
        self._writer = Slot()
        self._take: Callable[[Message], Any] | None = None
        self._wait: Callable[[Any], Awaitable[None]] | None = None
        self._on_end: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def push_to(
        self,
        take: Callable[[Message], Any],
        wait: Callable[[Any], Awaitable[None]],
        on_end: Callable[[], None],
    ) -> None:
        """Deliver each message as it arrives from now on (nothing may be buffered)."""
        assert not self._items
        assert not self._closed
        self._take, self._wait, self._on_end = take, wait, on_end

    # trio-websocket's side: the MemorySendChannel/MemoryReceiveChannel methods it calls

    async def send(self, message: Message) -> None:
        while True:  # every pass looks again: push_to() may come while it waits
            if self._closed:
                raise trio.ClosedResourceError
            take = self._take
            if take is not None:
                pending = take(message)
                if pending is not None:
                    assert self._wait is not None
                    await self._wait(pending)
                return
            if len(self._items) < self._bound:
                self._items.append(message)
                self._reader.wake()
                return
            await self._writer.wait()

    async def __aenter__(self) -> _Inbox:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()  # trio-websocket's reader ends its ``async with`` here

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reader.wake()
        self._writer.wake()
        if self._on_end is not None:
            self._on_end()

    # ClientSocket's side

    def take_nowait(self) -> list[Message]:
        """Every buffered message, without waiting (possibly none)."""
        batch, self._items = self._items, []
        self._writer.wake()
        return batch

    async def receive_batch(self) -> list[Message] | None:
        """Every waiting message, waiting for one; None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            await self._reader.wait()
        return self.take_nowait()


class TrioWebsocketConnection:
    """trio-websocket's connection behind the seam.

    Messages come through an ``_Inbox`` put in place of trio-websocket's
    message channel (``inbox=None`` when a trio-websocket release no longer has
    that channel: then through ``get_message()``, one task switch per message)."""

    __slots__ = ("inbox", "send_message", "ws")

    def __init__(self, ws: trio_websocket.WebSocketConnection, inbox: _Inbox | None) -> None:
        self.ws = ws
        self.inbox = inbox
        # trio-websocket's own method, not a wrapper: one coroutine less per send
        self.send_message = ws.send_message

    @classmethod
    async def handshake(
        cls,
        nursery: trio.Nursery,
        stream: trio.abc.Stream,
        target: Target,
        headers: list[tuple[bytes, bytes]],
        max_size: int,
    ) -> TrioWebsocketConnection:
        """What ``trio_websocket.wrap_client_stream()`` does, with an ``_Inbox``
        put in before trio-websocket's reader task starts: the reader then
        sends into it and, whichever way it ends, closes it."""
        options = {
            "message_queue_size": _QUEUE,
            "max_message_size": max_size,
            # 64 KiB reads: trio-websocket's 4 KiB default makes 64 KiB messages
            # 4x slower. The benchmark compares against these settings.
            "receive_buffer_size": _READ,
        }
        if not _INBOX_FITS:  # pragma: no cover - a trio-websocket with other internals
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,  # type: ignore[arg-type]  # any trio Stream works
                target.host_header,
                target.resource,
                extra_headers=headers,
                **options,  # type: ignore[arg-type]
            )
            return cls(ws, None)
        ws = trio_websocket.WebSocketConnection(
            stream,
            WSConnection(ConnectionType.CLIENT),
            host=target.host_header,
            path=target.resource,
            client_extra_headers=headers,
            **options,  # type: ignore[arg-type]
        )
        inbox = _Inbox(_QUEUE)
        ws._send_channel = ws._recv_channel = inbox  # type: ignore[assignment]
        nursery.start_soon(ws._reader_task)
        await ws._open_handshake.wait()
        return cls(ws, inbox)

    @property
    def closed(self) -> CloseReason | None:
        return self.ws.closed

    async def receive_batch(self) -> list[Message]:
        if self.inbox is None:  # pragma: no cover - see handshake()
            return [await self.ws.get_message()]
        batch = await self.inbox.receive_batch()
        if batch is None:
            raise ConnectionClosed(self.ws.closed or CloseReason(1006, None))
        return batch

    async def ping(self) -> None:
        await self.ws.ping()

    async def aclose(self, code: int) -> None:
        await self.ws.aclose(code)


def _inbox_fits() -> bool:
    """Whether this trio-websocket has the internals ``_Inbox`` stands in for."""
    cls = trio_websocket.WebSocketConnection
    return all(
        callable(getattr(cls, name, None)) for name in ("_reader_task", "_handle_message_event")
    ) and {"_send_channel", "_recv_channel", "_open_handshake"} <= set(
        cls.__init__.__code__.co_names
    )


_INBOX_FITS = _inbox_fits()


class WsprotoConnection:
    """A client connection driven by wsproto directly on an ``ObservedStream``.

    Reading happens only in ``receive_batch()``, in the caller's task (the
    socket's reader); writes are serialised by a lock."""

    def __init__(
        self, stream: ObservedStream, ws: WSConnection, pending: list[Event], max_size: int
    ) -> None:
        self._stream = stream
        self._ws = ws
        self._pending: list[Event] = pending  # parsed, not yet handled (a list: cheap idle)
        self._max_size = max_size
        self._lock = trio.StrictFIFOLock()
        self._pings: OrderedDict[bytes, trio.Event] = OrderedDict()
        self._parts: list[str | bytes] = []
        self._size = 0
        self._closed: CloseReason | None = None
        self._ended = trio.Event()  # the peer's close frame, or EOF, was seen

    @classmethod
    async def handshake(
        cls,
        stream: ObservedStream,
        target: Target,
        headers: list[tuple[bytes, bytes]],
        max_size: int,
    ) -> WsprotoConnection:
        """Run the opening handshake; raise HandshakeRejected, ProtocolError or
        ConnectionLost if it fails."""
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(host=target.host_header, target=target.resource, extra_headers=headers)
        await stream.send_all(ws.send(request))
        status: int | None = None
        body = b""
        while True:
            try:
                data = await stream.receive_some(_READ)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                if status is not None:
                    raise HandshakeRejected(status, body)
                raise ConnectionLost(1006, "connection closed during the handshake")
            try:
                ws.receive_data(bytes(data))
                events = list(ws.events())
            except WsprotoError as exc:
                raise ProtocolError(f"invalid handshake response: {exc}") from exc
            for index, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    return cls(stream, ws, events[index + 1 :], max_size)
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise HandshakeRejected(status)
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise HandshakeRejected(status or 0, body)

    @property
    def closed(self) -> CloseReason | None:
        return self._closed

    async def receive_batch(self) -> list[Message]:
        out: list[Message] = []
        while True:
            pending, self._pending = self._pending, []
            for event in pending:
                if isinstance(event, TextMessage | BytesMessage):
                    message = self._message(event)
                    if message is TOO_BIG:
                        await self._control(CloseConnection(code=1009, reason=TOO_BIG))
                    elif message is not None:
                        out.append(message)
                else:
                    await self._control(event)
                if self._ended.is_set():
                    break
            if out:
                return out
            if self._ended.is_set():
                assert self._closed is not None
                raise ConnectionClosed(self._closed)
            await self._read()

    async def _read(self) -> None:
        try:
            data = await self._stream.receive_some(_READ)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._end(CloseReason(1006, None))
            return
        try:
            self._ws.receive_data(bytes(data))
            self._pending = list(self._ws.events())
        except WsprotoError as exc:  # pragma: no cover - wsproto reports these as a close
            self._end(CloseReason(1002, str(exc)))

    def _message(self, event: TextMessage | BytesMessage) -> Message | None:
        self._size += len(event.data)
        if self._size > self._max_size:
            self._parts = []
            self._size = 0
            return TOO_BIG  # the caller closes with 1009
        if event.message_finished and not self._parts:
            self._size = 0
            data = event.data
            return data if isinstance(data, str) else bytes(data)
        self._parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
        if not event.message_finished:
            return None
        parts, self._parts, self._size = self._parts, [], 0
        if isinstance(event, TextMessage):
            return "".join(parts)  # type: ignore[arg-type]
        return b"".join(parts)  # type: ignore[arg-type]

    async def _control(self, event: Event) -> None:
        if isinstance(event, Ping):
            await self._write_quietly(event.response())
        elif isinstance(event, Pong):
            self._pong(bytes(event.payload))
        elif isinstance(event, CloseConnection):
            state = self._ws.state
            if state is ConnectionState.REMOTE_CLOSING:
                # The peer closed: that is the reason, even if the answer fails
                # (ended below, after answering, so that no waiting ping wakes
                # and ends the session while the answer is being written).
                if self._closed is None:
                    self._closed = CloseReason(event.code, event.reason or None)
                await self._write_quietly(event.response())
            elif state is ConnectionState.OPEN:
                # wsproto found an invalid frame (or our size limit did): close
                # with its code, and do not wait for the peer.
                await self._write_quietly(CloseConnection(code=event.code, reason=event.reason))
            self._end(CloseReason(event.code, event.reason or None))

    def _pong(self, payload: bytes) -> None:
        if payload not in self._pings:
            return
        while self._pings:  # a pong answers its ping and every earlier one
            key, waiter = self._pings.popitem(last=False)
            waiter.set()
            if key == payload:
                break

    def _end(self, reason: CloseReason) -> None:
        if self._closed is None:  # else we closed first: keep our reason
            self._closed = reason
        self._ended.set()
        for waiter in self._pings.values():
            waiter.set()  # ping() checks closed after waking

    async def _write(self, event: Event) -> None:
        async with self._lock:
            state = self._ws.state
            # Once the peer's close frame is parsed, only our close reply may go.
            if not (
                state is ConnectionState.OPEN
                or (state is ConnectionState.REMOTE_CLOSING and isinstance(event, CloseConnection))
            ):
                raise ConnectionClosed(self._closed or CloseReason(1006, None))
            data = self._ws.send(event)
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._end(CloseReason(1006, None))
                raise ConnectionClosed(self._closed) from None

    async def _write_quietly(self, event: Event) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._write(event)

    async def send_message(self, message: Message) -> None:
        if self._closed is not None:
            raise ConnectionClosed(self._closed)
        if isinstance(message, str):
            await self._write(TextMessage(data=message))
        else:
            await self._write(BytesMessage(data=message))

    async def ping(self) -> None:
        if self._closed is not None:
            raise ConnectionClosed(self._closed)
        payload = random.getrandbits(32).to_bytes(4, "big")
        waiter = self._pings[payload] = trio.Event()
        await self._write(Ping(payload=payload))
        await waiter.wait()
        if self._ended.is_set() and self._closed is not None:
            raise ConnectionClosed(self._closed)

    async def aclose(self, code: int) -> None:
        if self._closed is None:
            self._closed = CloseReason(code, None)
        if self._ws.state is ConnectionState.OPEN:
            await self._write_quietly(CloseConnection(code=code))
        await self._ended.wait()
