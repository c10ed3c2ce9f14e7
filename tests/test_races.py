"""Races and cancellation around open(), close(), send() and exit (review findings)."""

from __future__ import annotations

import contextlib

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
    KeepaliveTimeout,
    MessageReceived,
    OutboxFullError,
    SocketClosedError,
    State,
    Status,
    Undelivered,
)
from trio_clientsocket.testing import MockServer, ServerConnection

from .conftest import WrappedStream, client_socket, next_event_skip
from .test_lifecycle import _drain, socket

pytestmark = pytest.mark.usefixtures("each_transport")


async def test_exit_after_give_up_with_full_event_buffer(
    server: MockServer, autojump_clock: object
) -> None:
    server.reject(403)
    async with socket(server, event_buffer=1) as sock:
        await sock.send("order-1")
        await trio.sleep(1)  # gave up; nobody reads events
        assert not sock.is_open
    events = _drain(sock)
    assert isinstance(events[0], ConnectionFailed)
    assert events[0].retry_in is None
    assert Undelivered(messages=("order-1",), reason="gave up") in events


async def test_cancel_while_entering_does_not_hang(
    server: MockServer, autojump_clock: object
) -> None:
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:

            async def cancel() -> None:
                scope.cancel()

            nursery.start_soon(cancel)
            async with socket(server):
                raise AssertionError("not reached")
    assert scope.cancelled_caught
    await trio.testing.wait_all_tasks_blocked()
    assert not server.open_connections


async def test_cancelled_close_still_closes_then_open_works(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, ping_interval=None, close_timeout=3) as sock:
        await sock.wait_connected()
        server.stall()
        with trio.move_on_after(0.5):
            await sock.close()
        assert sock.statistics().state is State.IDLE
        assert not sock.is_open
        server.resume()
        await sock.open()
        await sock.wait_connected()


async def test_open_while_giving_up_with_full_buffer(
    server: MockServer, autojump_clock: object
) -> None:
    server.reject(403)
    async with socket(server, event_buffer=1) as sock:
        await sock.send("hello")
        await trio.sleep(2)
        await sock.open()
        await sock.wait_connected()
        await next_event_skip(sock, Connected)  # past the first run's reports
        await server.close_all(1001)  # the new run reconnects as usual
        failed = await next_event_skip(sock, ConnectionFailed)
        assert failed.retry_in is not None
        await sock.wait_connected()
        assert sock.status is Status.CONNECTED


class _SlowUplink(WrappedStream):
    """20 kB/s uplink; the peer is alive and reading."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        for start in range(0, len(data), 2000):
            await trio.sleep(0.1)
            await self.inner.send_all(data[start : start + 2000])

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_drop_oldest_never_drops_the_message_being_written(
    server: MockServer, autojump_clock: object
) -> None:
    async def slow(url: str) -> trio.abc.Stream:
        return _SlowUplink(await server.open_stream(url))

    async with client_socket(
        "ws://x/", open_stream=slow, outbox_size=1, overflow="drop-oldest", ping_interval=None
    ) as sock:
        await sock.wait_connected()
        await sock.send("A" * 100_000)  # too big to write directly: the writer takes it
        await trio.sleep(0.01)
        await sock.send("B")
        await sock.send("C")  # the outbox (1) holds B: B is dropped, not A
        with pytest.raises(OutboxFullError):  # B will never be written
            await sock.wait_sent()
        await server.wait_for(lambda: len(server.received) == 2)
    assert server.received == ["A" * 100_000, "C"]
    assert Undelivered(messages=("B",), reason="dropped") in _drain(sock)


async def test_sends_behind_a_direct_write_wait_for_it_in_order(
    server: MockServer, autojump_clock: object
) -> None:
    """A small send() on an idle connection is written by the calling task; sends
    from other tasks meanwhile queue behind it, and nothing overtakes it."""

    async def slow(url: str) -> trio.abc.Stream:
        return _SlowUplink(await server.open_stream(url))

    async with client_socket("ws://x/", open_stream=slow, ping_interval=None) as sock:
        await sock.wait_connected()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sock.send, "A" * 5000)  # 0.3 s on this uplink
            await trio.sleep(0.05)
            assert sock.statistics().outbox_depth == 1  # in flight, in that task
            await sock.send("B")
            sock.send_nowait("C")
        await sock.wait_sent()
        assert sock.statistics().messages_sent == 3
    assert server.received == ["A" * 5000, "B", "C"]


async def test_send_cancelled_part_way_through_a_frame_ends_the_connection(
    server: MockServer, autojump_clock: object
) -> None:
    """Part of the frame is on the wire: the connection cannot carry another
    message. It ends, the message is reported, and the socket reconnects."""

    async def slow(url: str) -> trio.abc.Stream:
        return _SlowUplink(await server.open_stream(url))

    async with client_socket(
        "ws://x/", open_stream=slow, ping_interval=None, reconnect=Backoff(jitter=0.0)
    ) as sock:
        await sock.wait_connected()
        with trio.move_on_after(0.25):  # two of five 2000-byte pieces written
            await sock.send("A" * 10_000)
        seen = []
        async for event in sock.events():
            seen.append(event)
            if isinstance(event, ConnectionFailed):
                break
        assert Undelivered(messages=("A" * 10_000,), reason="in flight") in seen
        failed = seen[-1]
        assert isinstance(failed, ConnectionFailed)
        assert isinstance(failed.error, ConnectionLost)
        assert failed.retry_in is not None
        await sock.wait_connected()
        await sock.send("after")
        await server.wait_for(lambda: "after" in server.received)
        assert sock.statistics().messages_dropped == 1
    assert server.received == ["after"]


async def test_send_cancelled_before_writing_leaves_the_connection_alone(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server) as sock:
        await sock.wait_connected()
        with trio.CancelScope() as scope:
            scope.cancel()
            await sock.send("never")
        await sock.send("next")
        await server.wait_for(lambda: len(server.received) == 1)
        stats = sock.statistics()
        assert (stats.attempts, stats.messages_sent, stats.messages_dropped) == (1, 1, 0)
    assert server.received == ["next"]


async def test_reports_go_past_a_full_event_buffer(
    server: MockServer, autojump_clock: object
) -> None:
    await server.stop()
    async with socket(server, event_buffer=1) as sock:
        await sock.send("order-1")
        await sock.send("order-2")
        await trio.sleep(0.1)  # a ConnectionFailed fills the buffer
    kinds = [type(e) for e in _drain(sock)]
    assert kinds == [ConnectionFailed, Undelivered, Closed]


async def test_cancelled_send_queues_nothing(server: MockServer, autojump_clock: object) -> None:
    async with socket(server) as sock:
        await sock.wait_connected()
        with trio.CancelScope() as scope:
            scope.cancel()
            await sock.send("pay $100")
        await trio.sleep(1)
    assert server.received == []


async def test_slow_uplink_is_not_a_dead_peer(server: MockServer, autojump_clock: object) -> None:
    async def slow(url: str) -> trio.abc.Stream:
        return _SlowUplink(await server.open_stream(url))

    async with client_socket("ws://x/", open_stream=slow, ping_interval=5, ping_timeout=10) as sock:
        await sock.wait_connected()
        await sock.send("x" * 600_000)  # a 30 s upload holds every ping back
        await server.wait_for(lambda: len(server.received) == 1)
        assert trio.current_time() > 30
        assert sock.statistics().attempts == 1
        server.stall()
        failed = await next_event_skip(sock, ConnectionFailed)
        assert isinstance(failed.error, KeepaliveTimeout)


async def test_close_while_connected_event_waits_is_prompt(
    server: MockServer, autojump_clock: object
) -> None:
    server.refuse(1)
    async with socket(server, event_buffer=1, reconnect=Backoff(initial=0.1, jitter=0)) as sock:
        await sock.wait_connected()  # ConnectionFailed fills the buffer: Connected waits
        start = trio.current_time()
        await sock.close()
        assert trio.current_time() == start
    assert server.connections[0].close_code == 1000


async def test_exit_with_full_outbox_and_blocked_sender_is_bounded(
    server: MockServer, autojump_clock: object
) -> None:
    await server.stop()
    with trio.move_on_after(10):
        async with socket(server, outbox_size=2, close_timeout=1) as sock, trio.open_nursery() as n:
            await sock.send("a")
            await sock.send("b")
            n.start_soon(sock.send, "c")  # waits: the outbox is full
            await trio.sleep_forever()
    assert trio.current_time() == 10.0  # cancelled at 10; nothing connected to close
    assert Undelivered(messages=("a", "b"), reason="closed") in _drain(sock)


async def test_ping_then_close_in_one_read(server: MockServer, autojump_clock: object) -> None:
    async with socket(server) as sock:
        connection = await server.wait_connections(1)
        close = bytes([0x88, 9]) + (1008).to_bytes(2, "big") + b"go away"
        await connection.send_raw(bytes([0x81, 4]) + b"last" + bytes([0x89, 2]) + b"hi" + close)
        got = []
        async for event in sock.events():
            if isinstance(event, MessageReceived):
                got.append(event.message)
            if isinstance(event, ConnectionFailed):
                failed = event
                break
    assert got == ["last"]
    assert isinstance(failed.error, ConnectionLost)
    assert failed.error.code == 1008
    assert failed.retry_in is None  # 1008 is fatal: not retried


async def test_close_just_after_a_drop_is_prompt(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server) as sock:
        await sock.wait_connected()
        await server.drop_all()
        await trio.lowlevel.checkpoint()
        await sock.send("late")
        start = trio.current_time()
        assert await sock.close() == ("late",)
        assert trio.current_time() == start
        assert sock.status is Status.DISCONNECTED


async def test_exit_waits_for_a_close_under_way(server: MockServer, autojump_clock: object) -> None:
    async with socket(server, close_timeout=3) as sock, trio.open_nursery() as nursery:
        await sock.wait_connected()
        server.stall()
        nursery.start_soon(sock.close)
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(1)
        server.resume()  # the server answers the close frame at t=1
    assert trio.current_time() == 1.0
    assert server.connections[0].close_code == 1000


async def test_drop_oldest_reports_are_merged(server: MockServer, autojump_clock: object) -> None:
    server.up = False
    async with socket(server, outbox_size=2, overflow="drop-oldest", event_buffer=4) as sock:
        for i in range(1000):
            await sock.send(str(i))
        assert len(sock.events()) <= 4 + 1
    dropped = [e for e in _drain(sock) if isinstance(e, Undelivered) and e.reason == "dropped"]
    # every drop is counted; the payloads kept are bounded (outbox_size +
    # event_buffer of them), oldest first
    assert sum(e.count for e in dropped) == 998
    assert [m for e in dropped for m in e.messages] == [str(i) for i in range(6)]


async def test_burst_while_the_event_buffer_is_full_at_reconnect_loses_nothing(
    server: MockServer, autojump_clock: object
) -> None:
    """The buffer is full when the socket reconnects: Connected never waits (it
    goes into the reserve), and the server's first messages wait behind it."""

    async def burst(server: MockServer, connection: object) -> None:
        if len(server.connections) == 2:
            for i in range(40):
                await server.connections[1].send(f"second {i}")

    server.opened_handler = burst
    async with socket(server, event_buffer=64, ping_interval=None) as sock:
        first = await server.wait_connections(1)
        for i in range(62):
            await first.send(f"first {i}")
        await trio.testing.wait_all_tasks_blocked()
        await first.drop()  # ConnectionFailed fills the buffer: 64 events
        await server.wait_connections(2)
        await trio.testing.wait_all_tasks_blocked()
        assert len(sock.events()) == 65  # Connected went past the bound; the burst waits
        got = []
        async for event in sock.events():
            if isinstance(event, MessageReceived):
                got.append(event.message)
                if len(got) == 102:
                    break
    assert got == [f"first {i}" for i in range(62)] + [f"second {i}" for i in range(40)]


class _UplinkCut(WrappedStream):
    """Writes fail once ``cut`` is set, as when the peer has reset the connection."""

    cut = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.cut:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError
        await self.inner.send_all(data)


async def test_server_close_whose_reply_cannot_be_written_is_reported_at_once(
    server: MockServer, autojump_clock: object
) -> None:
    """The server's close frame arrives, and answering it fails: the socket must
    still see the connection end now, not at the next keepalive ping."""
    streams: list[_UplinkCut] = []

    async def open_stream(url: str) -> trio.abc.Stream:
        streams.append(_UplinkCut(await server.open_stream(url)))
        return streams[-1]

    async with client_socket(
        "ws://x/", open_stream=open_stream, reconnect=Backoff(jitter=0.0)
    ) as sock:
        await sock.wait_connected()
        streams[0].cut = True
        await server.close_all(1001, "going away")
        with trio.fail_after(1):  # keepalive would notice only after 20 s
            failed = await next_event_skip(sock, ConnectionFailed)
        assert isinstance(failed.error, ConnectionLost)
        assert failed.error.code == 1001
        assert failed.retry_in is not None
        await sock.wait_connected()


async def test_a_fatal_close_racing_sends_keeps_its_code(
    server: MockServer, autojump_clock: object
) -> None:
    """A ping and a 1008 close arrive in one read while the application keeps
    sending: a send refused because the close frame came first must not turn the
    server's 1008 ("do not come back") into a retried 1006."""
    for _ in range(5):
        async with socket(server, ping_interval=None) as sock:
            connection = await server.wait_connections(len(server.connections) + 1)

            async def keep_sending(sock: ClientSocket = sock) -> None:
                with contextlib.suppress(SocketClosedError):
                    for i in range(2_000):
                        await sock.send(f"m{i}")

            def flowing(c: ServerConnection = connection) -> bool:
                return len(c.received) >= 20

            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_sending)
                await server.wait_for(flowing)
                # ping (empty), then close 1008, unmasked server frames, one write
                await connection.send_raw(b"\x89\x00" + b"\x88\x02\x03\xf0")
                failed = await next_event_skip(sock, ConnectionFailed)
                nursery.cancel_scope.cancel()
            assert isinstance(failed.error, ConnectionLost)
            assert failed.error.code == 1008
            assert failed.retry_in is None
