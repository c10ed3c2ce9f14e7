"""Issue 12 over real TCP on 127.0.0.1, where the kernel matters: a frozen peer
whose kernel still takes bytes (1), a long upload that really progresses (1), an
event loop blocked while the pong waits in the socket (8), EOF during TLS; and
the CLI's output (3), which needs a real server.

Each server is started and stopped by its test; every loop is bounded; every
test runs under ``trio.fail_after``. Public API only."""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trustme
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from trio_clientsocket import (
    Backoff,
    ConnectionFailed,
    ConnectionLost,
    KeepaliveTimeout,
    Status,
)
from trio_clientsocket.testing import open_mock_server

from ._hostile_helpers import (
    ThreadedPongServer,
    drain,
    read_request,
    request_key,
    switching,
    tcp_server,
)
from .conftest import client_socket, next_event_skip
from .test_cli import NOW

pytestmark = pytest.mark.usefixtures("each_transport")

FAST = Backoff(initial=0.02, factor=2, maximum=0.1, jitter=0)
PING_INTERVAL = 0.3
PING_TIMEOUT = 0.3
MARGIN = 0.4


# -- 1. a frozen peer goes undetected while the application keeps sending ---------


async def handshake_then_freeze(stream: trio.SocketStream) -> None:
    """Complete the handshake, then never read again: the kernel still takes
    bytes until its buffers are full, as for a process stopped with SIGSTOP."""
    request = await read_request(stream)
    await stream.send_all(switching(request_key(request)))
    await trio.sleep_forever()


async def test_frozen_peer_detected_while_the_application_sends() -> None:
    with trio.fail_after(5):
        async with tcp_server(handshake_then_freeze) as port:
            async with client_socket(
                f"ws://127.0.0.1:{port}/",
                reconnect=FAST,
                ping_interval=PING_INTERVAL,
                ping_timeout=PING_TIMEOUT,
                close_timeout=0.2,  # the frozen peer never answers the close
            ) as sock:
                await sock.wait_connected()
                budget = PING_INTERVAL + PING_TIMEOUT + MARGIN
                failed: ConnectionFailed | None = None
                with trio.move_on_after(budget):
                    async with trio.open_nursery() as nursery:

                        async def send_every_10_ms() -> None:
                            for i in range(10_000):  # bounded: far more than the budget
                                await sock.send(f"{i:06}:" + "x" * 193)  # 200 bytes
                                await trio.sleep(0.01)

                        nursery.start_soon(send_every_10_ms)
                        async for event in sock.events():
                            if isinstance(event, ConnectionFailed):
                                failed = event
                                nursery.cancel_scope.cancel()
                                break
                assert failed is not None, (
                    f"no ConnectionFailed within {budget:.1f} s of a frozen peer "
                    f"while sending; status {sock.status.value}"
                )
                assert isinstance(failed.error, KeepaliveTimeout), failed
                assert failed.retry_in is not None


class SlowReader:
    """A live WebSocket server that reads ``read_size`` bytes every ``pause``
    seconds (slow but steady) and answers pings. Its receive buffer is small,
    so that the client's upload goes at the pace it reads."""

    def __init__(self, read_size: int, pause: float) -> None:
        self.read_size = read_size
        self.pause = pause
        self.received: list[int] = []  # the size of each message
        self.pings = 0
        self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self.changed.wait()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def serve(self, stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        size = 0
        while True:
            data = await stream.receive_some(self.read_size)
            if not data:
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    await stream.send_all(ws.send(AcceptConnection()))
                elif isinstance(event, Ping):
                    await stream.send_all(ws.send(event.response()))
                    self.pings += 1
                    self._changed()
                elif isinstance(event, TextMessage | BytesMessage):
                    size += len(event.data)
                    if event.message_finished:
                        self.received.append(size)
                        size = 0
                        self._changed()
                elif isinstance(event, CloseConnection):
                    await stream.send_all(ws.send(event.response()))
                    return
            await trio.sleep(self.pause)  # the server's pace, not synchronisation

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[int]:
        """Serve on 127.0.0.1 for the block; yields the port."""

        async def handle(stream: trio.SocketStream) -> None:
            async with stream:
                with contextlib.suppress(trio.BrokenResourceError):
                    await self.serve(stream)

        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        for listener in listeners:
            listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handle, listeners)
            yield listeners[0].socket.getsockname()[1]
            nursery.cancel_scope.cancel()


async def test_long_upload_that_progresses_is_not_a_dead_peer() -> None:
    """Guard: only what comes in counts as a sign of life, but a large message
    that the server really takes in, slowly, holds the ping back behind it and
    must not be taken for a dead peer."""
    size = 6 * 2**20  # at least 96 reads of 64 KiB, 10 ms apart: about 1 s
    server = SlowReader(read_size=65536, pause=0.01)
    with trio.fail_after(15):
        async with server.listen() as port:
            async with client_socket(
                f"ws://127.0.0.1:{port}/",
                reconnect=FAST,
                ping_interval=0.2,
                ping_timeout=0.5,
                max_message_size=2 * size,
            ) as sock:
                await sock.wait_connected()
                start = trio.current_time()
                await sock.send(b"u" * size)
                await server.wait_for(lambda: bool(server.received))
                took = trio.current_time() - start
                pings = server.pings
                await server.wait_for(lambda: server.pings >= pings + 3)  # alive afterwards
                assert sock.status is Status.CONNECTED
                assert sock.statistics().attempts == 1
        events = drain(sock)
    assert server.received == [size]
    assert not [e for e in events if isinstance(e, ConnectionFailed)]
    assert took > 0.2 + 0.5  # the upload outlasted ping_interval + ping_timeout


# -- 8. a blocked event loop makes keepalive declare a live peer dead -------------

ROUNDS = 20


async def test_blocked_loop_with_the_pong_in_the_socket_is_not_a_dead_peer() -> None:
    """The server (in its own thread, so that it runs while the loop is blocked)
    answers each ping 10 ms after reading it. Each round, as soon as it has read
    a ping, the application blocks the event loop for longer than ping_timeout:
    when the loop runs again, the timer has expired and the pong is waiting in
    the socket's receive buffer. The peer is alive: no KeepaliveTimeout."""
    ping_timeout = 0.05
    with ThreadedPongServer(pong_delay=0.01) as server:
        with trio.fail_after(15):
            async with client_socket(
                f"ws://127.0.0.1:{server.port}/",
                reconnect=FAST,
                ping_interval=0.02,
                ping_timeout=ping_timeout,
                close_timeout=0.5,
            ) as sock:
                await sock.wait_connected()
                for round_ in range(ROUNDS):
                    server.pinged.clear()
                    pinged = await trio.to_thread.run_sync(server.pinged.wait, 2.0)
                    assert pinged, f"round {round_}: no ping within 2 s"
                    # A synchronous call blocks the loop: the pong arrives meanwhile.
                    time.sleep(2 * ping_timeout)  # noqa: ASYNC251 - blocking is the point
                    failures = [e for e in drain(sock) if isinstance(e, ConnectionFailed)]
                    assert not failures, f"round {round_}: {failures}"
                    assert sock.statistics().attempts == 1, f"round {round_}: reconnected"
                server.pinged.clear()
                await trio.to_thread.run_sync(server.pinged.wait, 2.0)  # judged the last round
                assert not [e for e in drain(sock) if isinstance(e, ConnectionFailed)]
                assert sock.statistics().attempts == 1
                assert sock.status is Status.CONNECTED


# -- smaller: EOF during the TLS handshake ----------------------------------------


async def eof_in_tls(stream: trio.SocketStream) -> None:
    """Read the ClientHello, then hang up without answering it."""
    await stream.receive_some()


async def test_eof_during_tls_handshake_is_connection_lost_1006() -> None:
    ca = trustme.CA()
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with trio.fail_after(5):
        async with tcp_server(eof_in_tls) as port:
            async with client_socket(
                f"wss://localhost:{port}/", ssl_context=client_ctx, reconnect=FAST
            ) as sock:
                failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error, ConnectionLost), repr(failed.error)
    assert failed.error.code == 1006
    assert failed.retry_in is not None


# -- 3. a query secret leaks when the URL has no path: the CLI's output ---------------


async def test_cli_output_hides_a_query_secret_without_path() -> None:
    with trio.fail_after(30):
        async with open_mock_server(echo=True) as server:
            port = await server.listen_tcp()
            url = f"ws://127.0.0.1:{port}?token=S3CRET"
            for flags in ([], ["--json"]):
                done = await trio.run_process(
                    [sys.executable, "-m", "trio_clientsocket", "connect", url, *flags, *NOW],
                    stdin=b"hi\n",
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
                output = done.stdout.decode() + done.stderr.decode()
                assert done.returncode == 0, output
                assert "S3CRET" not in output, output
            assert server.connections[0].client_id == "token=S3CRET"  # it was sent
