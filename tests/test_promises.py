"""Every bound and promise of the docs, attacked (issue 19: "Every bound and
promise in the docs is attacked by a test that tries to break it").

Each test is named after the promise it attacks and quotes it, with its page,
in its docstring. Promises that other test files already attack are listed in
the inventory kept outside the repository; this file holds the ones that no
test tried to break before. Public API only; every transport where the
transport matters; the mock clock where time matters.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_clientsocket import (
    ClientSocket,
    ConnectionFailed,
    ConnectionLost,
    ConnectTimeout,
    KeepaliveTimeout,
    MessageReceived,
    OutboxFullError,
    Status,
)
from trio_clientsocket.testing import MockServer, open_mock_server

from ._hostile_helpers import raw_server, request_key, server_frame, switching
from .conftest import client_socket, next_event_skip

URL = "ws://app.test/app/gxwebsocket?client-1"
EACH = pytest.mark.usefixtures("each_transport")
"""Run the test on every transport."""


def to(server: MockServer, url: str | None = URL, **options: object) -> ClientSocket:
    """A socket on the current transport, wired to ``server`` in memory."""
    return client_socket(url, open_stream=server.open_stream, **options)


# -- the defaults, as the options table of index.md gives them --------------------


@EACH
async def test_default_connect_timeout_is_10_s(autojump_clock: object) -> None:
    """index.md, options: "`connect_timeout` | 10 s | one attempt: TCP + TLS +
    handshake"; resilience.md: "attempt slower than `connect_timeout` ...
    `ConnectTimeout` | yes" (retried)."""
    async with open_mock_server() as server:
        server.delay_handshake(1000)
        async with to(server) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
            assert trio.current_time() == 10.0
            assert isinstance(failed.error, ConnectTimeout)
            assert failed.retry_in is not None


@EACH
async def test_default_keepalive_takes_a_frozen_peer_for_dead_at_40_s(
    autojump_clock: object,
) -> None:
    """index.md, options: "`ping_interval`, `ping_timeout` | 20 s, 20 s";
    resilience.md: "A frozen peer is detected within `ping_interval +
    ping_timeout` of its last byte"."""
    async with open_mock_server() as server, to(server) as sock:
        await sock.wait_connected()
        server.stall()
        failed = await next_event_skip(sock, ConnectionFailed)
        assert isinstance(failed.error, KeepaliveTimeout)
        assert trio.current_time() == 40.0
        assert server.connections[0].pings == 0  # stalled: the ping was never read


@EACH
async def test_default_close_timeout_is_3_s(autojump_clock: object) -> None:
    """index.md, options: "`close_timeout` | 3 s | bound on flushing the outbox
    and the closing handshake"."""
    async with open_mock_server() as server:
        async with to(server, ping_interval=None) as sock:
            await sock.wait_connected()
            server.stall()
            await sock.send("never read")
            leaving = trio.current_time()
        assert trio.current_time() - leaving == 3.0
        assert sock.status is Status.DISCONNECTED


async def test_default_outbox_holds_1000_messages(autojump_clock: object) -> None:
    """index.md, options: "`outbox_size`, `overflow` | 1000, `"wait"`";
    resilience.md: "`send_nowait()` raises `OutboxFullError` rather than wait"."""
    async with open_mock_server() as server:
        server.up = False
        async with to(server) as sock:
            for i in range(1000):
                sock.send_nowait(f"m{i}")
            assert sock.statistics().outbox_depth == 1000
            with pytest.raises(OutboxFullError):
                sock.send_nowait("one too many")
            with trio.move_on_after(60) as waited:  # overflow="wait": send() waits
                await sock.send("one too many")
            assert waited.cancelled_caught
            assert await sock.close() == tuple(f"m{i}" for i in range(1000))


async def test_default_backoff_waits_1_2_4_to_30_s_each_shortened_by_at_most_half(
    autojump_clock: object,
) -> None:
    """index.md, options: "`reconnect` | `Backoff()` | reconnect policy: 1 s
    doubling to 30 s, each wait shortened by up to 50 % at random, forever";
    resilience.md: "0.5-1 s, 1-2 s, 2-4 s, ... 15-30 s"."""
    async with open_mock_server() as server:
        server.refuse(12)
        async with to(server) as sock:
            waits: list[float] = []
            for _ in range(12):
                failed = await next_event_skip(sock, ConnectionFailed)
                assert failed.retry_in is not None
                waits.append(failed.retry_in)
            await sock.wait_connected()
    for n, wait in enumerate(waits, start=1):
        base = min(30.0, 2.0 ** (n - 1))
        assert base / 2 <= wait <= base, (n, wait)
    assert server.attempts == 13


@EACH
async def test_default_event_buffer_holds_256_messages(autojump_clock: object) -> None:
    """index.md, options: "`event_buffer` | 256 | events buffered for
    `events()`; when full the socket stops reading (backpressure)"."""
    async with open_mock_server() as server, to(server, ping_interval=None) as sock:
        connection = await server.wait_connections(1)
        for i in range(400):
            await connection.send(f"m{i}")
        await trio.testing.wait_all_tasks_blocked()
        assert sock.statistics().messages_received == 256


@EACH
async def test_default_buffer_bytes_is_8_mib_less_one_message_of_the_limit(
    autojump_clock: object,
) -> None:
    """resilience.md: "Received messages wait in the event buffer, up to
    `event_buffer` (256) events or `buffer_bytes` (8 MiB) of messages ...
    the socket parses the server's bytes only while a message of
    `max_message_size` still fits after what it has parsed"."""
    size = 64 * 1024
    async with open_mock_server() as server, to(server, ping_interval=None) as sock:
        connection = await server.wait_connections(1)
        for _ in range(200):
            await connection.send("x" * size)
        await trio.testing.wait_all_tasks_blocked()
        held = sock.statistics().messages_received * size
        assert 7 * 2**20 - size < held <= 7 * 2**20


# -- keepalive ---------------------------------------------------------------------


@EACH
async def test_a_ping_goes_only_after_ping_interval_without_a_byte_from_the_server(
    autojump_clock: object,
) -> None:
    """resilience.md: "After `ping_interval` (20 s) without a byte from the
    server, the socket sends a ping"; reference, ``ping_interval``: "seconds
    without a byte from the server after which a keepalive ping goes"."""
    async with open_mock_server() as server, to(server) as sock:
        connection = await server.wait_connections(1)
        for _ in range(6):  # a message every 15 s: never 20 s of silence
            await trio.sleep(15)
            await connection.send("still here")
        assert trio.current_time() == 90.0
        await server.wait_for(lambda: connection.pings == 1)
        assert trio.current_time() == 110.0  # 20 s after the last byte
        assert sock.status is Status.CONNECTED


@EACH
async def test_any_byte_within_ping_timeout_is_a_sign_of_life(autojump_clock: object) -> None:
    """resilience.md: "if no byte at all arrives within `ping_timeout` (20 s)
    of the ping going out, the peer is dead"; reference, ``ping_timeout``:
    "within which something must come in". A server that never answers a ping
    but keeps talking is alive."""

    async def talk_but_never_pong(stream: trio.abc.Stream, request: bytes) -> None:
        await stream.send_all(switching(request_key(request)))
        for i in range(20):  # never reads: the pings are never answered
            await trio.sleep(8)
            await stream.send_all(server_frame(0x1, f"m{i}".encode()))
        await trio.sleep_forever()

    async with raw_server(talk_but_never_pong) as server:
        options = {"ping_interval": 5, "ping_timeout": 10, "reconnect": None}
        async with client_socket(URL, open_stream=server.open_stream, **options) as sock:
            await sock.wait_connected()
            got: list[str | bytes] = []
            async for event in sock.events():
                assert not isinstance(event, ConnectionFailed), event
                if isinstance(event, MessageReceived):
                    got.append(event.message)
                    if len(got) == 20:
                        break
            assert trio.current_time() == 160.0
            assert sock.status is Status.CONNECTED
    assert server.attempts == 1


@EACH
async def test_ping_timeout_none_alone_disables_keepalive(autojump_clock: object) -> None:
    """resilience.md: "Set either option to `None` to disable keepalive"
    (``ping_interval=None`` alone is tested in test_keepalive.py)."""
    async with open_mock_server() as server, to(server, ping_timeout=None) as sock:
        await sock.wait_connected()
        server.stall()
        await trio.sleep(1000)
        assert sock.status is Status.CONNECTED
        assert sock.statistics().attempts == 1
        server.resume()
        await trio.testing.wait_all_tasks_blocked()
    assert server.connections[0].pings == 0


# -- hostile frames ------------------------------------------------------------------


def fragmented(count: int) -> bytes:
    """A text message "az" in ``count`` frames: "a", empty continuations, "z"."""
    middle = server_frame(0x0, b"", fin=False) * (count - 2)
    return server_frame(0x1, b"a", fin=False) + middle + server_frame(0x0, b"z")


@EACH
@pytest.mark.parametrize(("max_size", "most"), [(1024, 1024), (128 * 1024, 8192)])
async def test_a_message_of_more_fragments_than_max_size_over_16_closes_1009(
    max_size: int, most: int, autojump_clock: object
) -> None:
    """security.md: "A message of too many fragments (more than
    `max_message_size / 16`, at least 1,024) closes the connection with 1009";
    resilience.md: "message over `max_message_size` bytes, or of too many
    fragments | `ConnectionLost(1009)` | yes". (comparison.md says the
    trio-websocket transport cuts such a message off without a close frame:
    it now closes with 1009 like the others.)"""
    async with open_mock_server() as server:
        async with to(server, max_message_size=max_size, ping_interval=None) as sock:
            connection = await server.wait_connections(1)
            await connection.send_raw(fragmented(most))
            assert (await next_event_skip(sock, MessageReceived)).message == "az"
            await connection.send_raw(fragmented(most + 1))
            failed = await next_event_skip(sock, ConnectionFailed)
            assert isinstance(failed.error, ConnectionLost)
            assert (failed.error.code, failed.error.by_server) == (1009, False)
            assert failed.retry_in is not None
            await sock.wait_connected()
    assert connection.close_code == 1009
    assert len(server.connections) == 2


@EACH
async def test_a_server_close_with_1009_is_reported_with_its_code_by_the_server(
    autojump_clock: object,
) -> None:
    """comparison.md, transports: "a server's close code 1009 | reported with
    its code, by the server"; resilience.md: "A close frame *from the server*
    is a `ConnectionLost(code, by_server=True)` whatever its code". (The same
    table says the trio-websocket transport reports it like a message too
    big: it now says who closed, like the others.)"""
    async with open_mock_server() as server, to(server, ping_interval=None) as sock:
        await sock.wait_connected()
        await server.close_all(1009, "too big for me")
        failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error, ConnectionLost)
    assert (failed.error.code, failed.error.reason, failed.error.by_server) == (
        1009,
        "too big for me",
        True,
    )
