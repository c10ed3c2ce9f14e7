"""Against real servers on 127.0.0.1, started and stopped by each test."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import ParamSpec

import pytest
import trio
import trio_websocket

from trio_clientsocket import (
    Backoff,
    Connected,
    ConnectionFailed,
    HandshakeRejected,
    KeepaliveTimeout,
    MessageReceived,
    ProtocolError,
    Status,
)
from trio_clientsocket.testing import open_mock_server

from .conftest import client_socket, next_event_skip
from .test_lifecycle import next_event

pytestmark = pytest.mark.usefixtures("each_transport")

FAST = Backoff(initial=0.02, factor=2, maximum=0.1, jitter=0)
P = ParamSpec("P")
Handler = Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]


async def echo(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


@asynccontextmanager
async def ws_server(handler: Handler = echo, port: int = 0) -> AsyncIterator[int]:
    """A trio-websocket server on 127.0.0.1; yields its port."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            trio_websocket.serve_websocket, handler, "127.0.0.1", port, None
        )
        yield server.port
        nursery.cancel_scope.cancel()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def bounded(test: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """Fail a network test that runs longer than 20 s instead of hanging CI."""

    @functools.wraps(test)
    async def run(*args: P.args, **kwargs: P.kwargs) -> None:
        with trio.fail_after(20):
            await test(*args, **kwargs)

    return run


@bounded
async def test_echo_against_trio_websocket() -> None:
    async with ws_server() as port:
        url = f"ws://127.0.0.1:{port}/app/gxwebsocket?abc"
        async with client_socket(url) as sock:
            assert await next_event(sock, Connected) == Connected(url=url)
            await sock.send("hello")
            await sock.send(b"\x00\xff")
            assert (await next_event(sock, MessageReceived)).message == "hello"
            assert (await next_event(sock, MessageReceived)).message == b"\x00\xff"
            assert sock.status is Status.CONNECTED


@bounded
async def test_ten_thousand_messages_each_way_in_order() -> None:
    count = 10_000
    received: list[str] = []

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        async with trio.open_nursery() as nursery:

            async def push() -> None:
                for i in range(count):
                    await ws.send_message(f"s{i}")

            nursery.start_soon(push)
            while len(received) < count:
                received.append(str(await ws.get_message()))
        await ws.send_message("done")  # after every pushed message

    async with ws_server(handler) as port:
        async with client_socket(f"ws://127.0.0.1:{port}/") as sock:
            async with trio.open_nursery() as nursery:

                async def send_all() -> None:
                    for i in range(count):
                        await sock.send(f"c{i}")

                nursery.start_soon(send_all)
                got = []
                async for event in sock.events():
                    if isinstance(event, MessageReceived):
                        if event.message == "done":
                            break
                        got.append(event.message)
    assert got == [f"s{i}" for i in range(count)]
    assert received == [f"c{i}" for i in range(count)]


@bounded
async def test_open_switches_between_real_servers() -> None:
    async with ws_server() as port_a, ws_server() as port_b:
        async with client_socket(f"ws://127.0.0.1:{port_a}/a") as sock:
            await sock.send("one")
            assert (await next_event_skip(sock, MessageReceived)).message == "one"
            await sock.open(f"ws://127.0.0.1:{port_b}/b")
            await sock.send("two")
            assert (await next_event_skip(sock, Connected)).url.endswith(f":{port_b}/b")
            assert (await next_event_skip(sock, MessageReceived)).message == "two"


@bounded
async def test_refused_then_accepting() -> None:
    port = free_port()
    async with client_socket(f"ws://127.0.0.1:{port}/", reconnect=FAST) as sock:
        await sock.send("queued while refused")
        failed = await next_event(sock, ConnectionFailed)
        assert isinstance(failed.error, OSError)
        assert failed.retry_in == 0.02
        async with ws_server(port=port):
            event = await next_event_skip(sock, MessageReceived)
            assert event.message == "queued while refused"


@bounded
async def test_restarts_on_same_port_deliver_everything_in_order() -> None:
    async with open_mock_server() as server:
        port = await server.listen_tcp()
        sent = []
        async with client_socket(f"ws://127.0.0.1:{port}/gxwebsocket?me", reconnect=FAST) as sock:
            for outage in range(3):
                await sock.wait_connected()
                sent.append(f"up{outage}")
                await sock.send(sent[-1])
                await server.wait_for(lambda: server.received == sent)
                await server.stop()
                await next_event_skip(sock, ConnectionFailed)
                for i in range(20):
                    sent.append(f"down{outage}-{i}")
                    await sock.send(sent[-1])
                await server.start()
            await server.wait_for(lambda: len(server.received) == len(sent))
        assert server.received == sent
        assert {c.client_id for c in server.connections} == {"me"}


@pytest.mark.parametrize(("status", "retried"), [(403, False), (404, False), (503, True)])
@bounded
async def test_http_rejection(status: int, retried: bool) -> None:
    async def reject(request: trio_websocket.WebSocketRequest) -> None:
        await request.reject(status)

    async with ws_server(reject) as port:
        async with client_socket(f"ws://127.0.0.1:{port}/", reconnect=FAST) as sock:
            failed = await next_event(sock, ConnectionFailed)
            assert isinstance(failed.error, HandshakeRejected)
            assert failed.error.status_code == status
            assert (failed.retry_in is not None) is retried
            assert sock.is_open is retried


@asynccontextmanager
async def tcp_server(respond: Callable[[trio.SocketStream], Awaitable[None]]) -> AsyncIterator[int]:
    """A raw TCP server on 127.0.0.1 running ``respond`` for each connection."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await respond(stream)

    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


@bounded
async def test_garbage_response_is_a_retried_failure() -> None:
    async def garbage(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    async with tcp_server(garbage) as port:
        start = trio.current_time()
        async with client_socket(f"ws://127.0.0.1:{port}/", reconnect=FAST) as sock:
            failed = await next_event(sock, ConnectionFailed)
            assert isinstance(failed.error, ProtocolError)
            assert failed.retry_in is not None
            assert trio.current_time() - start < 5  # not the 10 s connect timeout


@bounded
async def test_close_mid_handshake_is_a_retried_failure() -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 101 Switching")

    async with tcp_server(hang_up) as port:
        async with client_socket(f"ws://127.0.0.1:{port}/", reconnect=FAST) as sock:
            failed = await next_event(sock, ConnectionFailed)
            assert failed.retry_in is not None
            assert "handshake" in str(failed.error)


@bounded
async def test_silent_server_hits_connect_timeout() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with tcp_server(silent) as port:
        async with client_socket(
            f"ws://127.0.0.1:{port}/", reconnect=FAST, connect_timeout=0.2
        ) as sock:
            failed = await next_event(sock, ConnectionFailed)
            assert "connect_timeout=0.2" in str(failed.error)
            assert failed.retry_in is not None


@bounded
async def test_no_file_descriptor_leak() -> None:
    async def rude(request: trio_websocket.WebSocketRequest) -> None:
        await request.accept()  # then the handler returns: connection dropped

    before = open_fds()
    async with ws_server(rude) as port:
        async with client_socket(f"ws://127.0.0.1:{port}/", reconnect=FAST) as sock:
            for _ in range(10):
                await next_event_skip(sock, ConnectionFailed)
    await trio.lowlevel.checkpoint()
    assert open_fds() == before


@bounded
async def test_frozen_server_detected_by_keepalive() -> None:
    async with open_mock_server() as server:
        port = await server.listen_tcp()
        async with client_socket(
            f"ws://127.0.0.1:{port}/", reconnect=FAST, ping_interval=0.1, ping_timeout=0.2
        ) as sock:
            await sock.wait_connected()
            server.stall()
            start = trio.current_time()
            failed = await next_event_skip(sock, ConnectionFailed)
            assert isinstance(failed.error, KeepaliveTimeout)
            assert 0.2 <= trio.current_time() - start <= 0.3 + 0.2  # interval + timeout + margin
            server.resume()
            await sock.wait_connected()


@bounded
async def test_accept_then_close_real_server_backs_off() -> None:
    async with open_mock_server() as server:
        port = await server.listen_tcp()
        server.accept_then_close(code=1011, count=3)
        async with client_socket(f"ws://127.0.0.1:{port}/", reconnect=FAST) as sock:
            retries = []
            for _ in range(3):
                retries.append((await next_event_skip(sock, ConnectionFailed)).retry_in)
            await sock.wait_connected()
        assert retries == [0.02, 0.04, 0.08]
        assert len(server.connections) == 4


@bounded
async def test_slow_consumer_over_tcp_is_not_a_dead_peer() -> None:
    async with open_mock_server() as server:
        port = await server.listen_tcp()
        async with client_socket(
            f"ws://127.0.0.1:{port}/", ping_interval=0.05, ping_timeout=0.05, event_buffer=4
        ) as sock:
            connection = await server.wait_connections(1)
            payload = "x" * 1000
            async with trio.open_nursery() as nursery:

                async def flood() -> None:
                    for i in range(2000):
                        await connection.send(f"{i}:{payload}")

                nursery.start_soon(flood)
                await trio.sleep(0.5)  # not reading: 5x (interval + timeout)
                got = 0
                async for event in sock.events():
                    assert not isinstance(event, ConnectionFailed), event
                    if isinstance(event, MessageReceived):
                        assert event.message == f"{got}:{payload}"
                        got += 1
                        if got == 2000:
                            break
            assert sock.statistics().attempts == 1
