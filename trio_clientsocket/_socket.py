"""ClientSocket: the GeneXus Client.Socket as a Trio async context manager."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Literal, Self, TypeAlias

import attrs
import trio
import trio_websocket

from ._backoff import Backoff
from ._classify import Classifier, Classify
from ._connection import (
    TOO_BIG,
    Connection,
    Transport,
    TrioWebsocketConnection,
    WsprotoConnection,
)
from ._errors import (
    AttemptError,
    ConnectionLost,
    ConnectTimeout,
    HandshakeRejected,
    InvalidURLError,
    KeepaliveTimeout,
    OutboxFullError,
    ProtocolError,
    SocketClosedError,
    TransportError,
)
from ._events import (
    Closed,
    Connected,
    ConnectionFailed,
    Event,
    Message,
    MessageReceived,
    Undelivered,
)
from ._queues import EventStream, Outbox
from ._state import ConnectionState, State, Status, Trigger
from ._transport import ObservedStream, OpenStream, tcp_opener
from ._url import Target, parse_url, redact_url

__all__ = ["ClientSocket", "Headers", "Overflow", "SocketStatistics", "UrlSource"]

log = logging.getLogger("trio_clientsocket")
log.addHandler(logging.NullHandler())

Headers: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]
"""Extra handshake headers: a mapping or (name, value) pairs."""
UrlSource: TypeAlias = str | Callable[[], str | Awaitable[str]]
"""A URL, or a (sync or async) callable evaluated on every attempt."""
HeadersSource: TypeAlias = Headers | Callable[[], Headers | Awaitable[Headers]]
Overflow: TypeAlias = Literal["wait", "raise", "drop-oldest"]

_OVERFLOWS = ("wait", "raise", "drop-oldest")
_NO_KEYS: frozenset[str] = frozenset()
_DIRECT_MAX = 16384  # characters or bytes: larger messages always go through the writer
_PING_FRAME = 64  # bytes: a client ping frame with trio-websocket's 4-byte payload is 10
_PROTOCOL_LIBRARIES = frozenset({"h11", "wsproto", "trio_websocket"})


@attrs.frozen
class SocketStatistics:
    """A snapshot of a ClientSocket, from ``statistics()``.

    Example:
        >>> SocketStatistics().status
        <Status.DISCONNECTED: 'Disconnected'>
    """

    state: State = State.IDLE
    """The fine-grained state (idle, connecting, connected, waiting, closing)."""
    status: Status = Status.DISCONNECTED
    """The GeneXus status."""
    attempts: int = 0
    """Connection attempts made since the socket was entered."""
    reconnects: int = 0
    """Successful handshakes after the first one."""
    consecutive_failures: int = 0
    """Failures since the last connection that stayed up ``min_uptime``."""
    messages_sent: int = 0
    """Messages written to a connection."""
    messages_received: int = 0
    """Messages received."""
    messages_dropped: int = 0
    """Messages reported in ``Undelivered`` events."""
    bytes_sent: int = 0
    """Bytes written to the wire (frames and handshakes included)."""
    bytes_received: int = 0
    """Bytes read from the wire."""
    outbox_depth: int = 0
    """Messages waiting in the outbox."""
    last_error: BaseException | None = attrs.field(default=None, eq=False)
    """The error of the last ``ConnectionFailed``."""
    last_rtt: float | None = None
    """Round-trip time of the last keepalive ping, in seconds."""


@attrs.define(eq=False)
class _Counters:
    attempts: int = 0
    reconnects: int = 0
    failures: int = 0
    sent: int = 0
    received: int = 0
    dropped: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    last_error: BaseException | None = None
    last_rtt: float | None = None


@attrs.define(eq=False)
class _Run:
    """One open() until close(), give-up or the next open()."""

    url: UrlSource
    scope: trio.CancelScope = attrs.field(factory=lambda: trio.CancelScope(shield=True))
    close_requested: bool = False
    done: trio.Event = attrs.field(factory=trio.Event)
    current_url: str | None = None


@attrs.define(eq=False)
class _Session:
    """One established connection."""

    ws: Connection
    stream: ObservedStream
    scope: trio.CancelScope
    connected_at: float
    failure: Exception | None = None
    closing: bool = False
    reading: bool = False
    tasks: trio.Nursery | None = None  # the connection's nursery, once serving
    writing: bool = False  # the writer task is running
    reader_wait: trio.CancelScope | None = None
    stalls: int = 0
    unblocked: trio.Event | None = None  # set while the reader waits on a full buffer

    def fail(self, error: Exception) -> None:
        """End the session with ``error``, unless it is closing on request (then
        _close_session() ends it, within the close deadline)."""
        if self.closing:
            return
        if self.failure is None:
            self.failure = error
        self.scope.cancel()


async def _resolve(value: object) -> object:
    if callable(value):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value


def _header_pairs(headers: object) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs = []
    for item in items:  # type: ignore[attr-defined]
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str):
            # never the value in the message: it may be a credential
            raise TypeError(f"header names and values must be str (header {name!r})")
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise ValueError(f"invalid header {name!r}")
        pairs.append((name.encode("latin-1"), value.encode("latin-1")))
    return pairs


def _check_timeout(name: str, value: float | None, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0{' or None' if optional else ''}")


class ClientSocket:
    """A reconnecting WebSocket client: the GeneXus ``Client.Socket`` for Trio.

    ``async with ClientSocket(url) as sock`` opens a nursery that owns the
    connection and its tasks; with a ``url`` it starts connecting at once,
    without one it waits, ``Disconnected``, for ``open()``. Leaving the block
    flushes the outbox, closes with code 1000 (within ``close_timeout``, even
    when cancelled), stops every task and ends the event stream.

    Example:
        >>> async def main():  # doctest: +SKIP
        ...     async with ClientSocket("ws://localhost:8080/app/gxwebsocket?42") as sock:
        ...         await sock.send("hello")
        ...         async for event in sock.events():
        ...             match event:
        ...                 case Connected(): print("connected")
        ...                 case MessageReceived(message=text): print(text)
        ...                 case ConnectionFailed(retry_in=None): break

    Args:
        url: ``ws://`` or ``wss://`` URL to connect to on entry, or a (sync or
            async) callable that returns one, evaluated on every attempt (to
            refresh a token or client id). None: stay closed until ``open()``.
        reconnect: the ``Backoff`` policy; None disables reconnecting.
            Default ``Backoff()``: 1 s doubling to 30 s, jittered, forever.
        connect_timeout: seconds allowed for one attempt (TCP + TLS +
            handshake); default 10. It is an option rather than the caller's
            cancel scope because it bounds each attempt, not the whole
            reconnecting life of the socket, which only the socket sees.
        ping_interval: seconds between keepalive pings; None disables keepalive.
            Default 20.
        ping_timeout: seconds to wait for the pong before the peer is taken for
            dead (``KeepaliveTimeout``); None disables. Default 20. Time the
            consumer spends not reading ``events()`` is never counted.
        max_message_size: largest message accepted, in bytes (characters for
            text); larger ones close the connection with 1009. Default 1 MiB.
        ssl_context: the ``ssl.SSLContext`` for ``wss://``; default: the system
            trust store with host names checked.
        headers: extra handshake headers (mapping or pairs), or a callable
            returning them, evaluated on every attempt. Credentials in the URL
            (``ws://user:pass@host/``) are sent as ``Authorization: Basic``.
        outbox_size: messages ``send()`` may queue while not connected; default 1000.
        overflow: what ``send()`` does when the outbox is full: ``"wait"``
            (default), ``"raise"`` ``OutboxFullError``, or ``"drop-oldest"``
            (reported by an ``Undelivered`` event).
        event_buffer: events buffered for ``events()``; when full, the socket
            stops reading the network (backpressure). Default 256.
        close_timeout: seconds ``close()`` and leaving the block may take to
            flush the outbox and close with 1000; default 3.
        classify: decides which failures are retried; default ``Classifier()``.
        open_stream: async callable opening the byte stream for a URL; the seam
            for ``trio_clientsocket.testing``. Default: TCP, plus TLS for wss://.
        transport: ``"trio-websocket"`` (default) or ``"wsproto"``: wsproto driven
            directly by the socket's reader, without trio-websocket's reader task
            and channel; faster, same behaviour (see the performance page).
        visible_query_keys: query parameters whose values may appear in the
            socket's repr and log records; every other ``key=value`` value shows
            as ``***`` (the GeneXus client id, a bare token, always shows).
        connect_limiter: a ``trio.CapacityLimiter`` shared by many sockets to
            bound how many attempts run at once (TCP + TLS + handshake), so that
            thousands of sockets in one process reconnecting together do not
            each time out waiting for the CPU. ``connect_timeout`` counts from
            when the attempt gets its slot.
    """

    def __init__(
        self,
        url: UrlSource | None = None,
        *,
        reconnect: Backoff | None = Backoff(),  # noqa: B008 - frozen, shared safely
        connect_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        max_message_size: int = 2**20,
        ssl_context: ssl.SSLContext | None = None,
        headers: HeadersSource | None = None,
        outbox_size: int = 1000,
        overflow: Overflow = "wait",
        event_buffer: int = 256,
        close_timeout: float = 3.0,
        classify: Classify | None = None,
        open_stream: OpenStream | None = None,
        transport: Transport = "trio-websocket",
        visible_query_keys: Iterable[str] = (),
        connect_limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        if isinstance(url, str):
            parse_url(url)
        elif url is not None and not callable(url):
            raise InvalidURLError(f"url must be a str or a callable, not {type(url).__name__}")
        if reconnect is not None and not isinstance(reconnect, Backoff):
            raise TypeError("reconnect must be a Backoff or None")
        _check_timeout("connect_timeout", connect_timeout, optional=False)
        _check_timeout("ping_interval", ping_interval, optional=True)
        _check_timeout("ping_timeout", ping_timeout, optional=True)
        _check_timeout("close_timeout", close_timeout, optional=False)
        for name, value in (
            ("max_message_size", max_message_size),
            ("outbox_size", outbox_size),
            ("event_buffer", event_buffer),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1")
        if transport not in ("trio-websocket", "wsproto"):
            raise ValueError(f"transport must be 'trio-websocket' or 'wsproto', got {transport!r}")
        if overflow not in _OVERFLOWS:
            raise ValueError(f"overflow must be one of {_OVERFLOWS}, got {overflow!r}")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError("ssl_context must be an ssl.SSLContext")
        if headers is not None and not callable(headers):
            _header_pairs(headers)
        self._url = url
        self._reconnect = reconnect
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._max_message_size = max_message_size
        self._headers = headers
        self._overflow = overflow
        self._close_timeout = close_timeout
        self._classify = classify if classify is not None else Classifier()
        self._open_stream = open_stream if open_stream is not None else tcp_opener(ssl_context)
        self._transport = transport
        self._visible_keys = frozenset(visible_query_keys) if visible_query_keys else _NO_KEYS
        if connect_limiter is not None and not isinstance(connect_limiter, trio.CapacityLimiter):
            raise TypeError("connect_limiter must be a trio.CapacityLimiter")
        self._connect_limiter = connect_limiter
        self._outbox = Outbox(outbox_size)
        self._events = EventStream(event_buffer)
        self._machine = ConnectionState()
        self._counters = _Counters()
        self._run: _Run | None = None  # the run send() queues for
        self._runs: list[_Run] = []  # every run whose task is still alive
        self._session: _Session | None = None
        self._status_changed: trio.lowlevel.ParkingLot | None = None  # created when needed
        self._control = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: contextlib.AbstractAsyncContextManager[trio.Nursery] | None = None
        self._used = False

    # -- context management --------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._used:
            raise RuntimeError("a ClientSocket can be entered only once")
        self._used = True
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        try:
            if self._url is not None:
                await self.open(self._url)
        except BaseException as exc:
            self._nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            self._events.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        assert self._nursery_manager is not None
        try:
            # Close gracefully even when the block is being cancelled (shielded,
            # never longer than close_timeout), after any close() under way.
            with trio.CancelScope(shield=True):
                async with self._control:
                    await self._stop()
        finally:
            self._nursery.cancel_scope.cancel()
            try:
                # The nursery only ever sees its own tasks: the block's exception
                # (or Cancelled) propagates as it is, never wrapped in a group.
                await self._nursery_manager.__aexit__(None, None, None)
            finally:
                self._events.close()
        return None

    # -- public API ----------------------------------------------------------

    @property
    def status(self) -> Status:
        """``Status.CONNECTED`` exactly while a handshake-completed connection is up.

        Example:
            >>> ClientSocket().status
            <Status.DISCONNECTED: 'Disconnected'>
        """
        return self._machine.status

    @property
    def url(self) -> str | None:
        """The URL of the current (or last) attempt, None before any.

        Example:
            >>> ClientSocket().url is None
            True
        """
        run = self._run
        return run.current_url if run is not None else None

    @property
    def is_open(self) -> bool:
        """True between ``open()`` and ``close()`` (or giving up): ``send()`` queues.

        Example:
            >>> ClientSocket().is_open
            False
        """
        return self._run is not None

    def events(self) -> EventStream:
        """The event stream: every event since the socket was entered, in order.

        It is one stream for the life of the socket: breaking out of
        ``async for`` and iterating again resumes where it stopped. It ends
        when the ``async with`` block is left.

        Example:
            >>> async def consume(sock):  # doctest: +SKIP
            ...     async for event in sock.events():
            ...         print(event)
        """
        return self._events

    async def open(self, url: UrlSource | None = None) -> None:
        """Connect to ``url`` (default: the URL given before), closing the current
        connection first, cleanly with 1000. Returns at once; ``Connected`` or
        ``ConnectionFailed`` tell how it went (or ``await wait_connected()``).

        Raises:
            InvalidURLError: ``url`` is not a valid ws:// or wss:// URL.
            SocketClosedError: no URL was ever given.

        Example:
            >>> async def switch(sock):  # doctest: +SKIP
            ...     await sock.open("ws://other-server:8080/chat")
        """
        if self._nursery is None:
            raise RuntimeError("use the ClientSocket inside 'async with' first")
        if url is None:
            url = self._url
            if url is None:
                raise SocketClosedError("no URL to open: pass one to open() or ClientSocket()")
        elif isinstance(url, str):
            parse_url(url)
        elif not callable(url):
            raise InvalidURLError(f"url must be a str or a callable, not {type(url).__name__}")
        async with self._control:
            await self._stop()
            self._url = url
            run = _Run(url=url)
            self._run = run
            self._runs.append(run)
            self._set(Trigger.OPEN)
            await self._nursery.start(self._run_task, run)

    async def close(self) -> tuple[Message, ...]:
        """Flush the outbox and close the connection with code 1000 (both within
        ``close_timeout``), and stop reconnecting. Status is DISCONNECTED on
        return; ``open()`` works again. Idempotent.

        Returns:
            The messages that could not be written (also reported by an
            ``Undelivered`` event).

        Example:
            >>> async def leave(sock):  # doctest: +SKIP
            ...     unsent = await sock.close()
            ...     assert sock.status is Status.DISCONNECTED
        """
        async with self._control:
            return await self._stop()

    async def send(self, message: Message) -> None:
        """Send ``message`` (``str``: text frame, ``bytes``: binary frame), in
        order. While connecting or reconnecting, or behind other messages, it
        waits in the outbox and is written as soon as a connection is up; when
        the outbox is full, ``send()`` waits, raises or drops the oldest, as
        ``overflow`` says. On a connected, idle socket, a message of up to 16 KiB
        is written by the calling task itself (no task switch), and ``send()``
        returns once it is written.

        Cancelled before it is written or queued, the message is not sent.
        Cancelled part-way through writing it (the network would not take the
        whole frame), the connection cannot carry another message: it ends and
        reconnects, and the message is reported ``Undelivered`` ("in flight").

        Raises:
            SocketClosedError: the socket is not open (no URL, closed, or gave up).
            OutboxFullError: the outbox is full and ``overflow="raise"``.
            TypeError: ``message`` is neither str nor bytes.

        Example:
            >>> async def chat(sock):  # doctest: +SKIP
            ...     await sock.send("hello")
            ...     await sock.send(b"\\x00\\x01")
        """
        if type(message) is not str and type(message) is not bytes:
            message = self._check_message(message)
        session = self._session
        if (
            session is not None
            and not session.closing
            and session.failure is None
            and self._outbox.inflight is None
            and not self._outbox.items
            and len(message) <= _DIRECT_MAX
            and self._run is not None
            and session.ws.closed is None
        ):
            # Connected, idle, and a small message: write it in this task,
            # without the writer's task switch. It is in flight meanwhile, so
            # that the writer and close() wait for it. Both transports check
            # for cancellation before writing anything: cancelled then, it is
            # not sent, as when send() is cancelled before queueing. Cancelled
            # part-way through the frame, the connection is unusable: it ends,
            # and the message is reported Undelivered, like any message lost
            # in flight. When the session ends, closing its stream wakes a
            # write that waits, with ClosedResourceError, as trio's streams do
            # (no cancel scope of the session's here: entering one costs a
            # fifth of a small send).
            outbox = self._outbox
            outbox.inflight = message
            outbox.direct = True
            written = False
            try:
                await session.ws.send_message(message)
                written = True
            except trio_websocket.ConnectionClosed:
                _ended(session)  # the message is reported below
            finally:
                outbox.direct = False
                if written:
                    outbox.done()
                    self._counters.sent += 1
                elif session.stream.torn or session.stream.broken:
                    if session.stream.torn and not session.scope.cancel_called:
                        session.fail(ConnectionLost(1006, "a send() was cancelled mid-frame"))
                    self._finish_inflight()
                elif session.ws.closed is not None:
                    # Refused before any of it was written (the peer's close frame
                    # came first): it goes first on the next connection.
                    outbox.requeue_inflight()
                else:
                    outbox.lose_inflight()  # cancelled before writing: not sent
                if outbox.items:
                    self._kick_writer()  # for what other tasks queued meanwhile
            return
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled: nothing queued
        while not self._try_put(message, may_wait=self._overflow == "wait"):
            await self._outbox.wait_changed()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def send_nowait(self, message: Message) -> None:
        """Like ``send()``, but raise ``OutboxFullError`` instead of waiting.

        Example:
            >>> async def fire_and_forget(sock):  # doctest: +SKIP
            ...     sock.send_nowait("ping")
        """
        self._try_put(self._check_message(message), may_wait=False)

    async def wait_connected(self) -> None:
        """Wait until status is CONNECTED.

        Raises:
            SocketClosedError: the socket closed or gave up first.

        Example:
            >>> async def ready(sock):  # doctest: +SKIP
            ...     with trio.fail_after(10):
            ...         await sock.wait_connected()
        """
        while self.status is not Status.CONNECTED:
            if self._run is None:
                raise SocketClosedError("the socket is closed")
            if self._status_changed is None:
                self._status_changed = trio.lowlevel.ParkingLot()
            await self._status_changed.park()
        await trio.lowlevel.checkpoint()

    async def wait_sent(self) -> None:
        """Wait until the outbox is empty: every message passed to ``send()`` so
        far has been written to a connection (or reported ``Undelivered``).

        Raises:
            SocketClosedError: the socket closed or gave up first.

        Example:
            >>> async def send_and_leave(sock):  # doctest: +SKIP
            ...     await sock.send("bye")
            ...     await sock.wait_sent()
        """
        while len(self._outbox):
            if self._run is None:
                raise SocketClosedError("the socket closed before the outbox was sent")
            await self._outbox.wait_changed()
        await trio.lowlevel.checkpoint()

    def statistics(self) -> SocketStatistics:
        """A frozen snapshot of the socket's state and counters.

        Example:
            >>> ClientSocket().statistics().attempts
            0
        """
        c = self._counters
        session = self._session
        bytes_in, bytes_out = c.bytes_received, c.bytes_sent
        if session is not None:
            bytes_in += session.stream.bytes_in
            bytes_out += session.stream.bytes_out
        return SocketStatistics(
            state=self._machine.state,
            status=self.status,
            attempts=c.attempts,
            reconnects=c.reconnects,
            consecutive_failures=c.failures,
            messages_sent=c.sent,
            messages_received=c.received,
            messages_dropped=c.dropped,
            bytes_sent=bytes_out,
            bytes_received=bytes_in,
            outbox_depth=len(self._outbox),
            last_error=c.last_error,
            last_rtt=c.last_rtt,
        )

    def __repr__(self) -> str:
        url = f" {redact_url(self.url, self._visible_keys)}" if self.url else ""
        return f"<ClientSocket {self.status.value}{url}>"

    # -- sending -------------------------------------------------------------

    @staticmethod
    def _check_message(message: object) -> Message:
        if isinstance(message, str | bytes):
            return message
        if isinstance(message, bytearray | memoryview):
            return bytes(message)
        raise TypeError(f"message must be str or bytes, not {type(message).__name__}")

    def _try_put(self, message: Message, *, may_wait: bool) -> bool:
        if self._run is None:
            raise SocketClosedError("the socket is closed: call open() first")
        outbox = self._outbox
        if not outbox.full:
            outbox.append(message)
            self._kick_writer()
            return True
        if self._overflow == "drop-oldest":
            dropped = outbox.drop_oldest()
            outbox.append(message)
            self._report_nowait((dropped,), "dropped")
            self._kick_writer()
            return True
        if may_wait:
            return False
        raise OutboxFullError(f"outbox is full ({outbox.capacity} messages)")

    # -- events --------------------------------------------------------------

    def _set(self, trigger: Trigger) -> None:
        before = self._machine.status
        self._machine.fire(trigger)
        if self._machine.status is not before:
            log.info("status %s", self._machine.status.value)
        if self._status_changed:
            self._status_changed.unpark_all()

    async def _emit(self, event: Event) -> None:
        await self._events.put(event)

    def _report_nowait(self, messages: tuple[Message, ...], reason: str) -> None:
        if messages:
            self._counters.dropped += len(messages)
            log.warning("%d message(s) undelivered: %s", len(messages), reason)
            self._events.put_report(Undelivered(messages=messages, reason=reason))

    # -- stopping ------------------------------------------------------------

    async def _stop(self) -> tuple[Message, ...]:
        """End every live run: flush the outbox and close with 1000, within
        ``close_timeout``; then force what is left. Shielded: once started, a
        cancelled ``close()`` or ``async with`` exit still leaves the socket
        closed. Always called with ``self._control`` held."""
        run = self._run
        self._run = None  # send() raises from here on
        if not self._runs:
            return ()
        with trio.CancelScope(shield=True):
            deadline = trio.current_time() + self._close_timeout
            session = self._session if self._machine.state is State.CONNECTED else None
            if session is not None and (session.failure or session.scope.cancel_called):
                session = None  # it already ended: nothing can be flushed
            for live in self._runs:
                live.close_requested = True
                if live is not run or session is None:
                    live.scope.cancel()  # connecting, waiting or giving up: nothing to flush
            if session is not None:
                await self._close_session(session, deadline)
            with trio.move_on_at(deadline):
                for live in list(self._runs):
                    await live.done.wait()
            for live in list(self._runs):
                live.scope.cancel()
                await live.done.wait()
        unsent = self._outbox.drain()
        self._report_nowait(unsent, "closed")
        if run is not None:
            self._events.put_final(Closed(url=run.current_url))
        return unsent

    # -- the run: connect, serve, retry -------------------------------------

    async def _run_task(self, run: _Run, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            task_status.started()
            # If open() was cancelled before this task started, it was not moved
            # into the socket's nursery: leave now, before shielding ourselves.
            await trio.lowlevel.checkpoint_if_cancelled()
            # Shielded: only the socket ends a run (_stop() cancels run.scope),
            # so that leaving a cancelled block can still close with 1000.
            with run.scope:
                await self._connect_loop(run)
        finally:
            self._settle()
            if self._run is run:
                self._run = None
            if run in self._runs:
                self._runs.remove(run)
            run.done.set()

    def _settle(self) -> None:
        """Bring the state machine back to IDLE after a run ends, however it ended."""
        state = self._machine.state
        if state is State.CONNECTED:
            self._set(Trigger.CLOSE)
            state = State.CLOSING
        if state is State.CLOSING:
            self._set(Trigger.CLOSED)
        elif state is not State.IDLE:
            self._set(Trigger.CLOSE)

    async def _connect_loop(self, run: _Run) -> None:
        counters = self._counters
        counters.failures = 0
        connected_before = False
        while True:
            counters.attempts += 1
            try:
                await self._attempt(run, reconnect=connected_before)
            except Exception as exc:  # classified below; Cancelled is not an Exception
                error: Exception = exc
            else:
                return  # closed on request
            finally:
                session = self._session
                if session is not None:
                    connected_before = True
                    counters.bytes_received += session.stream.bytes_in
                    counters.bytes_sent += session.stream.bytes_out
                    self._session = None
            if run.close_requested or not await self._after_failure(run, error):
                return

    async def _after_failure(self, run: _Run, error: Exception) -> bool:
        """Report ``error``; wait out the backoff and return True to retry, or
        give up (the socket is closed before the event says so) and return False."""
        counters = self._counters
        counters.failures += 1
        counters.last_error = error
        backoff = self._reconnect
        shown = redact_url(run.current_url, self._visible_keys)
        log.warning("connection to %s failed: %s", shown, error)
        if (
            backoff is None
            or not self._classify(error)
            or backoff.gives_up_after(counters.failures)
        ):
            self._set(Trigger.GIVE_UP)
            if self._run is run:
                self._run = None
            unsent = self._outbox.drain()
            self._events.put_final(ConnectionFailed(error=error, retry_in=None))
            self._report_nowait(unsent, "gave up")
            return False
        delay = backoff.delay(counters.failures)
        was_connected = self._machine.state is State.CONNECTED
        self._set(Trigger.LOST if was_connected else Trigger.ATTEMPT_FAILED)
        await self._emit(ConnectionFailed(error=error, retry_in=delay))
        await trio.sleep(delay)
        self._set(Trigger.RETRY)
        return True

    async def _attempt(self, run: _Run, *, reconnect: bool) -> _Session:
        """One attempt: connect, then serve the connection until it ends.

        Returns the session when it was closed on request; raises the failure
        otherwise."""
        target, headers = await self._prepare(run)
        stream: ObservedStream | None = None
        session: _Session | None = None
        ws: Connection | None = None
        try:
            async with trio.open_nursery() as nursery:
                limiter = self._connect_limiter
                if limiter is not None:
                    await limiter.acquire()  # the timeout starts once a slot is ours
                try:
                    with trio.move_on_after(self._connect_timeout) as handshake:
                        stream = ObservedStream(await self._open_stream(target.url))
                        if self._transport == "wsproto":
                            ws = await WsprotoConnection.handshake(
                                stream, target, headers, self._max_message_size
                            )
                        else:
                            ws = await self._handshake(nursery, stream, target, headers, handshake)
                finally:
                    if limiter is not None:
                        limiter.release()
                if ws is None:
                    if stream is not None and stream.broken:
                        raise _handshake_failure(stream)
                    raise ConnectTimeout(self._connect_timeout)
                assert stream is not None
                session = _Session(
                    ws=ws,
                    stream=stream,
                    scope=nursery.cancel_scope,
                    connected_at=trio.current_time(),
                )
                # The session's tasks run in this nursery (beside trio-websocket's
                # reader); session.scope ends them all when the session ends.
                await self._serve(run, session, nursery, reconnect=reconnect)
        except BaseExceptionGroup as group:
            error = _single_failure(group)
            if error is group:
                raise
            raise error from None
        finally:
            if stream is not None:
                await trio.aclose_forcefully(stream.inner)
            self._finish_inflight()
        assert session is not None
        if session.failure is None and not session.closing:
            # Every task ended without a close being asked for or a failure
            # reported: the connection was lost all the same.
            session.failure = _lost(session.ws.closed, session)
        if session.failure is not None:
            if trio.current_time() - session.connected_at >= self._min_uptime():
                self._counters.failures = 0
            raise session.failure
        return session

    def _min_uptime(self) -> float:
        return self._reconnect.min_uptime if self._reconnect is not None else 0.0

    async def _prepare(self, run: _Run) -> tuple[Target, list[tuple[bytes, bytes]]]:
        try:
            url = await _resolve(run.url)
            headers = await _resolve(self._headers)
            pairs = _header_pairs(headers)
        except Exception as exc:
            raise AttemptError(f"url or headers callable failed: {exc!r}") from exc
        run.current_url = url if isinstance(url, str) else repr(url)
        target = parse_url(url)
        auth = target.basic_auth()
        if auth is not None and not any(k.lower() == b"authorization" for k, _ in pairs):
            pairs.append(auth)
        return target, pairs

    async def _handshake(
        self,
        nursery: trio.Nursery,
        stream: ObservedStream,
        target: Target,
        headers: list[tuple[bytes, bytes]],
        handshake: trio.CancelScope,
    ) -> Connection:
        # trio-websocket waits for a handshake that a closed or garbled stream
        # will never finish: end the wait as soon as the stream breaks.
        async def cancel_when_broken() -> None:
            await stream.wait_broken()
            handshake.cancel()

        watch = trio.CancelScope()
        nursery.start_soon(_in_scope, watch, cancel_when_broken)
        try:
            return await TrioWebsocketConnection.handshake(
                nursery, stream, target, headers, self._max_message_size
            )
        finally:
            watch.cancel()

    async def _serve(
        self, run: _Run, session: _Session, tasks: trio.Nursery, *, reconnect: bool
    ) -> None:
        """Start the session's tasks in ``tasks`` (the connection's nursery), and
        run the keepalive in this task, inside that nursery's scope, until the
        session ends."""
        self._session = session
        session.stream.on_write_error = functools.partial(_ended, session)
        if reconnect:
            self._counters.reconnects += 1
        self._set(Trigger.HANDSHAKE_OK)
        log.info("connected to %s", redact_url(run.current_url, self._visible_keys))
        session.tasks = tasks
        self._kick_writer()  # the outbox goes out at once
        await self._emit(Connected(url=run.current_url or ""))
        if session.closing:
            return  # close() came first: _close_session() reads what is left
        session.reading = True
        ws = session.ws
        if isinstance(ws, TrioWebsocketConnection) and ws.inbox is not None:
            await self._push_from(session, ws)  # trio-websocket's reader delivers
        else:
            tasks.start_soon(self._reader, session)
        if self._ping_interval is not None and self._ping_timeout is not None:
            # In this task, the run's own, which would otherwise only wait for
            # the session's tasks: a task less per socket (about 4 KiB).
            await self._keepalive(session, self._ping_interval, self._ping_timeout)

    async def _reader(self, session: _Session) -> None:
        ws = session.ws
        events = self._events
        counters = self._counters
        while True:
            try:
                batch = await ws.receive_batch()
            except trio_websocket.ConnectionClosed as exc:
                session.fail(_lost(exc.reason, session))
                return
            counters.received += len(batch)
            for message in batch:
                event = MessageReceived(message)
                if session.closing or events.put_nowait(event):
                    continue  # closing: what arrives now is not delivered
                await self._stall(session, event)

    async def _push_from(self, session: _Session, ws: TrioWebsocketConnection) -> None:
        """Instead of a reader task: deliver what trio-websocket's reader has
        buffered, then let it hand each message on itself (``_Inbox.push_to``)."""
        inbox = ws.inbox
        assert inbox is not None
        pusher = _Pusher(self, session)
        while True:
            batch = inbox.take_nowait()
            if batch:
                for message in batch:
                    event = pusher.take(message)
                    if event is not None:
                        await pusher.wait(event)
            elif inbox.closed:
                pusher.on_end()
                return
            else:
                inbox.push_to(pusher.take, pusher.wait, pusher.on_end)
                return

    async def _stall(self, session: _Session, event: MessageReceived) -> None:
        """Backpressure: wait for the application to make room for ``event``."""
        session.stalls += 1
        session.unblocked = trio.Event()
        try:
            with trio.CancelScope() as session.reader_wait:
                await self._events.put(event)
        finally:
            session.reader_wait = None
            session.unblocked.set()
            session.unblocked = None

    def _kick_writer(self) -> None:
        """Start the writer if messages are queued, none is in flight, and the
        connection is up. It runs only while there is work: an idle socket
        holds no writer task."""
        session = self._session
        outbox = self._outbox
        if (
            session is None
            or session.writing
            or not outbox.items
            or outbox.inflight is not None
            or session.tasks is None
            or session.failure is not None
            or session.scope.cancel_called
            or session.ws.closed is not None
        ):
            return
        session.writing = True
        session.tasks.start_soon(self._writer, session)

    async def _writer(self, session: _Session) -> None:
        ws = session.ws
        outbox = self._outbox
        try:
            while outbox.items and outbox.inflight is None:
                if ws.closed is not None:
                    return  # not taken: stays first in the outbox
                message = outbox.take()
                try:
                    await ws.send_message(message)
                except trio_websocket.ConnectionClosed:
                    if session.stream.broken:
                        _ended(session)  # the message stays in flight: reported lost
                    else:  # refused before writing: first on the next connection
                        outbox.requeue_inflight()
                    return
                outbox.done()
                self._counters.sent += 1
        finally:
            session.writing = False

    def _finish_inflight(self) -> None:
        if self._outbox.direct:
            return  # the task in send() settles it when its write returns
        lost = self._outbox.lose_inflight()
        if lost is not None:
            self._report_nowait((lost,), "in flight")

    async def _close_session(self, session: _Session, deadline: float) -> None:
        """Flush the outbox, close with 1000 and end the session, by ``deadline``.
        Runs in the task that called close() (or left the block), shielded."""
        session.closing = True
        if session.reader_wait is not None:
            session.reader_wait.cancel()  # let the reader see the peer's close frame
        self._set(Trigger.CLOSE)
        with trio.move_on_at(deadline):
            await self._outbox.wait_empty()
        with trio.move_on_at(deadline):
            if session.stream.torn:
                pass  # half a frame is on the wire: a close frame would be garbage
            elif session.reading:
                await session.ws.aclose(1000)
            else:  # the reader never started: read the peer's close frame here
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_drain, session.ws)
                    await session.ws.aclose(1000)
                    nursery.cancel_scope.cancel()
        session.scope.cancel()

    async def _keepalive(self, session: _Session, interval: float, patience: float) -> None:
        ws = session.ws
        stream = session.stream
        while True:
            await trio.sleep(interval)
            while True:
                stalls, bytes_in, bytes_out = session.stalls, stream.bytes_in, stream.bytes_out
                sent_at = trio.current_time()
                with trio.move_on_after(patience) as wait:
                    try:
                        await ws.ping()
                    except trio_websocket.ConnectionClosed:
                        _ended(session)
                        return
                if not wait.cancelled_caught:
                    self._counters.last_rtt = trio.current_time() - sent_at
                    break
                if stream.torn:  # the ping's write was cut mid-frame
                    session.fail(KeepaliveTimeout(patience))
                    return
                if session.unblocked is not None or session.stalls != stalls:
                    # The application is not reading events(): the socket stopped
                    # reading the network, so the pong is waiting there. That is
                    # local backpressure, not a dead peer.
                    if session.unblocked is not None:
                        await session.unblocked.wait()
                    continue
                if stream.bytes_in != bytes_in or stream.bytes_out > bytes_out + _PING_FRAME:
                    # The peer sent something, or took in more than our ping
                    # (a long upload holds the ping back): it is alive.
                    continue
                session.fail(KeepaliveTimeout(patience))
                return


class _Pusher:
    """Delivers messages from trio-websocket's reader task into the event stream
    (see ``ClientSocket._push_from``)."""

    __slots__ = ("counters", "events", "session", "sock")

    def __init__(self, sock: ClientSocket, session: _Session) -> None:
        self.sock = sock
        self.session = session
        self.events = sock._events
        self.counters = sock._counters

    def take(self, message: Message) -> MessageReceived | None:
        """Deliver ``message``; return its event if the buffer is full."""
        self.counters.received += 1
        event = MessageReceived(message)
        if self.session.closing or self.events.put_nowait(event):
            return None  # closing: what arrives now is not delivered
        return event

    async def wait(self, event: MessageReceived) -> None:
        await self.sock._stall(self.session, event)

    def on_end(self) -> None:
        _fail_lost(self.session)


def _fail_lost(session: _Session) -> None:
    """End the session: the connection is gone, for the reason it recorded."""
    session.fail(_lost(session.ws.closed, session))


def _ended(session: _Session) -> None:
    """A write or a ping found the connection closed. If the stream is broken,
    end the session with the loss now (trio-websocket's reader may never read
    again). Otherwise the peer's close frame was parsed: the reader answers it
    and reports it with the peer's code, so leave the report to the reader."""
    if session.stream.broken:
        _fail_lost(session)


async def _drain(ws: Connection) -> None:
    """Read and drop messages until the connection ends."""
    with contextlib.suppress(trio_websocket.ConnectionClosed):
        while True:
            await ws.receive_batch()


async def _in_scope(scope: trio.CancelScope, fn: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await fn()


def _handshake_failure(stream: ObservedStream) -> TransportError:
    status = stream.http_status()
    if status is not None and status != 101:
        return HandshakeRejected(status)
    if stream.bytes_in and status is None:
        return ProtocolError("the server's answer is not an HTTP response")
    return ConnectionLost(1006, "connection closed during the handshake")


def _lost(reason: trio_websocket.CloseReason | None, session: _Session) -> TransportError:
    if session.stream.closed_by_layer:
        # trio-websocket closes the stream itself only after a protocol error
        # (an invalid frame, invalid UTF-8 in a text message...).
        detail = f" ({reason.code}: {reason.reason})" if reason and reason.reason else ""
        return ProtocolError(f"the server sent an invalid frame or invalid UTF-8 text{detail}")
    if reason is None or reason.code == 1006:
        return ConnectionLost(1006, "connection dropped without a close frame")
    if reason.code == 1009 and (reason.reason or "").startswith(TOO_BIG):
        return ConnectionLost(1009, "a message exceeded max_message_size")
    if reason.code in (1002, 1007):
        # wsproto reports an invalid frame or invalid UTF-8 from the server as
        # a close with these codes, indistinguishable from the server's own.
        return ProtocolError(f"protocol error, close code {reason.code}: {reason.reason}")
    return ConnectionLost(reason.code, reason.reason, by_server=True)


def _single_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one failure a connection nursery raised, as the error to report.

    Cancellation and anything that is not an Exception propagate untouched."""
    errors, rest = group.split(Exception)
    if rest is not None or errors is None:
        return group
    leaves = _leaves(errors)
    if len(leaves) != 1:
        return TransportError(f"connection failed: {leaves!r}")
    (error,) = leaves
    if isinstance(error, trio_websocket.ConnectionRejected):
        return HandshakeRejected(error.status_code, error.body or b"")
    if type(error).__module__.partition(".")[0] in _PROTOCOL_LIBRARIES:
        # trio-websocket lets wsproto's and h11's errors escape on some
        # malformed answers (e.g. a non-HTTP reply to the handshake).
        failure = ProtocolError(f"the server broke the WebSocket protocol: {error}")
        failure.__cause__ = error
        return failure
    return error


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
