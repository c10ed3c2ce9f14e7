"""Dead-peer detection that a slow consumer cannot fool (mock clock, in memory)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_clientsocket import (
    ConnectionFailed,
    KeepaliveTimeout,
    MessageReceived,
    Status,
)
from trio_clientsocket.testing import MockServer

from .conftest import next_event_skip
from .test_lifecycle import socket

pytestmark = pytest.mark.usefixtures("each_transport")


async def test_frozen_peer_detected_at_interval_plus_timeout(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, ping_interval=10, ping_timeout=5) as sock:
        await sock.wait_connected()
        server.stall()
        failed = await next_event_skip(sock, ConnectionFailed)
        assert isinstance(failed.error, KeepaliveTimeout)
        assert "peer is dead" in str(failed.error)
        assert trio.current_time() == 15.0
        assert sock.status is Status.DISCONNECTED
        server.resume()
        await sock.wait_connected()
        assert trio.current_time() == 16.0
    assert len(server.connections) == 2


async def test_live_quiet_peer_is_not_dead(server: MockServer, autojump_clock: object) -> None:
    async with socket(server, ping_interval=10, ping_timeout=5) as sock:
        await sock.wait_connected()
        await trio.sleep(995)  # pings at 10, 20, ... 990 s
        assert sock.status is Status.CONNECTED
        assert sock.statistics().attempts == 1
    assert server.connections[0].pings == 99


async def test_keepalive_disabled_never_pings(server: MockServer, autojump_clock: object) -> None:
    async with socket(server, ping_interval=None) as sock:
        await sock.wait_connected()
        server.stall()
        await trio.sleep(1000)
        assert sock.status is Status.CONNECTED
    assert server.connections[0].pings == 0


async def test_slow_consumer_is_not_a_dead_peer(server: MockServer, autojump_clock: object) -> None:
    async with socket(server, ping_interval=10, ping_timeout=5, event_buffer=8) as sock:
        connection = await server.wait_connections(1)
        for i in range(200):
            await connection.send(f"m{i}")
        # The application does not read events() for far longer than
        # ping_interval + ping_timeout: the buffer fills, reading stops.
        await trio.sleep(300)
        assert sock.status is Status.CONNECTED
        got = []
        async for event in sock.events():
            assert not isinstance(event, ConnectionFailed), event
            if isinstance(event, MessageReceived):
                got.append(event.message)
                if len(got) == 200:
                    break
        assert got == [f"m{i}" for i in range(200)]
        # and once it reads again, keepalive works as before
        await trio.sleep(100)
        assert sock.status is Status.CONNECTED
        assert sock.statistics().attempts == 1
        server.stall()
        start = trio.current_time()
        failed = await next_event_skip(sock, ConnectionFailed)
        assert isinstance(failed.error, KeepaliveTimeout)
        assert trio.current_time() - start <= 15.0


async def test_slow_consumer_then_dead_peer_is_detected(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, ping_interval=10, ping_timeout=5, event_buffer=2) as sock:
        connection = await server.wait_connections(1)
        for i in range(20):
            await connection.send(f"m{i}")
        await trio.sleep(100)
        server.stall()
        await trio.testing.wait_all_tasks_blocked()
        resumed_at = trio.current_time()
        got = []
        async for event in sock.events():
            if isinstance(event, MessageReceived):
                got.append(event.message)
            if isinstance(event, ConnectionFailed):
                assert isinstance(event.error, KeepaliveTimeout)
                break
        assert got == [f"m{i}" for i in range(20)]
        assert trio.current_time() - resumed_at <= 10 + 5 + 5
