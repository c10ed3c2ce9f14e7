"""An attack on ``ClientSocket.ping()`` and ``ping_events`` (commit 0cc1c61),
as a hostile server and a careless caller: cancellation at every point,
concurrency with send/close/keepalive, wrong or oversized pongs, floods of
pings against an application that does not read, and the socket's ends.

The bugs it found (a cancelled ping on trio-websocket, given-up pings
leaving tasks, a ping after the connection ended, wait_connected() right
after an end, pings delivered ahead of earlier messages) are fixed; their
tests stay here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import WSConnection
from wsproto.events import Ping

from trio_clientsocket import (
    ClientSocket,
    Connected,
    ConnectionFailed,
    KeepaliveTimeout,
    MessageReceived,
    NotConnectedError,
    PingReceived,
    PongReceived,
    ProtocolError,
    Skipped,
    Status,
)
from trio_clientsocket.testing import MockServer

from ._hostile_helpers import drain, ping_server, raw_server, server_frame
from .conftest import EXACT, URL, WrappedStream, client_socket, next_event_skip

ENGINES = ["websockets", "wsproto"]
TRANSPORTS = ["websockets", "wsproto", "trio-websocket"]
PING_OPCODE, PONG_OPCODE = 0x9, 0xA
LIMIT = 600.0
"""Mock seconds within which every test here ends (a hang fails, it does not stall)."""

# -- a client stream whose writes can be held ---------------------------------------


class HeldUplink(WrappedStream):
    """The client's stream: writes that ``hold`` picks wait until ``release()``
    (as a network that takes nothing more). Closing the stream ends a held
    write with ``ClosedResourceError``, as a real socket does."""

    def __init__(self, inner: trio.abc.Stream, hold: Callable[[bytes], bool] | None) -> None:
        super().__init__(inner)
        self.hold = hold
        self.holding = trio.Event()
        self._lot = trio.lowlevel.ParkingLot()
        self.closed = False
        self.sent: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        chunk = bytes(data)
        while self.hold is not None and self.hold(chunk) and not self.closed:
            self.holding.set()
            await self._lot.park()
        if self.closed:
            raise trio.ClosedResourceError("the stream was closed")
        await self.inner.send_all(chunk)
        self.sent.append(chunk)

    def release(self) -> None:
        self.hold = None
        self._lot.unpark_all()

    async def aclose(self) -> None:
        self.closed = True
        self._lot.unpark_all()
        await self.inner.aclose()


def is_ping_frame(data: bytes) -> bool:
    return bool(data) and data[0] == 0x80 | PING_OPCODE


class Uplinks:
    """An ``open_stream`` that holds the first connection's writes that
    ``hold`` picks; later connections pass through."""

    def __init__(self, server: MockServer, hold: Callable[[bytes], bool]) -> None:
        self.server = server
        self._hold = hold
        self.links: list[HeldUplink] = []

    async def open_stream(self, url: str) -> trio.abc.Stream:
        inner = await self.server.open_stream(url)
        link = HeldUplink(inner, None if self.links else self._hold)
        self.links.append(link)
        return link


def sock_on(server: MockServer, transport: str, opener: Any = None, **options: Any) -> ClientSocket:
    return opened(opener if opener is not None else server.open_stream, transport, **options)


def opened(opener: Any, transport: str, **options: Any) -> ClientSocket:
    """A socket on ``transport`` through ``opener``; keepalive off unless given."""
    options.setdefault("reconnect", EXACT)
    options.setdefault("ping_interval", None)
    options["transport"] = transport
    return ClientSocket(URL, open_stream=opener, **options)


def quiet(server: MockServer, **options: Any) -> ClientSocket:
    """A socket to ``server`` on the test's transport: no keepalive, exact
    reconnect delays."""
    options = {"ping_interval": None, "reconnect": EXACT, **options}
    return client_socket(URL, open_stream=server.open_stream, **options)


async def ping_into(sock: ClientSocket, outcome: list[object]) -> None:
    """ping(), its result or error appended to ``outcome``."""
    try:
        outcome.append(await sock.ping())
    except NotConnectedError as error:
        outcome.append(error)


# -- cancellation ------------------------------------------------------------------


@pytest.mark.usefixtures("each_transport")
async def test_a_ping_cancelled_before_it_starts_writes_nothing_and_changes_nothing(
    server: MockServer, autojump_clock: object
) -> None:
    async with quiet(server) as sock:
        await sock.wait_connected()
        with trio.CancelScope() as scope:
            scope.cancel()
            await sock.ping()
        assert scope.cancelled_caught
        await sock.send("after")
        await server.wait_for(lambda: server.received == ["after"])
        assert await sock.ping() == 0.0
        assert server.connections[0].pings == 1  # only the second ping went
        assert sock.statistics().attempts == 1
        assert sock.status is Status.CONNECTED


@pytest.mark.parametrize(
    "transport", TRANSPORTS
)
async def test_a_ping_cancelled_while_the_network_takes_nothing_loses_no_message(
    server: MockServer, transport: str, autojump_clock: object
) -> None:
    """The ping's write is held (the network takes nothing); the caller gives
    up; the network recovers. Every message sent before and after arrives
    once, in order (on a new connection if the ping's frame was cut), and
    the socket can ping again."""
    with trio.fail_after(LIMIT):
        uplinks = Uplinks(server, is_ping_frame)
        async with sock_on(server, transport, uplinks.open_stream) as sock:
            await sock.wait_connected()
            await sock.send("before")
            await server.wait_for(lambda: server.received == ["before"])
            with trio.move_on_after(1):
                await sock.ping()
            assert uplinks.links[0].holding.is_set()
            for n in range(5):
                sock.send_nowait(f"m{n}")
            uplinks.links[0].release()
            with trio.fail_after(30):
                await sock.wait_sent()
                await server.wait_for(lambda: len(server.received) == 6)
                assert server.received == ["before"] + [f"m{n}" for n in range(5)]
                await sock.wait_connected()
                assert await sock.ping() >= 0.0


@pytest.mark.usefixtures("each_transport")
async def test_pings_given_up_while_waiting_for_the_pong_keep_messages_once_in_order(
    server: MockServer, autojump_clock: object
) -> None:
    async with quiet(server) as sock:
        await sock.wait_connected()
        server.stall()
        for n in range(20):
            sock.send_nowait(f"a{n}")
            with trio.move_on_after(0.5):
                await sock.ping()
        server.resume()
        await sock.wait_sent()
        await server.wait_for(lambda: len(server.received) == 20)
        assert server.received == [f"a{n}" for n in range(20)]
        assert await sock.ping() == 0.0
        assert sock.statistics().attempts == 1
        got = [(await next_event_skip(sock, MessageReceived)).message for _ in range(20)]
        assert got == [f"a{n}" for n in range(20)]  # the echoes, once each


def live_tasks() -> int:
    """Tasks alive in the run now (trio's public task tree)."""
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None
    stack = [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_given_up_pings_leave_nothing_behind_while_the_server_does_not_answer(
    server: MockServer, transport: str, autojump_clock: object
) -> None:
    async with sock_on(server, transport) as sock:
        await sock.wait_connected()
        server.stall()
        await trio.testing.wait_all_tasks_blocked()
        before = live_tasks()
        for _ in range(200):
            with trio.move_on_after(0.01):
                await sock.ping()
        await trio.testing.wait_all_tasks_blocked()
        assert live_tasks() <= before + 16
        server.resume()


# -- concurrency ----------------------------------------------------------------------


@pytest.mark.usefixtures("each_transport")
async def test_many_concurrent_pings_are_each_answered_and_messages_keep_their_order(
    server: MockServer, autojump_clock: object
) -> None:
    async with quiet(server) as sock:
        await sock.wait_connected()
        server.stall()
        outcome: list[object] = []
        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(ping_into, sock, outcome)
                nursery.start_soon(sock.send, f"c{n}")
            await trio.sleep(2)
            server.resume()
        assert outcome == [2.0] * 50
        assert sock.statistics().last_rtt == 2.0
        await sock.wait_sent()
        await server.wait_for(lambda: len(server.received) == 50)
        assert sorted(server.received) == sorted(f"c{n}" for n in range(50))
        assert server.connections[0].pings == 50
        assert sock.statistics().attempts == 1


@pytest.mark.usefixtures("each_transport")
async def test_pings_alongside_a_large_upload_and_keepalive(
    server: MockServer, autojump_clock: object
) -> None:
    big = "x" * 300_000  # past DIRECT_MAX: written by the writer task, in pieces
    async with client_socket(
        URL, open_stream=server.open_stream, ping_interval=1, ping_timeout=1, reconnect=EXACT
    ) as sock:
        await sock.wait_connected()
        outcome: list[object] = []
        async with trio.open_nursery() as nursery:
            for n in range(3):
                sock.send_nowait(big + str(n))
                nursery.start_soon(ping_into, sock, outcome)
        await trio.sleep(10)  # keepalive pings go meanwhile
        for _ in range(3):
            await ping_into(sock, outcome)
        assert all(isinstance(r, float) for r in outcome), outcome
        assert len(outcome) == 6
        await sock.wait_sent()
        await server.wait_for(lambda: len(server.received) == 3)
        assert server.received == [big + str(n) for n in range(3)]
        assert sock.statistics().attempts == 1
        assert server.connections[0].pings >= 6


@pytest.mark.usefixtures("each_transport")
async def test_a_ping_started_while_close_runs_raises_and_close_completes(
    server: MockServer, autojump_clock: object
) -> None:
    async with client_socket(
        URL, open_stream=server.open_stream, ping_interval=None, close_timeout=2
    ) as sock:
        await sock.wait_connected()
        server.stall()
        outcome: list[object] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sock.close)
            await trio.testing.wait_all_tasks_blocked()
            await ping_into(sock, outcome)
        assert len(outcome) == 1
        assert isinstance(outcome[0], NotConnectedError)
        assert trio.current_time() == 2.0


@pytest.mark.usefixtures("each_transport")
async def test_a_ping_that_outlives_the_block_raises_instead_of_hanging(
    server: MockServer, autojump_clock: object
) -> None:
    outcome: list[object] = []
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            async with client_socket(
                URL, open_stream=server.open_stream, ping_interval=None, close_timeout=1
            ) as sock:
                await sock.wait_connected()
                server.stall()
                nursery.start_soon(ping_into, sock, outcome)
                await trio.testing.wait_all_tasks_blocked()
            assert sock.status is Status.DISCONNECTED
    assert len(outcome) == 1
    assert isinstance(outcome[0], NotConnectedError)


@pytest.mark.usefixtures("each_transport")
async def test_ping_after_the_socket_gave_up_raises(
    server: MockServer, autojump_clock: object
) -> None:
    async with client_socket(
        URL, open_stream=server.open_stream, ping_interval=None, reconnect=None
    ) as sock:
        await sock.wait_connected()
        await server.connections[0].drop()
        failed = await next_event_skip(sock, ConnectionFailed)
        assert failed.retry_in is None
        with pytest.raises(NotConnectedError):
            await sock.ping()


# -- a hostile server ---------------------------------------------------------------




@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_pong_with_a_wrong_payload_answers_nothing(
    transport: str, autojump_clock: object
) -> None:
    pinged: list[bytes] = []

    async def on_ping(stream: trio.abc.Stream, ws: WSConnection, ping: Ping) -> None:
        pinged.append(bytes(ping.payload))
        await trio.sleep(1)
        await stream.send_all(server_frame(PONG_OPCODE, b"wrong" + bytes(ping.payload)))
        await trio.sleep(1)
        await stream.send_all(server_frame(PONG_OPCODE, bytes(ping.payload)))

    async with raw_server(ping_server(on_ping)) as raw:
        async with opened(raw.open_stream, transport) as sock:
            await sock.wait_connected()
            assert await sock.ping() == 2.0
            assert sock.statistics().last_rtt == 2.0
            assert sock.status is Status.CONNECTED


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_pong_for_the_latest_ping_answers_the_earlier_ones_on_every_transport(
    transport: str, autojump_clock: object
) -> None:
    pinged: list[bytes] = []
    third = trio.Event()

    async def on_ping(stream: trio.abc.Stream, ws: WSConnection, ping: Ping) -> None:
        pinged.append(bytes(ping.payload))
        if len(pinged) == 3:
            await third.wait()
            await stream.send_all(ws.send(ping.response()))

    async with raw_server(ping_server(on_ping)) as raw:
        async with opened(raw.open_stream, transport) as sock:
            await sock.wait_connected()
            times: list[float] = []

            async def ping(delay: float) -> None:
                await trio.sleep(delay)
                times.append(await sock.ping())

            async with trio.open_nursery() as nursery:
                for delay in (0.0, 0.1, 0.3):
                    nursery.start_soon(ping, delay)
                await trio.sleep(1)
                third.set()
            assert sorted(times) == [0.7, 0.9, 1.0]
            assert len(set(pinged)) == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_pong_over_125_bytes_fails_the_connection_and_ends_the_ping(
    transport: str, autojump_clock: object
) -> None:
    async def on_ping(stream: trio.abc.Stream, ws: WSConnection, ping: Ping) -> None:
        await stream.send_all(server_frame(PONG_OPCODE, bytes(ping.payload) + b"z" * 126))

    with trio.fail_after(LIMIT):
        async with raw_server(ping_server(on_ping)) as raw:
            async with opened(raw.open_stream, transport) as sock:
                await sock.wait_connected()
                with pytest.raises(NotConnectedError):
                    await sock.ping()
                failed = await next_event_skip(sock, ConnectionFailed)
                assert isinstance(failed.error, ProtocolError)
                assert failed.retry_in is not None


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_keepalive_still_finds_a_dead_peer_while_user_pings_wait(
    transport: str, server: MockServer, autojump_clock: object
) -> None:
    async with sock_on(server, transport, ping_interval=1, ping_timeout=1) as sock:
        await sock.wait_connected()
        server.stall()
        outcome: list[object] = []
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(ping_into, sock, outcome)
            failed = await next_event_skip(sock, ConnectionFailed)
        assert isinstance(failed.error, KeepaliveTimeout)
        assert trio.current_time() <= 3.0
        assert len(outcome) == 5
        assert all(isinstance(r, NotConnectedError) for r in outcome)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_keepalive_ends_a_connection_whose_ping_write_is_stuck_and_ping_raises(
    transport: str, server: MockServer, autojump_clock: object
) -> None:
    uplinks = Uplinks(server, is_ping_frame)
    outcome: list[object] = []
    with trio.fail_after(LIMIT):
        async with sock_on(
            server, transport, uplinks.open_stream, ping_interval=1, ping_timeout=1
        ) as sock:
            await sock.wait_connected()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ping_into, sock, outcome)
                failed = await next_event_skip(sock, ConnectionFailed)
                assert isinstance(failed.error, KeepaliveTimeout)
                with trio.fail_after(30):
                    await sock.wait_connected()
                    assert await sock.ping() == 0.0
        assert len(outcome) == 1
        assert isinstance(outcome[0], NotConnectedError)


# -- ping_events -----------------------------------------------------------------------

TEXT_OPCODE = 0x1


@pytest.mark.parametrize("transport", ENGINES)
async def test_a_ping_flood_with_messages_to_an_app_that_never_reads_keeps_every_message(
    server: MockServer, transport: str, autojump_clock: object
) -> None:
    """The server floods pings, with a message every 100 of them, at an
    application that does not read: the events held stay bounded, no message
    is lost, duplicated or reordered, and every ping is either delivered or
    counted in ``Skipped``."""
    pings, every = 3000, 100
    async with sock_on(server, transport, ping_events=True, event_buffer=16) as sock:
        assert isinstance(await sock.events().receive(), Connected)
        connection = server.connections[0]
        for n in range(pings):
            await connection.ping(n.to_bytes(2, "big"))
            if n % every == every - 1:
                await connection.send(f"msg{n // every}")
        await connection.send("end")
        await trio.testing.wait_all_tasks_blocked()
        assert len(sock.events()) <= 16 + 16 + 1
        messages: list[object] = []
        delivered: list[int] = []
        skipped = 0
        for _ in range(pings + 100):
            event = await sock.events().receive()
            if isinstance(event, MessageReceived):
                messages.append(event.message)
                if event.message == "end":
                    break
            elif isinstance(event, PingReceived):
                delivered.append(int.from_bytes(event.payload, "big"))
            elif isinstance(event, Skipped):
                skipped += event.count
        assert messages == [f"msg{n}" for n in range(pings // every)] + ["end"]
        assert delivered == sorted(delivered)  # the pings kept their order
        assert len(delivered) + skipped == pings
        assert sock.statistics().events_dropped == skipped
        assert sock.statistics().attempts == 1


@pytest.mark.parametrize("transport", ENGINES)
async def test_an_unasked_pong_flood_is_bounded_and_the_socket_stays_connected(
    server: MockServer, transport: str, autojump_clock: object
) -> None:
    async with sock_on(server, transport, ping_events=True, event_buffer=8) as sock:
        await sock.wait_connected()
        connection = server.connections[0]
        for n in range(2000):
            await connection.pong(n.to_bytes(2, "big"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(sock.events()) <= 8 + 8 + 1
        assert await sock.ping() == 0.0
        assert sock.status is Status.CONNECTED
        events = drain(sock)
        pongs = [e for e in events if isinstance(e, PongReceived)]
        assert all(p.rtt is None for p in pongs[:-1])
        assert pongs[-1].rtt == 0.0  # ours, with its round trip
        assert len(pongs[-1].payload) == 4


@pytest.mark.parametrize("transport", ENGINES)
async def test_a_pong_for_a_given_up_ping_has_no_round_trip(
    server: MockServer, transport: str, autojump_clock: object
) -> None:
    async with sock_on(server, transport, ping_events=True) as sock:
        assert isinstance(await sock.events().receive(), Connected)
        server.stall()
        with trio.move_on_after(1):
            await sock.ping()
        server.resume()
        event = await sock.events().receive()
        assert isinstance(event, PongReceived)
        assert event.rtt is None
        assert sock.statistics().last_rtt is None


@pytest.mark.parametrize("transport", ENGINES)
async def test_a_ping_or_pong_between_messages_in_one_read_comes_between_them(
    server: MockServer, transport: str, autojump_clock: object
) -> None:
    async with sock_on(server, transport, ping_events=True) as sock:
        assert isinstance(await sock.events().receive(), Connected)
        connection = server.connections[0]
        await connection.send_raw(
            server_frame(TEXT_OPCODE, b"first")
            + server_frame(PING_OPCODE, b"after first")
            + server_frame(TEXT_OPCODE, b"second")
            + server_frame(PONG_OPCODE, b"after second")
            + server_frame(TEXT_OPCODE, b"third")
        )
        events = [await sock.events().receive() for _ in range(5)]
        assert events == [
            MessageReceived("first"),
            PingReceived(b"after first"),
            MessageReceived("second"),
            PongReceived(b"after second", None),
            MessageReceived("third"),
        ]


@pytest.mark.parametrize("transport", ENGINES)
async def test_the_servers_ping_during_the_closing_handshake_is_no_failure(
    server: MockServer, transport: str, autojump_clock: object
) -> None:
    async with sock_on(server, transport, ping_events=True, close_timeout=2) as sock:
        await sock.wait_connected()
        connection = server.connections[0]
        server.stall()  # the server does not read our close frame yet
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sock.close)
            await trio.testing.wait_all_tasks_blocked()
            await connection.ping(b"while closing")
            with pytest.raises(NotConnectedError):
                await sock.ping()
            server.resume()
        assert trio.current_time() < 2.0  # the close completed, answered
        kinds = [type(e) for e in drain(sock)]
        assert PingReceived in kinds
        assert ConnectionFailed not in kinds


# -- more cancellation and backpressure ------------------------------------------------


def is_text_frame(data: bytes) -> bool:
    return bool(data) and data[0] == 0x80 | TEXT_OPCODE


@pytest.mark.usefixtures("each_transport")
async def test_a_ping_cancelled_while_a_held_message_write_holds_the_gate_changes_nothing(
    server: MockServer, autojump_clock: object
) -> None:
    uplinks = Uplinks(server, is_text_frame)
    async with client_socket(
        URL, open_stream=uplinks.open_stream, ping_interval=None, reconnect=EXACT
    ) as sock:
        await sock.wait_connected()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sock.send, "held")
            await uplinks.links[0].holding.wait()
            with trio.move_on_after(1) as scope:
                await sock.ping()  # waits for the gate behind the held message
            assert scope.cancelled_caught
            uplinks.links[0].release()
        await sock.wait_sent()
        await server.wait_for(lambda: server.received == ["held"])
        assert await sock.ping() >= 0.0
        assert sock.statistics().attempts == 1
        assert server.connections[0].pings == 1


@pytest.mark.usefixtures("each_transport")
async def test_ping_waits_for_the_application_to_read_when_the_event_buffer_is_full(
    server: MockServer, autojump_clock: object
) -> None:
    """Not a promise of the docs, but what a careless caller meets: while the
    application is behind on ``events()`` (the buffer full), the reader reads
    nothing, so the pong is not seen: ping() from the task that reads events
    would wait for itself. Once the application reads, the ping returns, with
    the time it did not read counted in its round trip."""
    async with client_socket(
        URL,
        open_stream=server.open_stream,
        ping_interval=None,
        event_buffer=4,
        buffer_bytes=1000,
    ) as sock:
        await sock.wait_connected()
        connection = server.connections[0]
        for n in range(20):
            await connection.send("y" * 200 + str(n))
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(5) as scope:
            await sock.ping()
        assert scope.cancelled_caught  # the pong is behind unread messages
        outcome: list[object] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ping_into, sock, outcome)
            await trio.sleep(3)
            for _ in range(20):
                await next_event_skip(sock, MessageReceived)
        assert outcome == [3.0]  # the pong came at once; the reader read it 3 s later


# -- the ends of a connection -------------------------------------------------------------


@pytest.mark.usefixtures("each_transport")
async def test_a_ping_waiting_when_the_server_closes_raises_and_the_next_connection_pings(
    server: MockServer, autojump_clock: object
) -> None:
    async with quiet(server) as sock:
        await sock.wait_connected()
        server.stall()  # no pong; the server can still write its close frame
        outcome: list[object] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ping_into, sock, outcome)
            await trio.testing.wait_all_tasks_blocked()
            await server.connections[0].close(1001, "going away")
            server.resume()
        assert len(outcome) == 1
        assert isinstance(outcome[0], NotConnectedError)
        failed = await next_event_skip(sock, ConnectionFailed)
        assert failed.retry_in is not None
        with pytest.raises(NotConnectedError):
            await sock.ping()  # between connections
        await sock.wait_connected()
        assert await sock.ping() == 0.0
        assert sock.statistics().attempts == 2


@pytest.mark.usefixtures("each_transport")
async def test_wait_connected_then_ping_right_after_a_connection_ended_pings_the_next(
    server: MockServer, autojump_clock: object
) -> None:
    async with quiet(server) as sock:
        await sock.wait_connected()
        server.stall()
        outcome: list[object] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ping_into, sock, outcome)
            await trio.testing.wait_all_tasks_blocked()
            await server.connections[0].close(1001, "going away")
            server.resume()
        assert isinstance(outcome[0], NotConnectedError)  # the connection ended
        await sock.wait_connected()  # as NotConnectedError's message advises
        assert await sock.ping() == 0.0


@pytest.mark.usefixtures("each_transport")
async def test_a_ping_outliving_a_block_left_by_cancellation_raises(
    server: MockServer, autojump_clock: object
) -> None:
    outcome: list[object] = []
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:
                async with client_socket(
                    URL, open_stream=server.open_stream, ping_interval=None
                ) as sock:
                    await sock.wait_connected()
                    server.stall()
                    nursery.start_soon(ping_into, sock, outcome)
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()
                    await trio.sleep_forever()
    assert len(outcome) == 1
    assert isinstance(outcome[0], NotConnectedError)
    with pytest.raises(NotConnectedError):
        await sock.ping()
