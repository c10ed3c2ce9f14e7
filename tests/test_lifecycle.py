"""ClientSocket lifecycle, events, status and outbox, in memory on the mock clock."""

from __future__ import annotations

import math
from typing import TypeVar

import pytest
import trio
import trio.testing

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    Closed,
    Connected,
    ConnectionFailed,
    ConnectionLost,
    Event,
    MessageReceived,
    OutboxFullError,
    SocketClosedError,
    State,
    Status,
    Undelivered,
)
from trio_clientsocket._loop import UrlSource
from trio_clientsocket.testing import MockServer, open_mock_server

from .conftest import EXACT, URL, client_socket, next_event_skip

pytestmark = pytest.mark.usefixtures("each_transport")

E = TypeVar("E", bound=Event)


async def next_event(sock: ClientSocket, kind: type[E]) -> E:
    """The next event, which must be of ``kind``."""
    event = await sock.events().receive()
    assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
    return event


def socket(server: MockServer, url: UrlSource | None = URL, **options: object) -> ClientSocket:
    options.setdefault("reconnect", EXACT)
    return client_socket(url, open_stream=server.open_stream, **options)


async def test_connect_event_status_order(server: MockServer, autojump_clock: object) -> None:
    async with socket(server) as sock:
        assert sock.status is Status.DISCONNECTED
        event = await next_event(sock, Connected)
        assert event.url == URL
        assert sock.status is Status.CONNECTED
        assert sock.statistics().state is State.CONNECTED
        connection = server.connections[0]
        assert connection.client_id == "client-1"
        assert connection.path == "/app/gxwebsocket?client-1"
    assert sock.status is Status.DISCONNECTED
    assert await next_event(sock, Closed) == Closed(url=URL)
    with pytest.raises(trio.EndOfChannel):
        await sock.events().receive()
    assert connection.close_code == 1000


async def test_echo_text_and_binary_in_order(server: MockServer, autojump_clock: object) -> None:
    async with socket(server) as sock:
        messages: list[str | bytes] = [
            f"m{i}" if i % 3 else bytes([i % 256]) * 3 for i in range(300)
        ]
        for message in messages:
            await sock.send(message)
        await next_event(sock, Connected)
        got = [(await next_event(sock, MessageReceived)).message for _ in messages]
    assert got == messages
    assert server.received == messages
    stats = sock.statistics()
    assert stats.messages_sent == stats.messages_received == 300
    assert stats.bytes_sent > 0
    assert stats.bytes_received > 0


async def test_no_url_waits_for_open(server: MockServer, autojump_clock: object) -> None:
    async with socket(server, None) as sock:
        await trio.sleep(60)
        assert sock.status is Status.DISCONNECTED
        assert server.attempts == 0
        with pytest.raises(SocketClosedError):
            await sock.send("too early")
        with pytest.raises(SocketClosedError):
            await sock.open()
        await sock.open(URL)
        await sock.wait_connected()
        assert sock.status is Status.CONNECTED


async def test_close_then_open_again(server: MockServer, autojump_clock: object) -> None:
    async with socket(server) as sock:
        await sock.wait_connected()
        await sock.send("before")
        await next_event(sock, Connected)
        await next_event(sock, MessageReceived)
        assert await sock.close() == ()
        assert sock.status is Status.DISCONNECTED
        assert server.connections[0].close_code == 1000
        assert server.received == ["before"]
        with pytest.raises(SocketClosedError):
            await sock.send("while closed")
        assert await sock.close() == ()  # idempotent
        await sock.open()
        await sock.wait_connected()
        await sock.send("after")
        await next_event(sock, Closed)
        await next_event(sock, Connected)
        await next_event(sock, MessageReceived)
    assert server.received == ["before", "after"]
    assert [type(e) for e in _drain(sock)] == [Closed]


def _drain(sock: ClientSocket) -> list[Event]:
    events: list[Event] = []
    while True:
        try:
            events.append(sock.events().receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return events


async def test_open_switches_servers(autojump_clock: object) -> None:
    async with open_mock_server() as first, open_mock_server() as second:

        async def opener(url: str) -> trio.abc.Stream:
            return await (first if "first" in url else second).open_stream(url)

        async with client_socket("ws://first/x", open_stream=opener) as sock:
            await sock.wait_connected()
            await sock.send("to first")
            await first.wait_for(lambda: first.received == ["to first"])
            await sock.open("ws://second/y")
            assert first.connections[0].close_code == 1000
            await sock.wait_connected()
            assert sock.url == "ws://second/y"
            await sock.send("to second")
            await second.wait_for(lambda: second.received == ["to second"])
        assert first.received == ["to first"]


async def test_send_while_connecting_is_queued_in_order(
    server: MockServer, autojump_clock: object
) -> None:
    server.refuse(3)
    async with socket(server) as sock:
        for i in range(10):
            await sock.send(str(i))
        assert sock.statistics().outbox_depth == 10
        await sock.wait_connected()
        # 1 + 2 + 4 s of backoff before the fourth attempt
        assert trio.current_time() == 7.0
        await server.wait_for(lambda: len(server.received) == 10)
    assert server.received == [str(i) for i in range(10)]


async def test_server_refusing_then_accepting_exact_backoff(
    server: MockServer, autojump_clock: object
) -> None:
    server.refuse(5)
    async with socket(server) as sock:
        delays = []
        for _ in range(5):
            failed = await next_event(sock, ConnectionFailed)
            assert isinstance(failed.error, OSError)
            assert sock.status is Status.DISCONNECTED
            delays.append((trio.current_time(), failed.retry_in))
        await next_event(sock, Connected)
        assert trio.current_time() == 1 + 2 + 4 + 8 + 8
    assert delays == [(0, 1.0), (1, 2.0), (3, 4.0), (7, 8.0), (15, 8.0)]
    assert server.attempts == 6


async def test_max_attempts_gives_up_and_closes(server: MockServer, autojump_clock: object) -> None:
    server.refuse(3)
    policy = Backoff(initial=1, jitter=0, max_attempts=3)
    async with socket(server, reconnect=policy) as sock:
        await sock.send("queued")
        retries = [(await next_event(sock, ConnectionFailed)).retry_in for _ in range(3)]
        assert retries == [1.0, 2.0, None]
        # the state changed before the event was delivered
        assert sock.status is Status.DISCONNECTED
        assert not sock.is_open
        with pytest.raises(SocketClosedError):
            await sock.send("after giving up")
        undelivered = await next_event(sock, Undelivered)
        assert undelivered == Undelivered(messages=("queued",), reason="gave up")
        with pytest.raises(SocketClosedError):
            await sock.wait_connected()
        await sock.open()  # open() works again after giving up
        await sock.wait_connected()
    assert server.attempts == 4


async def test_reconnect_none_tries_once(server: MockServer, autojump_clock: object) -> None:
    server.refuse(1)
    async with socket(server, reconnect=None) as sock:
        failed = await next_event(sock, ConnectionFailed)
        assert failed.retry_in is None
        assert not sock.is_open
    assert server.attempts == 1


async def test_reconnects_after_server_close(server: MockServer, autojump_clock: object) -> None:
    async with socket(server) as sock:
        await next_event(sock, Connected)
        await server.close_all(1001, "going away")
        failed = await next_event(sock, ConnectionFailed)
        assert isinstance(failed.error, ConnectionLost)
        assert (failed.error.code, failed.error.by_server) == (1001, True)
        assert failed.retry_in == 1.0
        await next_event(sock, Connected)
        assert sock.statistics().reconnects == 1
    assert len(server.connections) == 2


async def test_outage_queue_then_deliver_in_order(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server) as sock:
        await sock.wait_connected()
        sent = []
        for outage in range(3):
            await sock.send(f"up-{outage}")
            sent.append(f"up-{outage}")
            await server.wait_for(lambda: server.received == sent)
            await server.stop()
            await next_event_skip(sock, ConnectionFailed)
            for i in range(5):
                await sock.send(f"down-{outage}-{i}")
                sent.append(f"down-{outage}-{i}")
            await trio.sleep(30)
            await server.start()
            await sock.wait_connected()
        await server.wait_for(lambda: len(server.received) == len(sent))
    assert server.received == sent
    assert sock.statistics().messages_dropped == 0


async def test_events_buffered_before_iteration_and_resumable(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server) as sock:
        for i in range(5):
            await sock.send(str(i))
        await server.wait_for(lambda: len(server.received) == 5)
        await trio.testing.wait_all_tasks_blocked()
        seen = []
        async for event in sock.events():
            seen.append(event)
            if len(seen) == 3:
                break
        async for event in sock.events():
            seen.append(event)
            if len(seen) == 6:
                break
    assert seen[0] == Connected(url=URL)
    assert [e.message for e in seen[1:] if isinstance(e, MessageReceived)] == list("01234")


async def test_full_event_buffer_applies_backpressure(autojump_clock: object) -> None:
    async with open_mock_server() as server, socket(server, event_buffer=4) as sock:
        connection = await server.wait_connections(1)
        for i in range(50):
            await connection.send(str(i))
        await trio.testing.wait_all_tasks_blocked()
        # 4 buffered events at most; the rest waits in the transport
        assert sock.statistics().messages_received <= 4 + 2
        got = []
        async for event in sock.events():
            if isinstance(event, MessageReceived):
                got.append(event.message)
                if len(got) == 50:
                    break
    assert got == [str(i) for i in range(50)]


async def test_outbox_overflow_modes(server: MockServer, autojump_clock: object) -> None:
    server.up = False
    async with socket(server, outbox_size=2, overflow="raise") as sock:
        await sock.send("a")
        sock.send_nowait("b")
        with pytest.raises(OutboxFullError):
            await sock.send("c")
        with pytest.raises(OutboxFullError):
            sock.send_nowait("c")
    async with socket(server, outbox_size=2, overflow="drop-oldest") as sock:
        for m in "abc":
            await sock.send(m)
        server.up = True
        await sock.wait_connected()
        await server.wait_for(lambda: len(server.received) == 2)
        assert sock.statistics().messages_dropped == 1
    assert server.received == ["b", "c"]
    assert Undelivered(messages=("a",), reason="dropped") in _drain(sock)


async def test_outbox_full_send_waits(server: MockServer, autojump_clock: object) -> None:
    server.up = False
    async with socket(server, outbox_size=2) as sock:
        await sock.send("a")
        await sock.send("b")
        with pytest.raises(OutboxFullError):
            sock.send_nowait("c")
        with trio.move_on_after(5) as waited:
            await sock.send("c")
        assert waited.cancelled_caught
        server.up = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sock.send, "c")
        await server.wait_for(lambda: len(server.received) == 3)
    assert server.received == ["a", "b", "c"]


async def test_close_reports_what_could_not_be_flushed(
    server: MockServer, autojump_clock: object
) -> None:
    server.up = False
    async with socket(server) as sock:
        await sock.send("x")
        await sock.send("y")
        assert await sock.close() == ("x", "y")
        assert sock.status is Status.DISCONNECTED
    events = _drain(sock)
    assert Undelivered(messages=("x", "y"), reason="closed") in events
    assert events[-1] == Closed(url=URL)


async def test_close_flushes_outbox_before_1000(server: MockServer, autojump_clock: object) -> None:
    async with socket(server) as sock:
        await sock.wait_connected()
        for i in range(100):
            sock.send_nowait(str(i))
    assert server.received == [str(i) for i in range(100)]
    assert server.connections[0].close_code == 1000


async def test_exit_while_connecting_is_prompt(server: MockServer, autojump_clock: object) -> None:
    server.delay_handshake(1000)
    async with socket(server) as sock:
        await trio.sleep(1)
        assert sock.statistics().state is State.CONNECTING
    assert trio.current_time() == 1.0


async def test_exit_with_unresponsive_peer_within_close_timeout(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, close_timeout=2.5, ping_interval=None) as sock:
        await sock.wait_connected()
        server.stall()
        await sock.send("never read")
        start = trio.current_time()
    assert trio.current_time() - start == 2.5
    assert sock.status is Status.DISCONNECTED


async def test_cancel_from_outside_closes_and_returns(
    server: MockServer, autojump_clock: object
) -> None:
    with trio.move_on_after(5):
        async with socket(server) as sock:
            await sock.wait_connected()
            await trio.sleep_forever()
    assert trio.current_time() == 5.0
    assert sock.status is Status.DISCONNECTED
    assert server.connections[0].close_code == 1000


async def test_cancel_from_outside_with_frozen_peer_is_bounded(
    server: MockServer, autojump_clock: object
) -> None:
    with trio.move_on_after(5):
        async with socket(server, close_timeout=1) as sock:
            await sock.wait_connected()
            server.stall()
            await trio.sleep_forever()
    # a cancelled close is prompt: it does not wait out close_timeout
    assert trio.current_time() == 5.0


async def test_user_exception_propagates_ungrouped(
    server: MockServer, autojump_clock: object
) -> None:
    async def fail_inside() -> None:
        async with socket(server) as sock:
            await sock.wait_connected()
            raise KeyError("mine")

    with pytest.raises(KeyError):
        await fail_inside()
    assert server.connections[0].close_code == 1000


async def test_url_callable_is_evaluated_each_attempt(
    server: MockServer, autojump_clock: object
) -> None:
    calls = []

    async def url() -> str:
        calls.append(trio.current_time())
        if len(calls) == 1:
            raise RuntimeError("token service down")
        return f"ws://app/gxwebsocket?token-{len(calls)}"

    async with socket(server, url) as sock:
        failed = await next_event(sock, ConnectionFailed)
        assert "token service down" in str(failed.error)
        assert failed.retry_in == 1.0
        connected = await next_event(sock, Connected)
        assert connected.url == "ws://app/gxwebsocket?token-2"
    assert server.connections[0].client_id == "token-2"
    assert calls == [0.0, 1.0]


async def test_headers_and_basic_auth_are_sent(server: MockServer, autojump_clock: object) -> None:
    async with socket(
        server, "ws://alice:s3cret@app/x", headers={"Cookie": "GX_CLIENT_ID=abc"}
    ) as sock:
        await sock.wait_connected()
    headers = server.connections[0].headers
    assert headers["cookie"] == "GX_CLIENT_ID=abc"
    assert headers["authorization"] == "Basic YWxpY2U6czNjcmV0"


async def test_entering_twice_is_an_error(server: MockServer, autojump_clock: object) -> None:
    sock = socket(server)
    async with sock:
        pass
    with pytest.raises(RuntimeError):
        async with sock:
            pass


async def test_statistics_snapshot(server: MockServer, autojump_clock: object) -> None:
    server.refuse(1)
    async with socket(server, ping_interval=5, ping_timeout=5) as sock:
        await sock.wait_connected()
        await trio.sleep(6)
        stats = sock.statistics()
    assert stats.attempts == 2
    assert isinstance(stats.last_error, OSError)
    assert stats.last_rtt is not None
    assert math.isfinite(stats.last_rtt)
    assert stats.state is State.CONNECTED
