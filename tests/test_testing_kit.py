"""trio_clientsocket.testing: every fault and recording, with exact mock-clock times."""

from __future__ import annotations

import pytest
import trio

from trio_clientsocket import (
    Backoff,
    Connected,
    ConnectionFailed,
    ConnectionLost,
    HandshakeRejected,
    MessageReceived,
    NotificationInfo,
    Status,
)
from trio_clientsocket.testing import DEFAULT_URL, MockServer, ServerConnection, open_mock_server

from .conftest import client_socket, next_event_skip

EXACT = Backoff(initial=1, factor=2, maximum=8, jitter=0)


async def test_ninety_second_outage_story(autojump_clock: object) -> None:
    """Server down for 90 s, the app keeps queueing, server back: all delivered in order."""
    async with open_mock_server() as server, server.client(reconnect=EXACT) as sock:
        await sock.wait_connected()
        await sock.send("before")
        await server.wait_for(lambda: server.received == ["before"])
        await server.stop()
        down_at = trio.current_time()
        queued = []
        for second in range(90):
            queued.append(f"t+{second}")
            await sock.send(queued[-1])
            await trio.sleep(1)
        assert sock.status is Status.DISCONNECTED
        assert sock.statistics().outbox_depth == 90
        await server.start()
        await sock.wait_connected()
        # waits 1, 2, 4, 8, 8, ... : the attempt after the restart comes at t=95
        assert trio.current_time() - down_at == 95
        await server.wait_for(lambda: len(server.received) == 91)
    assert server.received == ["before", *queued]
    assert [c.close_code for c in server.connections] == [None, 1000]


async def test_refuse_then_exact_times(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        server.refuse(2)
        async with server.client(reconnect=EXACT) as sock:
            await sock.wait_connected()
            assert trio.current_time() == 1 + 2
            await next_event_skip(sock, Connected)  # past the two refusals
            await server.drop_all()  # up for 0 s: the failure count goes on
            failed = await next_event_skip(sock, ConnectionFailed)
            assert failed.retry_in == 4
            await sock.wait_connected()
            assert trio.current_time() == 1 + 2 + 4
    assert server.attempts == 4


async def test_reject_delay_and_accept_then_close(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        server.reject(429)
        server.delay_handshake(3)
        server.accept_then_close(4000, reason="go away")
        async with server.client(reconnect=EXACT) as sock:
            first = await next_event_skip(sock, ConnectionFailed)
            assert isinstance(first.error, HandshakeRejected)
            assert first.error.status_code == 429
            second = await next_event_skip(sock, ConnectionFailed)
            assert isinstance(second.error, ConnectionLost)
            assert (second.error.code, second.error.reason) == (4000, "go away")
            assert trio.current_time() == 1 + 3  # 1 s backoff, then a 3 s handshake
            await sock.wait_connected()
            assert trio.current_time() == 1 + 3 + 2
        assert server.rejected == [429]
        assert [c.opened_at for c in server.connections] == [4.0, 6.0]


async def test_close_codes_and_pings_recorded(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        async with server.client(ping_interval=10, ping_timeout=5) as sock:
            await sock.wait_connected()
            await trio.sleep(35)
        connection = server.connections[0]
        assert connection.pings == 3
        assert connection.close_code == 1000
        assert connection.closed_at == 35.0
        assert connection.client_id == "test-client"
        assert connection.path == "/app/gxwebsocket?test-client"
        assert sock.statistics().last_rtt == 0.0


async def test_genexus_handlers_and_notify(autojump_clock: object) -> None:
    log: list[str] = []

    async def opened(server: MockServer, connection: ServerConnection) -> None:
        log.append(f"open {connection.client_id}")

    async def closed(server: MockServer, connection: ServerConnection) -> None:
        log.append(f"close {connection.client_id}")

    async def error(server: MockServer, connection: ServerConnection, message: str) -> None:
        log.append(f"error {connection.client_id}")

    async def received(
        server: MockServer, connection: ServerConnection, info: NotificationInfo
    ) -> None:
        log.append(f"received {connection.client_id} {info.message}")
        await server.notify(
            "bob", NotificationInfo(id=connection.client_id or "", message=info.message)
        )

    async with open_mock_server(
        received=received, opened=opened, closed=closed, error=error
    ) as server:
        async with (
            server.client("ws://h/gxwebsocket?alice") as alice,
            server.client("ws://h/gxwebsocket?bob") as bob,
            server.client("ws://h/gxwebsocket?bob") as bob_tab,
        ):
            for sock in (alice, bob, bob_tab):
                await sock.wait_connected()
            await alice.send("hi bob")
            for sock in (bob, bob_tab):
                event = await next_event_skip(sock, MessageReceived)
                assert event.message == '{"Id": "alice", "Object": "", "Message": "hi bob"}'
                assert event.notification == NotificationInfo(id="alice", message="hi bob")
            await server.connections[1].drop()
            await server.wait_for(lambda: any(e.startswith("error") for e in log))
            assert await server.notify("nobody", "x") == 0
    assert log[:4] == ["open alice", "open bob", "open bob", "received alice hi bob"]
    assert "error bob" in log
    assert log.count("close bob") >= 1


async def test_echo_and_scripted_replies(autojump_clock: object) -> None:
    async def reply(
        server: MockServer, connection: ServerConnection, info: NotificationInfo
    ) -> None:
        await connection.send(info.message.upper())

    async with open_mock_server(received=reply) as server, server.client() as sock:
        await sock.send("shout")
        assert (await next_event_skip(sock, MessageReceived)).message == "SHOUT"
    async with open_mock_server(echo=True) as server, server.client() as sock:
        await sock.send(b"\x01\x02")
        assert (await next_event_skip(sock, MessageReceived)).message == b"\x01\x02"


async def test_same_controls_over_tcp() -> None:
    with trio.fail_after(10):
        async with open_mock_server(echo=True) as server:
            port = await server.listen_tcp()
            server.refuse(1)
            server.reject(503)
            fast = Backoff(initial=0.01, jitter=0)
            async with server.client(
                f"ws://127.0.0.1:{port}/gxwebsocket?tcp", reconnect=fast
            ) as sock:
                first = await next_event_skip(sock, ConnectionFailed)
                second = await next_event_skip(sock, ConnectionFailed)
                assert isinstance(second.error, HandshakeRejected)
                assert first.retry_in == 0.01
                await sock.send("over tcp")
                assert (await next_event_skip(sock, MessageReceived)).message == "over tcp"
                await server.restart()
                await next_event_skip(sock, ConnectionFailed)
                await sock.wait_connected()
            assert [c.client_id for c in server.connections] == ["tcp", "tcp"]
            assert server.attempts == 4


async def test_default_url(mock_server: MockServer, autojump_clock: object) -> None:
    async with mock_server.client() as sock:
        await sock.wait_connected()
        assert sock.url == DEFAULT_URL


@pytest.mark.usefixtures("each_transport")
async def test_a_close_at_the_instant_of_a_ping_is_recorded_cleanly(autojump_clock: object) -> None:
    """The server closes at the same mock instant as the client's keepalive ping:
    the kit must not answer the ping after its own close frame (wsproto refuses
    it, and the error handler used to fire with close_code left None)."""
    errors: list[str] = []

    async def on_error(server: MockServer, connection: ServerConnection, message: str) -> None:
        errors.append(message)

    async with open_mock_server(error=on_error) as server:
        async with client_socket(
            DEFAULT_URL, open_stream=server.open_stream, ping_interval=20, ping_timeout=20
        ) as sock:
            await sock.wait_connected()
            await trio.sleep(60)  # lands on a ping (every 20 s of silence)
            await server.close_all(1001)
            await server.wait_for(lambda: not server.connections[0].is_open)
    assert errors == []
    assert server.connections[0].close_code == 1001
    assert type(server.connections[0].close_code) is int
