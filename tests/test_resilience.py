"""Reconnect policy and bad input from the network (mock clock, in memory)."""

from __future__ import annotations

import random

import pytest
import trio

from trio_clientsocket import (
    Backoff,
    Classifier,
    ClientSocket,
    Connected,
    ConnectionFailed,
    ConnectionLost,
    HandshakeRejected,
    MessageReceived,
    ProtocolError,
    Status,
    Undelivered,
)
from trio_clientsocket.testing import MockServer

from .conftest import WrappedStream, client_socket, next_event_skip
from .test_lifecycle import next_event, socket

pytestmark = pytest.mark.usefixtures("each_transport")


async def failures(sock: ClientSocket, count: int) -> list[tuple[float, float | None]]:
    """The time and retry_in of the next ``count`` ConnectionFailed events."""
    seen = []
    for _ in range(count):
        failed = await next_event_skip(sock, ConnectionFailed)
        seen.append((trio.current_time(), failed.retry_in))
    return seen


async def test_accept_then_close_never_loops_tightly(
    server: MockServer, autojump_clock: object
) -> None:
    server.accept_then_close(code=1011, count=4)
    async with socket(server) as sock:
        seen = await failures(sock, 4)
        await sock.wait_connected()
    # each short-lived connection counts as a failure: the waits keep growing
    assert seen == [(0.0, 1.0), (1.0, 2.0), (3.0, 4.0), (7.0, 8.0)]
    assert len(server.connections) == 5


async def test_backoff_resets_only_after_min_uptime(
    server: MockServer, autojump_clock: object
) -> None:
    policy = Backoff(initial=1, factor=2, maximum=60, jitter=0, min_uptime=10)
    async with socket(server, reconnect=policy, ping_interval=None) as sock:
        await sock.wait_connected()
        server.refuse(2)
        await trio.sleep(4)  # up 4 s: shorter than min_uptime
        await server.drop_all()
        assert [r for _, r in await failures(sock, 3)] == [1.0, 2.0, 4.0]
        await sock.wait_connected()
        await trio.sleep(10)  # up 10 s: the count starts again
        await server.drop_all()
        failed = await next_event_skip(sock, ConnectionFailed)
        assert failed.retry_in == 1.0
        assert sock.statistics().consecutive_failures == 1


async def test_jitter_spreads_first_retry(server: MockServer, autojump_clock: object) -> None:
    rng = random.Random(7)
    policy = Backoff(initial=4, jitter=0.5, rng=rng)
    expected = 4 * (1 - 0.5 * random.Random(7).random())
    server.refuse(1)
    async with socket(server, reconnect=policy) as sock:
        failed = await next_event(sock, ConnectionFailed)
        assert failed.retry_in == expected
        assert 2.0 <= expected <= 4.0
        await sock.wait_connected()
        assert trio.current_time() == expected


async def test_fatal_rejection_is_reported_once(server: MockServer, autojump_clock: object) -> None:
    server.reject(401, count=5)
    async with socket(server) as sock:
        failed = await next_event(sock, ConnectionFailed)
        assert isinstance(failed.error, HandshakeRejected)
        assert failed.error.status_code == 401
        assert failed.retry_in is None
        assert not sock.is_open
        await trio.sleep(100)
    assert server.attempts == 1


async def test_503_is_retried(server: MockServer, autojump_clock: object) -> None:
    server.reject(503, count=2)
    async with socket(server) as sock:
        assert [r for _, r in await failures(sock, 2)] == [1.0, 2.0]
        await sock.wait_connected()
    assert server.rejected == [503, 503]


async def test_do_not_come_back_close_code_is_fatal(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, classify=Classifier(fatal_close_codes={4001})) as sock:
        await sock.wait_connected()
        await server.close_all(1008, "policy")  # no longer fatal with this classifier
        failed = await next_event_skip(sock, ConnectionFailed)
        assert failed.retry_in == 1.0
        await sock.wait_connected()
        await server.close_all(4001, "banned")
        failed = await next_event_skip(sock, ConnectionFailed)
        assert isinstance(failed.error, ConnectionLost)
        assert (failed.error.code, failed.error.reason) == (4001, "banned")
        assert failed.retry_in is None
        assert sock.status is Status.DISCONNECTED


async def test_default_1008_is_fatal(server: MockServer, autojump_clock: object) -> None:
    async with socket(server) as sock:
        await sock.wait_connected()
        await server.close_all(1008)
        failed = await next_event_skip(sock, ConnectionFailed)
        assert failed.retry_in is None


async def test_custom_classifier_replaces_default(
    server: MockServer, autojump_clock: object
) -> None:
    server.reject(403, count=1)
    async with socket(server, classify=lambda error: True) as sock:
        failed = await next_event(sock, ConnectionFailed)
        assert failed.retry_in == 1.0
        await sock.wait_connected()


async def test_headers_callable_each_attempt_and_failure_retried(
    server: MockServer, autojump_clock: object
) -> None:
    tokens = iter(["boom", "t2", "t3"])

    def headers() -> dict[str, str]:
        token = next(tokens)
        if token == "boom":
            raise ConnectionError("token service unavailable")
        return {"Authorization": f"Bearer {token}"}

    async with socket(server, headers=headers) as sock:
        failed = await next_event(sock, ConnectionFailed)
        assert "token service unavailable" in str(failed.error)
        assert failed.retry_in == 1.0
        await sock.wait_connected()
        await server.drop_all()
        await next_event_skip(sock, ConnectionFailed)
        await sock.wait_connected()
    assert [c.headers["authorization"] for c in server.connections] == ["Bearer t2", "Bearer t3"]


async def test_invalid_utf8_is_a_retried_protocol_error(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server) as sock:
        connection = await server.wait_connections(1)
        await connection.send("fine")
        await connection.send_raw(bytes([0x81, 2]) + b"\xff\xfe")  # text frame, bad UTF-8
        assert (await next_event_skip(sock, MessageReceived)).message == "fine"
        failed = await next_event(sock, ConnectionFailed)
        assert isinstance(failed.error, ProtocolError)
        assert failed.retry_in == 1.0
        await sock.wait_connected()


async def test_oversized_message_closes_1009_and_retries(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, max_message_size=100) as sock:
        connection = await server.wait_connections(1)
        await connection.send("x" * 100)
        await connection.send("y" * 101)
        assert (await next_event_skip(sock, MessageReceived)).message == "x" * 100
        failed = await next_event(sock, ConnectionFailed)
        assert isinstance(failed.error, ConnectionLost)
        assert failed.error.code == 1009
        assert not failed.error.by_server
        assert failed.retry_in == 1.0
        await sock.wait_connected()
    assert server.connections[0].close_code == 1009


async def test_close_mid_frame_is_retried(server: MockServer, autojump_clock: object) -> None:
    async with socket(server) as sock:
        connection = await server.wait_connections(1)
        await connection.send_raw(bytes([0x81, 10]) + b"abc")  # 3 of 10 bytes
        await connection.drop()
        failed = await next_event_skip(sock, ConnectionFailed)
        assert isinstance(failed.error, ConnectionLost)
        assert failed.error.code == 1006
        assert failed.retry_in == 1.0
        await sock.wait_connected()


async def test_server_messages_before_close_are_all_delivered(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server) as sock:
        connection = await server.wait_connections(1)
        for i in range(20):
            await connection.send(str(i))
        await connection.close(1001)
        got = []
        async for event in sock.events():
            if isinstance(event, MessageReceived):
                got.append(event.message)
            elif isinstance(event, ConnectionFailed):
                break
    assert got == [str(i) for i in range(20)]


async def test_connect_timeout_in_memory_is_exact(
    server: MockServer, autojump_clock: object
) -> None:
    server.delay_handshake(100, count=1)
    async with socket(server, connect_timeout=7) as sock:
        failed = await next_event(sock, ConnectionFailed)
        assert "connect_timeout=7" in str(failed.error)
        assert trio.current_time() == 7.0
        await sock.wait_connected()
        assert trio.current_time() == 8.0


class _GatedStream(WrappedStream):
    """A client stream whose writes can be held, to catch a message in flight."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        super().__init__(inner)
        self.hold = False
        self.holding = trio.Event()
        self.closed = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.hold:
            self.holding.set()
            await self.closed.wait()  # as trio's streams do, closing wakes a write
            raise trio.ClosedResourceError
        await self.inner.send_all(data)

    async def aclose(self) -> None:
        self.closed.set()
        await self.inner.aclose()


async def test_message_in_flight_at_loss_is_reported_not_resent(
    server: MockServer, autojump_clock: object
) -> None:
    streams: list[_GatedStream] = []

    async def open_stream(url: str) -> trio.abc.Stream:
        streams.append(_GatedStream(await server.open_stream(url)))
        return streams[-1]

    async with client_socket(
        "ws://app/x", open_stream=open_stream, reconnect=Backoff(jitter=0)
    ) as sock:
        await sock.wait_connected()
        await sock.send("delivered")
        await server.wait_for(lambda: server.received == ["delivered"])
        streams[0].hold = True
        async with trio.open_nursery() as nursery:
            # written by that task itself (the connection is idle), held there
            nursery.start_soon(sock.send, "in flight")
            await streams[0].holding.wait()
            await sock.send("queued behind it")
            await server.drop_all()
            events = []
            async for event in sock.events():
                events.append(event)
                if isinstance(event, Connected) and len(events) > 2:
                    break
        assert Undelivered(messages=("in flight",), reason="in flight") in events
        assert any(
            isinstance(e, ConnectionFailed) and isinstance(e.error, ConnectionLost) for e in events
        )
        await server.wait_for(lambda: len(server.received) == 2)
    assert server.received == ["delivered", "queued behind it"]
    assert sock.statistics().messages_dropped == 1


async def test_connect_limiter_bounds_concurrent_attempts(
    server: MockServer, autojump_clock: object
) -> None:
    server.delay_handshake(5, count=2)
    limiter = trio.CapacityLimiter(1)
    async with (
        socket(server, connect_limiter=limiter, connect_timeout=7) as first,
        socket(server, connect_limiter=limiter, connect_timeout=7) as second,
    ):
        await first.wait_connected()
        await second.wait_connected()
    # one handshake at a time, and the timeout counts from when the slot is had
    assert sorted(c.opened_at for c in server.connections) == [5.0, 10.0]
    assert first.statistics().attempts == second.statistics().attempts == 1


class _HeldAfterMessage(WrappedStream):
    """Holds the message frame until ``release``, then holds the next write
    (the automatic pong that waited behind it) forever."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        super().__init__(inner)
        self.armed = False
        self.holding = trio.Event()
        self.release = trio.Event()
        self.stuck = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.armed:
            if not self.release.is_set():
                self.holding.set()
                await self.release.wait()
            else:
                self.stuck.set()
                await trio.sleep_forever()
        await self.inner.send_all(data)


@pytest.mark.parametrize("size", [5, 100_000], ids=["direct", "writer"])
async def test_write_cancelled_after_its_frame_went_counts_the_message_sent(
    server: MockServer, autojump_clock: object, each_transport: str, size: int
) -> None:
    if each_transport == "trio-websocket":
        pytest.skip("trio-websocket writes its pongs itself, past our write gate")
    # The frame went whole; the write was then cancelled while it flushed the
    # pong that waited behind it. The message is sent: not resent, not reported.
    message = "x" * size
    streams: list[_HeldAfterMessage] = []

    async def open_stream(url: str) -> trio.abc.Stream:
        streams.append(_HeldAfterMessage(await server.open_stream(url)))
        return streams[-1]

    events: list[object] = []
    async with client_socket(
        "ws://app/x",
        open_stream=open_stream,
        reconnect=Backoff(jitter=0),
        close_timeout=1,
    ) as sock:
        await sock.wait_connected()
        connection = await server.wait_connections(1)
        streams[0].armed = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sock.send, message)
            await streams[0].holding.wait()
            await connection.send_raw(b"\x89\x00")  # a ping: its pong waits for the gate
            await trio.testing.wait_all_tasks_blocked()
            streams[0].release.set()
            await streams[0].stuck.wait()
            if size < 100_000:
                nursery.cancel_scope.cancel()  # cancels the send() writing it
        await server.wait_for(lambda: server.received == [message])
        if size < 100_000:
            async for event in sock.events():
                events.append(event)
                if isinstance(event, Connected) and len(events) > 2:
                    break
            await sock.send("next")
            await server.wait_for(lambda: len(server.received) == 2)
        # else: close() gives up waiting and cancels the writer task
    async for event in sock.events():  # what is left; ends as the socket closed
        events.append(event)
    assert not any(isinstance(e, Undelivered) for e in events)
    assert server.received == [message] + (["next"] if size < 100_000 else [])
    assert sock.statistics().messages_sent == 1 + (size < 100_000)
    assert sock.statistics().messages_dropped == 0
