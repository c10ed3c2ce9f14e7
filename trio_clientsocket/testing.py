"""Test your application's socket code in milliseconds: an in-memory WebSocket
server that speaks the GeneXus notification protocol, with fault injection.

Wire a ``ClientSocket`` to it with its ``open_stream`` option, no network and
no monkeypatching, and run the test on trio's ``MockClock`` (pytest-trio's
``autojump_clock`` fixture): backoff waits, keepalive timeouts and outages of
minutes take no wall time.

Examples:
    >>> async def test_echo(autojump_clock):  # doctest: +SKIP
    ...     async with open_mock_server(echo=True) as server:
    ...         async with ClientSocket("ws://app/gxwebsocket?me",
    ...                                 open_stream=server.open_stream) as sock:
    ...             await sock.send("hi")
    ...             ...

The same server also listens on a real TCP port with ``await
server.listen_tcp()``, with the same fault controls.

Record and replay: ``Recorder`` (or ``ClientSocket(record=path)``) writes a
transcript of real traffic; ``open_replay_server(path)`` plays it back as an
in-memory server on the mock clock and reports a ``ReplayDivergence`` when the
application's messages differ from the recorded ones.
"""

from __future__ import annotations

import errno
import ssl
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import attrs
import trio
import trio.testing
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
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import ProtocolError

from ._events import Message
from ._genexus import NotificationInfo
from ._loop import UrlSource
from ._record import Recorder
from ._replay import ReplayDivergence, ReplayServer, open_replay_server
from ._socket import ClientSocket

__all__ = [
    "DEFAULT_URL",
    "ConnectionHandler",
    "ErrorHandler",
    "Handler",
    "MockServer",
    "Recorder",
    "ReplayDivergence",
    "ReplayServer",
    "ServerConnection",
    "open_mock_server",
    "open_replay_server",
]

Handler = Callable[["MockServer", "ServerConnection", NotificationInfo], Awaitable[None]]
"""A GeneXus RECEIVED_HANDLER: ``async def received(server, connection, info)``."""
ConnectionHandler = Callable[["MockServer", "ServerConnection"], Awaitable[None]]
"""A GeneXus ONOPEN_HANDLER / ONCLOSE_HANDLER: ``async def opened(server, connection)``."""
ErrorHandler = Callable[["MockServer", "ServerConnection", str], Awaitable[None]]
"""A GeneXus ONERROR_HANDLER: ``async def error(server, connection, message)``."""

DEFAULT_URL = "ws://mock.test/app/gxwebsocket?test-client"
"""The URL ``MockServer.client()`` uses when given none."""


def _announce(
    owner: MockServer | ServerConnection, attribute: object = None, value: Any = None
) -> Any:
    """Wake every ``MockServer.wait_for``: what ``owner`` records has changed.

    The one place changes are announced. What the server records changes only
    by assignment (a list grows by ``+=``, which assigns it again), and every
    assignment comes here: ServerConnection's attrs ``on_setattr`` hook,
    ``MockServer.__setattr__``; and so does the end of a handler, whose effects
    a test may wait for. Returns ``value``, as an ``on_setattr`` hook must.
    """
    if owner._changed is not None:
        owner._changed.unpark_all()
    return value


_PROTOCOL_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)
"""What the WebSocket handshake itself sends: not in ``ServerConnection.headers``."""


@attrs.define(eq=False, on_setattr=_announce)
class ServerConnection:
    """One client connection as the server saw it: recorded for assertions.
    The server creates them (``MockServer.connections``); ``send``, ``close``,
    ``drop`` and ``send_raw`` act on the connection and must be awaited.

    Examples:
        >>> async def test_close_code(mock_server, autojump_clock):  # doctest: +SKIP
        ...     async with mock_server.client() as sock:
        ...         connection = await mock_server.wait_connections(1)
        ...     assert connection.close_code == 1000
    """

    path: str
    """The request target, query included, e.g. ``/app/gxwebsocket?abc``."""
    client_id: str | None
    """The GeneXus client id: the raw query string (None when there is none)."""
    headers: dict[str, str]
    """The handshake request's own headers (not the WebSocket protocol's:
    Upgrade, Sec-WebSocket-Key...), names in lower case."""
    opened_at: float
    """``trio.current_time()`` when the handshake completed."""
    received: list[Message] = attrs.field(factory=list)
    """Every message the client sent on this connection, in order."""
    pings: int = 0
    """Pings received from the client."""
    close_code: int | None = None
    """The close code (an ``int``) of the client's close frame, or of its
    answer to the server's; None while open, and after a drop (no close frame)."""
    closed_at: float | None = None
    """``trio.current_time()`` when the connection ended."""
    _stream: trio.abc.Stream | None = attrs.field(default=None, repr=False, init=False)
    _ws: WSConnection | None = attrs.field(default=None, repr=False, init=False)
    _lock: trio.Lock = attrs.field(factory=trio.Lock, repr=False, init=False)
    _changed: trio.lowlevel.ParkingLot | None = attrs.field(default=None, repr=False, init=False)
    """The server's: where an assignment to this connection is announced."""

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    async def send(self, message: Message) -> None:
        """Send one message to this client (ignored if it is gone)."""
        if isinstance(message, str):
            await self._write(TextMessage(data=message))
        else:
            await self._write(BytesMessage(data=message))

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` to the wire as it is: for malformed or partial frames."""
        if self._stream is not None:
            async with self._lock:
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._stream.send_all(data)

    async def ping(self, payload: bytes = b"") -> None:
        """Send a ping to this client (its pong is not waited for)."""
        await self._write(Ping(payload=payload))

    async def pong(self, payload: bytes = b"") -> None:
        """Send a pong this client did not ask for."""
        await self._write(Pong(payload=payload))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close this connection with a close frame."""
        await self._write(CloseConnection(code=code, reason=reason))

    async def drop(self) -> None:
        """End this connection abruptly: no close frame, just the stream closed."""
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)

    async def _write(
        self, event: TextMessage | BytesMessage | CloseConnection | Ping | Pong
    ) -> None:
        ws, stream = self._ws, self._stream
        if ws is None or stream is None or ws.state is not ConnectionState.OPEN:
            return
        async with self._lock:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(ws.send(event))


@attrs.define(eq=False)
class _Fault:
    kind: str
    count: int
    status: int = 0
    code: int = 1000
    reason: str = ""
    delay: float = 0.0


class MockServer:
    """A scriptable WebSocket server for tests. Create it with ``open_mock_server``.

    Behaviour: every message a client sends is recorded (``received``,
    ``connections[i].received``); with ``echo=True`` it is sent back unchanged;
    with a ``received`` handler it is wrapped as a GeneXus ``NotificationInfo``
    whose ``Message`` is the text and passed to it, as a GeneXus server does.
    With ``endpoint="gxwebsocket"`` it accepts only ``.../gxwebsocket?<id>`` (and
    ``gxwebsocket.svc``), answering 404 to other paths and 400 without an id.
    The other GeneXus hooks: ``opened(server, connection)`` after a handshake,
    ``closed(server, connection)`` when a connection ends, ``error(server,
    connection, message)`` when it ends on a broken stream or protocol error.
    GeneXus ``Broadcast`` is ``broadcast()``, ``NotifyClient(id, ...)`` is
    ``notify(id, ...)``, and ``Notify`` (to the client of the current request)
    is ``connection.send(...)`` inside a handler.

    Faults (plain calls; each applies to the next connection attempts, in the
    order given): ``refuse(n)``, ``reject(status, n)``, ``redirect(location,
    n)``, ``accept_then_close(code, n)``, ``delay_handshake(seconds, n)``,
    ``stall()``/``resume()``. Actions on live connections, to be awaited:
    ``close_all()``, ``drop_all()``, ``stop()``/``start()``/``restart()``,
    ``broadcast()``, ``notify()``.

    A handler's ``info`` is the client's text wrapped as a GeneXus server
    wraps it: ``info.message`` is the text, ``info.id`` and ``info.object`` are
    empty (a client sends no envelope).

    Attributes:
        connections: every connection that completed the handshake, in order
            (``ServerConnection``).
        attempts: connection attempts seen, refused ones included.
        rejected: the HTTP statuses answered to handshakes that were not
            accepted (rejections and redirects).
        subprotocols: the subprotocols it speaks (it picks the first of the
            client's offer among them).
        accept_headers: extra headers of its 101 answer.
        compression: accept permessage-deflate when offered.
        up: False between ``stop()`` and ``start()``.

    Examples:
        >>> async def test_refused_twice(autojump_clock):  # doctest: +SKIP
        ...     async with open_mock_server() as server:
        ...         server.refuse(2)
        ...         async with server.client() as sock:
        ...             await sock.wait_connected()
        ...     assert server.attempts == 3
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        echo: bool = False,
        received: Handler | None = None,
        opened: ConnectionHandler | None = None,
        closed: ConnectionHandler | None = None,
        error: ErrorHandler | None = None,
        endpoint: str | None = None,
    ) -> None:
        self._changed = trio.lowlevel.ParkingLot()  # first: every assignment announces
        self._nursery = nursery
        self.endpoint = endpoint
        self.echo = echo
        self.received_handler = received
        self.opened_handler = opened
        self.closed_handler = closed
        self.error_handler = error
        self.connections: list[ServerConnection] = []
        """Every connection that completed the handshake, in order."""
        self.attempts = 0
        """Connection attempts seen (refused ones included)."""
        self.rejected: list[int] = []
        """HTTP statuses sent to rejected handshakes (redirects included)."""
        self.subprotocols: tuple[str, ...] = ()
        """Subprotocols the server speaks: it chooses the first of the client's
        offer that is among them."""
        self.accept_headers: list[tuple[str, str]] = []
        """Extra headers of the server's 101 answer (a ``Set-Cookie``, say)."""
        self.compression = False
        """Accept permessage-deflate when the client offers it."""
        self.up = True
        self._faults: deque[_Fault] = deque()
        self._stalled = False
        self._resumed = trio.Event()
        self._listeners: list[trio.SocketListener] = []
        self._tcp_scope: trio.CancelScope | None = None
        self._tcp_port: int | None = None
        self._tcp_host = "127.0.0.1"
        self._tcp_ssl: ssl.SSLContext | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if not name.startswith("_"):  # what it records (attempts, up...): a change
            _announce(self)

    # -- what was recorded ---------------------------------------------------

    @property
    def received(self) -> list[Message]:
        """Every message received from any client, in arrival order per connection,
        connections in the order they were opened."""
        return [m for c in self.connections for m in c.received]

    @property
    def open_connections(self) -> list[ServerConnection]:
        return [c for c in self.connections if c.is_open]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds. It is checked again at every change
        the server records (an attempt, refused or not, a rejection, a
        connection, a message, a ping, a close, ``up``) and when a handler
        returns.

        Examples:
            >>> async def two_messages(server):  # doctest: +SKIP
            ...     await server.wait_for(lambda: len(server.received) >= 2)
        """
        while not predicate():
            await self._changed.park()

    async def wait_connections(self, count: int) -> ServerConnection:
        """Wait until ``count`` connections have been accepted; return the last."""
        await self.wait_for(lambda: len(self.connections) >= count)
        return self.connections[count - 1]

    # -- faults ----------------------------------------------------------------

    def refuse(self, count: int = 1) -> None:
        """Refuse the next ``count`` connections (ECONNREFUSED)."""
        self._faults.append(_Fault("refuse", count))

    def reject(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` handshakes with HTTP ``status``."""
        self._faults.append(_Fault("reject", count, status=status))

    def accept_then_close(self, code: int = 1000, count: int = 1, reason: str = "") -> None:
        """Complete the next ``count`` handshakes, then close at once with ``code``."""
        self._faults.append(_Fault("accept_then_close", count, code=code, reason=reason))

    def redirect(self, location: str, count: int = 1, status: int = 302) -> None:
        """Answer the next ``count`` handshakes with a redirect to ``location``
        (HTTP ``status``: 301, 302, 303, 307 or 308).

        Examples:
            >>> server.redirect("ws://mock.test/elsewhere/gxwebsocket?id")  # doctest: +SKIP
        """
        self._faults.append(_Fault("redirect", count, status=status, reason=location))

    def delay_handshake(self, seconds: float, count: int = 1) -> None:
        """Wait ``seconds`` before answering the next ``count`` handshakes."""
        self._faults.append(_Fault("delay", count, delay=seconds))

    def stall(self) -> None:
        """Stop reading from every connection: no messages, no pongs, no close
        replies (a frozen process), until ``resume()``. New connections are
        accepted at the TCP level but their handshakes wait too."""
        self._stalled = True

    def resume(self) -> None:
        """Read again after ``stall()``: what waited is read now, in order."""
        self._stalled = False
        self._resumed.set()
        self._resumed = trio.Event()

    async def close_all(self, code: int = 1001, reason: str = "") -> None:
        """Close every open connection with a close frame."""
        for connection in self.open_connections:
            await connection.close(code, reason)

    async def drop_all(self) -> None:
        """Drop every open connection abruptly (no close frame)."""
        for connection in self.open_connections:
            await connection.drop()

    async def stop(self) -> None:
        """Go down: drop every connection, refuse new ones (and stop listening on TCP)."""
        self.up = False
        if self._tcp_scope is not None:
            self._tcp_scope.cancel()
            self._tcp_scope = None
        await self.drop_all()

    async def start(self) -> None:
        """Come back up (on the same TCP port, if listening)."""
        self.up = True
        if self._tcp_port is not None:
            await self.listen_tcp(self._tcp_host, self._tcp_port, ssl_context=self._tcp_ssl)

    async def restart(self) -> None:
        """``stop()`` then ``start()``: every connection dropped, then accepting again."""
        await self.stop()
        await self.start()

    # -- sending ---------------------------------------------------------------

    async def broadcast(self, message: Message | NotificationInfo) -> None:
        """Send to every open connection (a NotificationInfo as its JSON)."""
        text = message.to_json() if isinstance(message, NotificationInfo) else message
        for connection in self.open_connections:
            await connection.send(text)

    async def notify(self, client_id: str, message: Message | NotificationInfo) -> int:
        """Send to every open connection of ``client_id``; return how many got it
        (GeneXus: one client id may hold several sockets)."""
        text = message.to_json() if isinstance(message, NotificationInfo) else message
        targets = [c for c in self.open_connections if c.client_id == client_id]
        for connection in targets:
            await connection.send(text)
        return len(targets)

    def client(self, url: UrlSource | None = None, **options: Any) -> ClientSocket:
        """A ``ClientSocket`` wired to this server in memory (not yet entered).

        ``url`` defaults to ``DEFAULT_URL`` (client id ``test-client``); the
        options are ClientSocket's.

        Examples:
            >>> async def test_hello(autojump_clock):  # doctest: +SKIP
            ...     async with open_mock_server(echo=True) as server:
            ...         async with server.client() as sock:
            ...             await sock.send("hello")
        """
        return ClientSocket(
            DEFAULT_URL if url is None else url, open_stream=self.open_stream, **options
        )

    # -- transports ------------------------------------------------------------

    async def open_stream(self, url: str) -> trio.abc.Stream:
        """The ``open_stream`` option of ``ClientSocket``: connect in memory.

        Examples:
            >>> ClientSocket(url, open_stream=server.open_stream)  # doctest: +SKIP
        """
        self.attempts += 1
        fault = self._take_fault("refuse")
        if not self.up or fault is not None:
            raise OSError(errno.ECONNREFUSED, "connection refused by the mock server")
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._serve_stream, server)
        await trio.lowlevel.checkpoint()
        return client

    async def listen_tcp(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> int:
        """Also listen on a real TCP port (127.0.0.1 by default); return the port.
        With ``ssl_context`` (a server context) it speaks TLS: ``wss://``."""
        self._tcp_host = host
        self._tcp_ssl = ssl_context
        listeners = await trio.open_tcp_listeners(port, host=host)
        self._tcp_port = listeners[0].socket.getsockname()[1]
        self._tcp_scope = trio.CancelScope()
        await self._nursery.start(self._serve_tcp, listeners, self._tcp_scope)
        return self._tcp_port

    async def _serve_tcp(
        self,
        listeners: list[trio.SocketListener],
        scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[None],
    ) -> None:
        with scope:
            try:
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    for listener in listeners:
                        nursery.start_soon(self._accept_loop, listener)
            finally:
                for listener in listeners:
                    await trio.aclose_forcefully(listener)

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        while True:
            tcp = await listener.accept()
            self.attempts += 1
            if self._take_fault("refuse") is not None:
                await trio.aclose_forcefully(tcp)  # closest TCP gets to a refusal here
                continue
            stream: trio.abc.Stream = tcp
            if self._tcp_ssl is not None:
                stream = trio.SSLStream(tcp, self._tcp_ssl, server_side=True)
            self._nursery.start_soon(self._serve_stream, stream)

    # -- the protocol ----------------------------------------------------------

    def _take_fault(self, *kinds: str) -> _Fault | None:
        if self._faults and self._faults[0].kind in kinds:
            fault = self._faults[0]
            fault.count -= 1
            if fault.count <= 0:
                self._faults.popleft()
            return fault
        return None

    async def _receive(self, stream: trio.abc.Stream) -> bytes:
        data = bytes(await stream.receive_some(65536))
        while self._stalled:  # frozen: what arrived is not looked at until resume()
            await self._resumed.wait()
        return data

    async def _serve_stream(self, stream: trio.abc.Stream) -> None:
        try:
            await self._serve_websocket(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError, ssl.SSLError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve_websocket(self, stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        request: Request | None = None
        while request is None:
            data = await self._receive(stream)
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    request = event
        fault = self._take_fault("delay")
        if fault is not None:
            await trio.sleep(fault.delay)
        fault = self._take_fault("reject", "redirect")
        status = fault.status if fault is not None else self._check_request(request.target)
        if status is not None:
            self.rejected += [status]
            headers = []
            if fault is not None and fault.kind == "redirect":
                headers.append((b"location", fault.reason.encode()))
            await stream.send_all(
                ws.send(RejectConnection(status_code=status, headers=headers, has_body=False))
            )
            return
        chosen = next((p for p in request.subprotocols if p in self.subprotocols), None)
        await stream.send_all(
            ws.send(
                AcceptConnection(
                    subprotocol=chosen,
                    extensions=[PerMessageDeflate()] if self.compression else [],
                    extra_headers=[(k.encode(), v.encode()) for k, v in self.accept_headers],
                )
            )
        )
        path = request.target
        query = urllib.parse.urlsplit(path).query
        connection = ServerConnection(
            path=path,
            client_id=query or None,
            headers={
                name: v.decode()
                for k, v in request.extra_headers
                if (name := k.decode().lower()) not in _PROTOCOL_HEADERS
            },
            opened_at=trio.current_time(),
        )
        connection._stream, connection._ws = stream, ws
        connection._changed = self._changed
        self.connections += [connection]
        failure: Exception | None = None
        try:
            await self._handle(self.opened_handler, connection)
            fault = self._take_fault("accept_then_close")
            if fault is not None:
                await connection.close(fault.code, fault.reason)
            await self._serve_messages(stream, ws, connection)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError) as exc:
            failure = exc
        finally:
            connection.closed_at = trio.current_time()
        if failure is not None:
            await self._handle(
                self.error_handler, connection, str(failure) or type(failure).__name__
            )
        await self._handle(self.closed_handler, connection)

    async def _handle(self, handler: Callable[..., Awaitable[None]] | None, *args: Any) -> None:
        """Run a GeneXus handler, if there is one; then announce what it did."""
        if handler is not None:
            await handler(self, *args)
            _announce(self)

    def _check_request(self, target: str) -> int | None:
        """With ``endpoint`` set, as a GeneXus server: 404 for another path, 400
        without a client id."""
        if self.endpoint is None:
            return None
        path, _, query = target.partition("?")
        if path.rstrip("/").rsplit("/", 1)[-1] not in (self.endpoint, self.endpoint + ".svc"):
            return 404
        return None if query else 400

    async def _serve_messages(
        self, stream: trio.abc.Stream, ws: WSConnection, connection: ServerConnection
    ) -> None:
        text: list[str] = []
        binary: list[bytes] = []
        while True:
            data = await self._receive(stream)
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, TextMessage):
                    text.append(event.data)
                    if event.message_finished:
                        await self._on_message(connection, "".join(text))
                        text = []
                elif isinstance(event, BytesMessage):
                    binary.append(bytes(event.data))
                    if event.message_finished:
                        await self._on_message(connection, b"".join(binary))
                        binary = []
                elif isinstance(event, Ping):
                    connection.pings += 1
                    async with connection._lock:
                        # after its own close frame the server answers no ping
                        if ws.state is ConnectionState.OPEN:
                            await stream.send_all(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    connection.close_code = int(event.code)
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        async with connection._lock:
                            await stream.send_all(ws.send(event.response()))
                    return

    async def _on_message(self, connection: ServerConnection, message: Message) -> None:
        connection.received += [message]
        if self.echo:
            await connection.send(message)
        if isinstance(message, str):
            await self._handle(self.received_handler, connection, NotificationInfo(message=message))


@asynccontextmanager
async def open_mock_server(
    *,
    echo: bool = False,
    received: Handler | None = None,
    opened: ConnectionHandler | None = None,
    closed: ConnectionHandler | None = None,
    error: ErrorHandler | None = None,
    endpoint: str | None = None,
) -> AsyncIterator[MockServer]:
    """Run a ``MockServer`` for the duration of the block.

    Examples:
        >>> async def test_it(autojump_clock):  # doctest: +SKIP
        ...     async with open_mock_server(echo=True) as server:
        ...         server.refuse(2)
        ...         async with ClientSocket("ws://app/gxwebsocket?id1",
        ...                                 open_stream=server.open_stream) as sock:
        ...             await sock.wait_connected()
        ...         assert server.attempts == 3
    """
    failure: BaseException | None = None
    async with trio.open_nursery() as nursery:
        server = MockServer(
            nursery,
            echo=echo,
            received=received,
            opened=opened,
            closed=closed,
            error=error,
            endpoint=endpoint,
        )
        try:
            yield server
        except BaseException as exc:  # re-raised below, outside the nursery, ungrouped
            failure = exc
        finally:
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
