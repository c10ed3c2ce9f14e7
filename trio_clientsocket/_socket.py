"""ClientSocket: the GeneXus Client.Socket as a Trio async context manager.

The front door: it validates options and calls, owns the nursery, the outbox
and the event stream, and starts a ``Run`` (``_loop``) for each ``open()``.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Literal, Self, TypeAlias

import trio

from ._backoff import Backoff
from ._classify import Classifier, Classify
from ._compression import Deflate
from ._dial import TRANSPORTS, DialOptions, OpenStream, tcp_opener
from ._errors import (
    InvalidURLError,
    NotConnectedError,
    OutboxFullError,
    SocketClosedError,
    UndeliveredError,
)
from ._events import Message
from ._handshake import is_token
from ._loop import USER_AGENT, Config, HeadersSource, Run, Shared, UrlSource, header_pairs
from ._proxy import ProxyOption, parse_proxy
from ._queues import EventStream, Mutex, Outbox
from ._record import Recorder, RecordOption, recorder_for
from ._state import Status, Trigger
from ._stats import SocketStatistics
from ._url import Target, parse_url

__all__ = ["ClientSocket", "Overflow", "Transport"]

Overflow: TypeAlias = Literal["wait", "raise", "drop-oldest"]
"""What ``send()`` does when the outbox is full."""
Transport: TypeAlias = Literal["websockets", "wsproto", "trio-websocket"]
"""The WebSocket implementation under the socket."""

_OVERFLOWS = ("wait", "raise", "drop-oldest")
_NO_KEYS: frozenset[str] = frozenset()
_FORBIDDEN_CODES = frozenset({1004, 1005, 1006, 1015})


def _check_timeout(name: str, value: float | None, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0{' or None' if optional else ''}")


def _check_url(url: object) -> Target | None:
    """``url`` parsed when it is a str (None for a callable); InvalidURLError
    when it is neither, or not a valid URL."""
    if isinstance(url, str):
        return parse_url(url)
    if not callable(url):
        raise InvalidURLError(f"url must be a str or a callable, not {type(url).__name__}")
    return None


def _check_message(message: object) -> Message:
    """The message as sent: str or bytes, text that UTF-8 can encode."""
    if type(message) is str:
        if not message.isascii():
            try:
                message.encode()
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"message is not valid text: {exc.reason} at position {exc.start} "
                    "(a lone surrogate cannot be sent as UTF-8)"
                ) from None
        return message
    if type(message) is bytes:
        return message
    if isinstance(message, str):
        return _check_message(str(message))
    if isinstance(message, bytes | bytearray | memoryview):
        return bytes(message)
    raise TypeError(f"message must be str or bytes, not {type(message).__name__}")


def _check_close(code: object, reason: object) -> None:
    if isinstance(code, bool) or not isinstance(code, int):
        raise TypeError("close code must be an int")
    if code in _FORBIDDEN_CODES or not (1000 <= code <= 4999) or 1016 <= code <= 2999:
        raise ValueError(
            f"close code {code} may not be sent: use 1000-1003, 1007-1014, or 3000-4999"
        )
    if not isinstance(reason, str):
        raise TypeError("close reason must be a str")
    try:
        size = len(reason.encode())
    except UnicodeEncodeError:
        raise ValueError("close reason is not valid text") from None
    if size > 123:
        raise ValueError(f"close reason is {size} bytes in UTF-8; at most 123 fit in a close frame")


class ClientSocket:
    """A reconnecting WebSocket client: the GeneXus ``Client.Socket`` for Trio.

    ``async with ClientSocket(url) as sock`` opens a nursery that owns the
    connection and its tasks; with a ``url`` it starts connecting at once,
    without one it waits, ``Disconnected``, for ``open()``. Leaving the block
    flushes the outbox and closes with code 1000 (within ``close_timeout``),
    stops every task and ends the event stream. Leaving it by cancellation
    closes at once: the close frame goes if it can be written immediately, and
    what was not written is reported ``Undelivered``.

    Examples:
        >>> async def main():  # doctest: +SKIP
        ...     async with ClientSocket("ws://localhost:8080/gxwebsocket?42") as sock:
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
            Default ``Backoff()``: 1 s doubling to 30 s, jittered, forever;
            ``Backoff(max_attempts=5)`` gives up after 5 failures in a row.
        connect_timeout: seconds allowed for one attempt (the ``url`` and
            ``headers`` callables + TCP + TLS + handshake); default 10. A
            callable that hangs ends the attempt with ``ConnectTimeout``,
            retried. It is an option rather than the caller's cancel scope
            because it bounds each attempt, not the whole reconnecting life of
            the socket, which only the socket sees.
        ping_interval: seconds without a byte from the server after which a
            keepalive ping goes; None disables keepalive. Default 20.
        ping_timeout: seconds after the ping goes out within which something
            must come in, or the peer is taken for dead (``KeepaliveTimeout``);
            None disables. Default 20. Only bytes received count as a sign of
            life; time the application spends not reading ``events()`` never
            counts.
        ping_events: deliver a ``PingReceived`` event for each ping the server
            sends (answered already) and a ``PongReceived`` for each pong, with
            the round trip when it answers one of the socket's pings. They are
            connection reports: they never wait for the reader, and come in
            the order they came among the messages. Default False. Not on the
            trio-websocket transport, which does not tell its pings.
        max_message_size: largest message accepted, in bytes on the wire (after
            decompression), text and binary alike; larger ones close the
            connection with 1009. Default 1 MiB.
        ssl_context: the ``ssl.SSLContext`` for ``wss://``; default: the system
            trust store with host names checked.
        proxy_ssl: the ``ssl.SSLContext`` for an ``https://`` proxy (a proxy
            with a private CA, say); default: the system trust store with host
            names checked. ``ssl_context`` is for the server only.
        headers: extra handshake headers (mapping or pairs), or a callable
            returning them, evaluated on every attempt. Credentials in the URL
            (``ws://user:pass@host/``) are sent as ``Authorization: Basic``.
        subprotocols: subprotocols to offer, in order of preference; the one
            the server chooses is on ``Connected`` and in ``statistics()``.
        proxy: the proxy to go through: True (the default) takes it from the
            environment (``https_proxy`` for ``wss://``, ``http_proxy`` for
            ``ws://``, else ``all_proxy``, none for hosts in ``no_proxy``), a
            URL names one (``http://user:pass@host:3128``, ``https://...``,
            ``socks5://...`` or ``socks5h://...``), None goes direct. Not used
            with ``open_stream``.
        compression: permessage-deflate as offered to the server
            (``Deflate()``, the default, tuned for many idle connections), or
            None for no compression. The server decides whether it is used
            (``statistics().compressed``). Not on the trio-websocket transport.
        outbox_size: messages ``send()`` may queue while not connected; default 1000.
        overflow: what ``send()`` does when the outbox is full: ``"wait"``
            (default), ``"raise"`` ``OutboxFullError``, or ``"drop-oldest"``
            (reported by an ``Undelivered`` event).
        event_buffer: received messages buffered for ``events()``; when it is
            full the socket stops reading the network (backpressure). Default 256.
        buffer_bytes: bytes of received messages buffered for ``events()``
            (the same backpressure); default 8 MiB. The buffer never holds
            more, and the socket parses the server's bytes only while a message
            of ``max_message_size`` still fits in it: at most ``buffer_bytes +
            max_message_size`` of received data is held, compressed or not.
        close_timeout: seconds ``close()`` and leaving the block may take to
            flush the outbox and close; default 3.
        classify: decides which failures are retried; default ``Classifier()``.
        open_stream: async callable opening the byte stream for a URL; the seam
            for ``trio_clientsocket.testing``. Default: TCP, plus TLS for wss://.
        transport: ``"websockets"`` (default: websockets' sans-I/O protocol,
            driven by the socket), ``"wsproto"`` (wsproto, driven the same way)
            or ``"trio-websocket"`` (trio-websocket's connection, through its
            public API; see the comparison page for what it lacks).
        visible_query_keys: query parameters whose values may appear in the
            socket's repr, events and log records; every other ``key=value``
            value shows as ``***`` (the GeneXus client id, a bare token, always shows).
        connect_limiter: a ``trio.CapacityLimiter`` shared by many sockets to
            bound how many attempts run at once (TCP + TLS + handshake), so that
            thousands of sockets in one process reconnecting together do not
            each time out waiting for the CPU. ``connect_timeout`` counts from
            when the attempt gets its slot.
        record: write a transcript of every connection to this path (created,
            or truncated, at once; closed when the block exits) or writable text
            file, or through a ``trio_clientsocket.testing.Recorder``: each
            attempt and how it ended, the handshake, every message both ways
            with its time, pings, closes with code and reason, and how each
            connection ended, as JSON lines, secrets redacted, bounded in size.
            ``trio_clientsocket.testing.open_replay_server`` replays it on the
            mock clock (see the record-replay page).
    """

    def __init__(
        self,
        url: UrlSource | None = None,
        *,
        reconnect: Backoff | None = Backoff(),  # noqa: B008 - frozen, shared safely
        connect_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        ping_events: bool = False,
        max_message_size: int = 2**20,
        ssl_context: ssl.SSLContext | None = None,
        proxy_ssl: ssl.SSLContext | None = None,
        headers: HeadersSource | None = None,
        subprotocols: Sequence[str] = (),
        compression: Deflate | None = Deflate(),  # noqa: B008 - frozen, shared safely
        proxy: ProxyOption = True,
        outbox_size: int = 1000,
        overflow: Overflow = "wait",
        event_buffer: int = 256,
        buffer_bytes: int = 8 * 2**20,
        close_timeout: float = 3.0,
        classify: Classify | None = None,
        open_stream: OpenStream | None = None,
        transport: Transport = "websockets",
        visible_query_keys: Iterable[str] = (),
        connect_limiter: trio.CapacityLimiter | None = None,
        record: RecordOption = None,
    ) -> None:
        target = _check_url(url) if url is not None else None
        # the last str URL checked, and what it parsed to (the run reuses it)
        self._parsed = (url, target) if isinstance(url, str) and target is not None else None
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
            ("buffer_bytes", buffer_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        if type(ping_events) is not bool:
            raise TypeError("ping_events must be True or False")
        if ping_events and transport == "trio-websocket":
            raise ValueError(
                "ping_events is not available on transport='trio-websocket', which does "
                "not tell the pings and pongs it receives: use 'websockets' or 'wsproto'"
            )
        if overflow not in _OVERFLOWS:
            raise ValueError(f"overflow must be one of {_OVERFLOWS}, got {overflow!r}")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError("ssl_context must be an ssl.SSLContext")
        if proxy_ssl is not None and not isinstance(proxy_ssl, ssl.SSLContext):
            raise TypeError("proxy_ssl must be an ssl.SSLContext")
        if headers is not None and not callable(headers):
            header_pairs(headers)
        if isinstance(subprotocols, str) or not all(
            isinstance(p, str) and is_token(p) for p in subprotocols
        ):
            raise ValueError("subprotocols must be a sequence of tokens (str without , or spaces)")
        if compression is not None and not isinstance(compression, Deflate):
            raise TypeError("compression must be a Deflate or None")
        if isinstance(proxy, str):
            parse_proxy(proxy)
        elif proxy not in (True, False, None):
            raise TypeError("proxy must be a proxy URL, True (from the environment) or None")
        if connect_limiter is not None and not isinstance(connect_limiter, trio.CapacityLimiter):
            raise TypeError("connect_limiter must be a trio.CapacityLimiter")
        self._url = url
        self._overflow = overflow
        self._close_timeout = close_timeout
        self._visible_keys = frozenset(visible_query_keys) if visible_query_keys else _NO_KEYS
        # last: a file it opens is closed when the block exits
        recorder, owned = recorder_for(record, self._visible_keys)
        self._owned_recorder: Recorder | None = recorder if owned else None
        if open_stream is None:
            open_stream = tcp_opener(ssl_context, proxy, USER_AGENT, proxy_ssl)
        self._config = Config(
            reconnect=reconnect,
            connect_timeout=connect_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            ping_events=ping_events,
            classify=classify if classify is not None else Classifier(),
            dial=DialOptions(
                transport=transport,
                max_size=max_message_size,
                open_stream=recorder._wrap(open_stream) if recorder is not None else open_stream,
                subprotocols=tuple(subprotocols),
                compression=compression,
            ),
            headers=headers,
            visible_keys=self._visible_keys,
            connect_limiter=connect_limiter,
        )
        self._outbox = Outbox(outbox_size)
        self._events = EventStream(
            event_buffer, buffer_bytes, outbox_size + event_buffer, max_message_size
        )
        self._shared = Shared(self._outbox, self._events)
        self._run: Run | None = None  # the run send() queues for
        self._last: Run | None = None  # the current or last run, for url and repr
        self._stopping: list[Run] = []  # runs being stopped by some task
        self._closes = 0  # close() calls so far
        self._control = Mutex()
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: contextlib.AbstractAsyncContextManager[trio.Nursery] | None = None
        self._entered = False
        self._exited = False

    # -- context management --------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            raise RuntimeError(
                "ClientSocket needs Trio: run it under trio.run() (with anyio, use its "
                "trio backend)"
            ) from None
        if self._entered:
            raise RuntimeError("a ClientSocket can be entered only once")
        self._entered = True
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        try:
            if self._url is not None:
                await self.open()  # the URL was checked by the constructor
        except BaseException as exc:
            self._exited = True
            self._nursery.cancel_scope.cancel()
            try:
                await self._nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            finally:
                self._events._close()
                if self._owned_recorder is not None:
                    self._owned_recorder.close()
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
            if not isinstance(exc, trio.Cancelled):
                async with self._control:  # after any close() under way
                    await self._stop(1000, "")
        finally:
            self._exited = True
            # Cancelled (the block, or here): whatever is still open ends now.
            with trio.CancelScope(shield=True):
                await self._abort()
            self._nursery.cancel_scope.cancel()
            try:
                # The nursery only ever sees its own tasks: the block's exception
                # (or Cancelled) propagates as it is, never wrapped in a group.
                await self._nursery_manager.__aexit__(None, None, None)
            finally:
                self._events._close()
                if self._owned_recorder is not None:
                    self._owned_recorder.close()
        return None

    # -- public API ----------------------------------------------------------

    @property
    def status(self) -> Status:
        """``Status.CONNECTED`` exactly while a handshake-completed connection is up.

        Examples:
            >>> ClientSocket().status
            <Status.DISCONNECTED: 'Disconnected'>
        """
        return self._shared.machine.status

    @property
    def url(self) -> str | None:
        """The URL of the current (or last) attempt, for display: a password and
        query values are shown as ``***``. None before any attempt.

        Examples:
            >>> ClientSocket().url is None
            True
        """
        run = self._last
        return run.shown_url if run is not None else None

    @property
    def raw_url(self) -> str | None:
        """The URL of the current (or last) attempt as it is, secrets included.

        Examples:
            >>> ClientSocket().raw_url is None
            True
        """
        run = self._last
        return run.url if run is not None else None

    @property
    def is_open(self) -> bool:
        """True between ``open()`` and ``close()`` (or giving up): ``send()`` queues.

        Examples:
            >>> ClientSocket().is_open
            False
        """
        run = self._run
        return run is not None and not run.closing

    def events(self) -> EventStream:
        """The event stream: every event since the socket was entered, in order,
        as a ``trio.abc.ReceiveChannel`` of ``SocketEvent``.

        It is one stream for the life of the socket: breaking out of
        ``async for`` and iterating again resumes where it stopped. Iteration
        ends once the socket is closed (``close()``, giving up, or leaving the
        block) and its last events were read; after ``open()`` it can be
        iterated again.

        Examples:
            >>> async def consume(sock):  # doctest: +SKIP
            ...     async for event in sock.events():
            ...         print(event)
        """
        return self._events

    def _check_usable(self) -> trio.Nursery:
        if self._exited:
            raise SocketClosedError(
                "the socket's 'async with' block has exited: create a new ClientSocket"
            )
        if self._nursery is None:
            raise RuntimeError(
                "enter the socket first: 'async with ClientSocket(url) as sock:' "
                "(it opens url on entry; open() switches to another one)"
            )
        return self._nursery

    async def open(self, url: UrlSource | None = None) -> None:
        """Connect to ``url`` (default: the URL given before), closing the current
        connection first, cleanly with 1000. Returns at once; ``Connected`` or
        ``ConnectionFailed`` tell how it went (or ``await wait_connected()``).

        Raises:
            InvalidURLError: ``url`` is not a valid ws:// or wss:// URL.
            SocketClosedError: no URL was ever given, or the block has exited.

        Examples:
            >>> async def switch(sock):  # doctest: +SKIP
            ...     await sock.open("ws://other-server:8080/chat")
        """
        nursery = self._check_usable()
        if url is None:
            url = self._url
            if url is None:
                raise SocketClosedError("no URL to open: pass one to open() or ClientSocket()")
        else:
            target = _check_url(url)
            if isinstance(url, str) and target is not None:
                self._parsed = (url, target)
        closes = self._closes
        async with self._control:
            await self._stop(1000, "")
            self._check_usable()
            if self._closes != closes:
                return  # a close() came after this open(): it wins
            self._url = url
            self._outbox.lost = None  # wait_sent() counts losses from here
            self._events._reopen()
            run = Run(url, self._config, self._shared, self._parsed)
            self._parsed = None  # the run has it
            self._run = self._last = run
            self._shared.fire(Trigger.OPEN)
            nursery.start_soon(run.run, name="trio_clientsocket run")
            # The first attempt is under way when open() returns (shielded: a
            # cancelled open() has opened all the same, and the socket's exit
            # stops the run).
            await run.started.wait_shielded()

    async def close(self, code: int = 1000, reason: str = "") -> tuple[Message, ...]:
        """Flush the outbox and close the connection with ``code`` and
        ``reason`` (both within ``close_timeout``), and stop reconnecting.
        Status is DISCONNECTED on return; ``open()`` works again. Idempotent.
        Cancelled, it still closes, at once. Messages the server sends before
        its answer to the close frame are delivered while the event buffer has
        room (the close never waits for the application); those that find it
        full are dropped, and only those delivered count in
        ``statistics().messages_received`` (the trio-websocket transport
        delivers none of them).

        Raises:
            ValueError: a code an endpoint may not send (1005, 1006, 1015, or
                outside 1000-4999), or a reason over 123 UTF-8 bytes.

        Returns:
            The messages that could not be written (also reported by an
            ``Undelivered`` event).

        Examples:
            >>> async def leave(sock):  # doctest: +SKIP
            ...     unsent = await sock.close()
            ...     assert sock.status is Status.DISCONNECTED
        """
        _check_close(code, reason)
        if self._exited:
            await trio.lowlevel.checkpoint()
            return ()
        self._closes += 1  # an open() waiting for the lock will not open after this
        locked = False
        try:
            async with self._control:
                locked = True
                return await self._stop(code, reason)
        finally:
            if not locked:
                # cancelled while another call held the lock: close all the same, at once
                with trio.CancelScope(shield=True):
                    await self._abort()

    async def send(self, message: Message) -> None:
        """Send ``message`` (``str``: text frame, ``bytes``: binary frame), in
        order. While connecting or reconnecting, or behind other messages, it
        waits in the outbox and is written as soon as a connection is up; when
        the outbox is full, ``send()`` waits, raises or drops the oldest, as
        ``overflow`` says. On a connected, idle socket, a message of up to 64 KiB
        is written by the calling task itself (no task switch), and ``send()``
        returns once it is written.

        Cancelled before it is written or queued, the message is not sent.
        Cancelled part-way through writing it (the network would not take the
        whole frame), the connection cannot carry another message: it ends and
        reconnects, and the message is reported ``Undelivered`` ("in flight").

        Raises:
            SocketClosedError: the socket is not open (no URL, closed, gave up,
                or the block has exited).
            OutboxFullError: the outbox is full and ``overflow="raise"``.
            TypeError: ``message`` is neither str nor bytes.
            ValueError: ``message`` is a str that UTF-8 cannot encode (a lone
                surrogate); nothing is queued.

        Examples:
            >>> async def chat(sock):  # doctest: +SKIP
            ...     await sock.send("hello")
            ...     await sock.send(b"\\x00\\x01")
        """
        if type(message) is not str or not message.isascii():
            message = _check_message(message)
        run = self._run
        if run is not None:
            session = run.session
            if session is not None and session.can_send_now(message) and not run.closing:
                await session.send_now(message)
                return
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled: nothing queued
        while not self._try_put(message, may_wait=self._overflow == "wait"):
            await self._outbox.wait_changed()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def send_nowait(self, message: Message) -> None:
        """Like ``send()``, but raise ``OutboxFullError`` instead of waiting.

        Examples:
            >>> async def fire_and_forget(sock):  # doctest: +SKIP
            ...     sock.send_nowait("ping")
        """
        self._try_put(_check_message(message), may_wait=False)

    async def wait_connected(self) -> None:
        """Wait until status is CONNECTED.

        Raises:
            SocketClosedError: the socket closed or gave up first.

        Examples:
            >>> async def ready(sock):  # doctest: +SKIP
            ...     with trio.fail_after(10):
            ...         await sock.wait_connected()
        """
        await trio.lowlevel.checkpoint()  # first: no yield between the check and the return
        while self.status is not Status.CONNECTED or self._ending():
            if not self.is_open:
                raise SocketClosedError("the socket is closed")
            await self._shared.wait_changed()

    def _ending(self) -> bool:
        """The connection has ended (or its link has, before the session came to
        it), and status says so once it is torn down (a few scheduler steps
        later): not connected for ``wait_connected``."""
        run = self._run
        session = run.session if run is not None else None
        return session is None or session.ended or session.link.over

    async def wait_sent(self) -> None:
        """Wait until every message passed to ``send()`` before this call (since
        the last ``open()``) has been written to a connection.

        Raises:
            SocketClosedError: some of them will never be written: the socket
                closed or gave up first (they are reported ``Undelivered``).
            OutboxFullError: some of them were dropped by
                ``overflow="drop-oldest"``.
            UndeliveredError: one was being written when the connection ended
                (reported ``Undelivered(reason="in flight")``).

        Examples:
            >>> async def send_and_leave(sock):  # doctest: +SKIP
            ...     await sock.send("bye")
            ...     await sock.wait_sent()
        """
        lost = await self._outbox.wait_settled()
        if lost == "dropped":
            raise OutboxFullError("some messages were dropped by overflow='drop-oldest'")
        if lost == "in flight":
            raise UndeliveredError(
                "a message was being written when the connection ended (it may or may not "
                "have arrived): see its Undelivered event"
            )
        if lost is not None:
            raise SocketClosedError(f"the socket {lost} before some messages were written")
        await trio.lowlevel.checkpoint()

    async def ping(self) -> float:
        """Ping the server now and wait for its pong: the round trip, in
        seconds. The ping goes ahead of messages waiting in the outbox. It
        waits as long as the answer takes: bound it with ``trio.fail_after``
        (the keepalive, ``ping_interval``, still judges whether the server is
        alive). ``statistics().last_rtt`` shows the result too. While the event
        buffer is full the socket reads nothing, the pong included: the round
        trip then counts the time the application took to read.

        Raises:
            NotConnectedError: the socket is not connected (connecting,
                reconnecting, closing or closed), or the connection ended
                before the answer came.

        Examples:
            >>> async def latency(sock):  # doctest: +SKIP
            ...     with trio.fail_after(5):
            ...         rtt = await sock.ping()
            ...     print(f"{rtt * 1000:.1f} ms")
        """
        run = self._run
        session = run.session if run is not None else None
        if session is None or run is None or run.closing:
            await trio.lowlevel.checkpoint()
            raise NotConnectedError(
                "the socket is not connected: ping() needs a connection "
                "(wait_connected() waits for one)"
            )
        return await session.ping()

    def statistics(self) -> SocketStatistics:
        """A frozen snapshot of the socket's state and counters.

        Examples:
            >>> ClientSocket().statistics().attempts
            0
        """
        shared = self._shared
        c = shared.counters
        bytes_in, bytes_out, rtt = c.bytes_received, c.bytes_sent, c.last_rtt
        run = self._last
        session = run.session if run is not None else None
        if session is not None:
            bytes_in += session.link.bytes_in
            bytes_out += session.link.bytes_out
            rtt = session.link.rtt if session.link.rtt is not None else rtt
        return SocketStatistics(
            state=shared.machine.state,
            status=self.status,
            attempts=c.attempts,
            reconnects=c.reconnects,
            consecutive_failures=c.failures,
            messages_sent=c.sent,
            messages_received=c.received,
            messages_dropped=c.dropped,
            events_dropped=self._events._dropped,
            events_buffered=len(self._events),
            bytes_sent=bytes_out,
            bytes_received=bytes_in,
            outbox_depth=len(self._outbox),
            subprotocol=c.subprotocol,
            compressed=c.compressed,
            last_error=c.last_error,
            last_rtt=rtt,
        )

    def __repr__(self) -> str:
        url = self.url
        return f"<ClientSocket {self.status.value}{' ' + url if url else ''}>"

    # -- sending -------------------------------------------------------------

    def _try_put(self, message: Message, *, may_wait: bool) -> bool:
        run = self._run
        if run is None or run.closing:
            if self._exited:
                raise SocketClosedError(
                    "the socket's 'async with' block has exited: create a new ClientSocket"
                )
            if not self._entered:
                raise SocketClosedError(
                    "enter the socket first: 'async with ClientSocket(url) as sock:' "
                    "connects to url on entry"
                )
            raise SocketClosedError(
                "the socket is not open: it was closed or gave up (open() opens it again), "
                "or it was entered without a URL (pass one to open())"
            )
        outbox = self._outbox
        if outbox.full:
            if self._overflow == "drop-oldest":
                dropped = outbox.drop_oldest()
                self._shared.report_undelivered((dropped,), "dropped")
            elif may_wait:
                return False
            else:
                raise OutboxFullError(f"outbox is full ({outbox.capacity} messages)")
        outbox.append(message)
        session = run.session
        if session is not None:
            session.kick()
        return True

    # -- stopping ------------------------------------------------------------

    async def _stop(self, code: int, reason: str) -> tuple[Message, ...]:
        """End the current run: flush the outbox and close with ``code``,
        within ``close_timeout``; at once if cancelled. Always called with
        ``self._control`` held."""
        run = self._run
        self._run = None  # send() raises from here on
        if run is None:
            return ()
        self._stopping.append(run)
        unsent: tuple[Message, ...] = ()
        try:
            await run.stop(code, reason, trio.current_time() + self._close_timeout)
        finally:
            self._stopping.remove(run)
            unsent = self._report_closed(run)
        return unsent

    def _report_closed(self, run: Run) -> tuple[Message, ...]:
        unsent = self._outbox.drain("closed")
        self._shared.report_undelivered(unsent, "closed")
        if not run.gave_up:
            self._events._put_report(run.closed_event())
        self._events._end_run()
        return unsent

    async def _abort(self) -> None:
        """End every run at once (shielded by the caller)."""
        for stopping in list(self._stopping):
            await stopping.abort()
        run = self._run
        if run is not None:
            self._run = None
            await run.abort()
            self._report_closed(run)
