"""``ClientSocket.ping()`` and ``ping_events``: a ping on demand, and the
server's pings and pongs shown as events (issue 21, item 6)."""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing
from wsproto import WSConnection
from wsproto.events import Ping

from trio_clientsocket import (
    ClientSocket,
    Connected,
    ConnectionFailed,
    ConnectionLost,
    MessageReceived,
    NotConnectedError,
    PingReceived,
    PongReceived,
    Skipped,
    Status,
)
from trio_clientsocket._socket import Transport
from trio_clientsocket.testing import MockServer

from ._hostile_helpers import ping_server, raw_server
from .conftest import URL, next_event_skip
from .test_lifecycle import socket

ENGINES: tuple[Transport, ...] = ("websockets", "wsproto")
FLOOD = 5000


# -- ping() ----------------------------------------------------------------------


@pytest.mark.usefixtures("each_transport")
async def test_ping_returns_the_round_trip_to_the_pong(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, ping_interval=None) as sock:
        await sock.wait_connected()
        assert await sock.ping() == 0.0  # the in-memory server answers at once
        server.stall()  # it reads nothing until resumed: the pong waits
        result: list[float] = []
        async with trio.open_nursery() as nursery:

            async def ping() -> None:
                result.append(await sock.ping())

            nursery.start_soon(ping)
            await trio.sleep(0.25)
            assert result == []
            server.resume()
        assert result == [0.25]
        assert sock.statistics().last_rtt == 0.25
    assert server.connections[0].pings == 2


@pytest.mark.usefixtures("each_transport")
async def test_ping_goes_ahead_of_queued_messages_and_keeps_their_order(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, ping_interval=None) as sock:
        await sock.wait_connected()
        for n in range(50):
            sock.send_nowait(f"m{n}")
        await sock.ping()
        await sock.wait_sent()
        await server.wait_for(lambda: len(server.received) == 50)
    assert server.received == [f"m{n}" for n in range(50)]


@pytest.mark.usefixtures("each_transport")
async def test_ping_without_a_connection_raises_not_connected(
    server: MockServer, autojump_clock: object
) -> None:
    sock = socket(server)
    with pytest.raises(NotConnectedError, match="not connected"):
        await sock.ping()  # never entered
    server.refuse(1000)
    async with sock:
        await next_event_skip(sock, ConnectionFailed)
        assert sock.status is Status.DISCONNECTED
        with pytest.raises(NotConnectedError, match="wait_connected"):
            await sock.ping()  # reconnecting
        await sock.close()
        with pytest.raises(NotConnectedError):
            await sock.ping()  # closed
    with pytest.raises(NotConnectedError):
        await sock.ping()  # the block has exited


@pytest.mark.usefixtures("each_transport")
async def test_a_connection_that_ends_before_the_pong_raises_and_reconnects(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, ping_interval=None) as sock:
        await sock.wait_connected()
        server.stall()
        outcome: list[BaseException] = []

        async def ping() -> None:
            with pytest.raises(NotConnectedError, match="before the server answered") as raised:
                await sock.ping()
            outcome.append(raised.value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ping)
            await trio.testing.wait_all_tasks_blocked()
            await server.connections[0].drop()
            server.resume()
        assert len(outcome) == 1
        failed = await next_event_skip(sock, ConnectionFailed)
        assert isinstance(failed.error, ConnectionLost)
        await sock.wait_connected()
        assert await sock.ping() == 0.0  # the new connection is pinged


@pytest.mark.usefixtures("each_transport")
async def test_close_while_a_ping_waits_ends_the_ping_and_the_close_completes(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, ping_interval=None, close_timeout=2) as sock:
        await sock.wait_connected()
        server.stall()
        outcome: list[BaseException] = []
        async with trio.open_nursery() as nursery:

            async def ping() -> None:
                try:
                    await sock.ping()
                except NotConnectedError as error:
                    outcome.append(error)

            nursery.start_soon(ping)
            await trio.testing.wait_all_tasks_blocked()
            await sock.close()  # the stalled server never answers: close gives up at 2 s
        assert len(outcome) == 1
        assert trio.current_time() == 2.0


@pytest.mark.usefixtures("each_transport")
async def test_a_ping_given_up_by_its_caller_leaves_the_connection_usable(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, ping_interval=None) as sock:
        await sock.wait_connected()
        server.stall()
        for _ in range(100):  # a caller that gives up on every ping, again and again
            with trio.move_on_after(0.01):
                await sock.ping()
        server.resume()
        assert await sock.ping() == 0.0
        await sock.send("still here")
        await server.wait_for(lambda: server.received == ["still here"])
        assert sock.statistics().attempts == 1


@pytest.mark.parametrize("transport", ENGINES)
async def test_a_pong_for_the_latest_ping_answers_the_earlier_ones(
    transport: Transport, autojump_clock: object
) -> None:
    """RFC 6455 5.5.3: a peer may answer only the most recent ping. A wsproto
    server that keeps every ping and answers only the third."""
    pings: list[bytes] = []
    answer_now = trio.Event()

    async def answer_the_third(stream: trio.abc.Stream, ws: WSConnection, ping: Ping) -> None:
        pings.append(bytes(ping.payload))
        if len(pings) == 3:
            await answer_now.wait()
            await stream.send_all(ws.send(ping.response()))

    async with raw_server(ping_server(answer_the_third)) as raw:
        sock = ClientSocket(
            URL, open_stream=raw.open_stream, transport=transport, ping_interval=None
        )
        async with sock:
            await sock.wait_connected()
            times: list[float] = []
            async with trio.open_nursery() as nursery:

                async def ping(delay: float) -> None:
                    await trio.sleep(delay)
                    times.append(await sock.ping())

                for delay in (0.0, 0.1, 0.3):
                    nursery.start_soon(ping, delay)
                await trio.sleep(1)
                answer_now.set()
            assert len(pings) == 3
            assert len(set(pings)) == 3
            assert sorted(times) == [0.7, 0.9, 1.0]


async def test_ping_over_real_tcp_to_websockets_own_server() -> None:
    """An independent server: websockets' asyncio-free sync server, in a thread."""
    from websockets.sync.server import serve

    def handler(connection: object) -> None:
        for _ in connection:  # type: ignore[attr-defined]
            pass

    with serve(handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.socket.getsockname()[1]
        serve_forever = functools.partial(
            trio.to_thread.run_sync, ws_server.serve_forever, abandon_on_cancel=True
        )
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_forever)
                for transport in ("websockets", "wsproto", "trio-websocket"):
                    async with ClientSocket(
                        f"ws://127.0.0.1:{port}/", transport=transport, proxy=None
                    ) as sock:
                        await sock.wait_connected()
                        rtts = [await sock.ping() for _ in range(5)]
                        assert all(0 < rtt < 5 for rtt in rtts), rtts
                ws_server.shutdown()


# -- ping_events -----------------------------------------------------------------


@pytest.mark.parametrize("transport", ENGINES)
async def test_the_servers_pings_and_pongs_are_events_in_order(
    server: MockServer, transport: str, autojump_clock: object
) -> None:
    async with socket(server, ping_interval=None, ping_events=True, transport=transport) as sock:
        assert isinstance(await sock.events().receive(), Connected)
        connection = server.connections[0]
        await connection.ping(b"tick")
        assert await sock.events().receive() == PingReceived(b"tick")
        await connection.send("between")
        await connection.pong(b"unasked")
        assert await sock.events().receive() == MessageReceived("between")
        assert await sock.events().receive() == PongReceived(b"unasked", None)
        rtt = await sock.ping()
        event = await sock.events().receive()
        assert isinstance(event, PongReceived)
        assert len(event.payload) == 4
        assert event.rtt == rtt == 0.0
        assert connection.pings == 1


@pytest.mark.usefixtures("each_transport")
async def test_without_ping_events_no_ping_or_pong_is_delivered(
    server: MockServer, autojump_clock: object
) -> None:
    async with socket(server, ping_interval=1, ping_timeout=1) as sock:
        await sock.wait_connected()
        connection = server.connections[0]
        await connection.ping(b"tick")
        await connection.pong(b"unasked")
        await trio.sleep(10)  # keepalive pings and their pongs too
        await connection.send("only this")
        events = []
        for _ in range(10):
            event = await sock.events().receive()
            events.append(event)
            if isinstance(event, MessageReceived):
                break
        assert [type(e) for e in events] == [Connected, MessageReceived]
        assert connection.pings >= 3


@pytest.mark.parametrize("transport", ENGINES)
async def test_a_ping_flood_to_a_reader_that_never_reads_is_bounded_and_counted(
    server: MockServer, transport: str, autojump_clock: object
) -> None:
    async with socket(
        server, ping_interval=None, ping_events=True, event_buffer=16, transport=transport
    ) as sock:
        await sock.wait_connected()
        connection = server.connections[0]
        for n in range(FLOOD):
            await connection.ping(n.to_bytes(2, "big"))
        await connection.send("the message after the flood")
        await server.wait_for(lambda: connection.is_open)
        await trio.testing.wait_all_tasks_blocked()
        # the buffer (16), the reserve (as many, for a buffer under 64), one Skipped
        assert len(sock.events()) <= 16 + 16 + 1
        seen: list[object] = []
        async for event in sock.events():
            seen.append(event)
            if isinstance(event, MessageReceived):
                break
        skipped = [e for e in seen if isinstance(e, Skipped)]
        pings = [e for e in seen if isinstance(e, PingReceived)]
        assert sum(e.count for e in skipped) + len(pings) == FLOOD
        assert seen[-1] == MessageReceived("the message after the flood")
        assert sock.statistics().events_dropped == sum(e.count for e in skipped)


def test_ping_events_is_refused_on_trio_websocket_and_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="ping_events") as refused:
        ClientSocket(URL, ping_events=True, transport="trio-websocket")
    assert "websockets" in str(refused.value)
    with pytest.raises(TypeError, match="ping_events"):
        ClientSocket(URL, ping_events=1)  # type: ignore[arg-type]


# -- the record of pings (a unit of the link) -------------------------------------


def test_pings_nobody_waits_for_are_forgotten_past_the_bound() -> None:
    from trio_clientsocket._link import UNANSWERED_MAX, Pings

    pings = Pings()
    waited = [pings.expect() for _ in range(3)]
    for n, (payload, _) in enumerate(waited):
        pings.sent(payload, float(n))
    for n in range(1000):  # keepalive pings a server never answers
        pings.sent(n.to_bytes(4, "big"), 10.0 + n)
    assert len(pings._pings) <= UNANSWERED_MAX + len(waited)
    for payload, _ in waited:
        assert payload in pings._pings  # a ping someone waits for is never dropped
    for payload, _ in waited:
        pings.forget(payload)
    assert len(pings._pings) <= UNANSWERED_MAX


def test_a_pong_answers_no_ping_sent_after_its_own() -> None:
    from trio_clientsocket._link import Pings

    pings = Pings()
    (first, early), (second, late) = pings.expect(), pings.expect()
    pings.sent(first, 1.0)
    pings.sent(second, 2.0)
    assert pings.answer(first, 3.0) == 2.0
    assert early.rtt == 2.0
    assert late.done is not None
    assert not late.done.is_set()
    assert late.rtt is None
    assert pings.answer(second, 4.0) == 2.0


def test_a_pong_answers_its_ping_and_the_earlier_ones_but_not_one_unsent() -> None:
    from trio_clientsocket._link import Pings

    pings = Pings()
    (early, first), (unsent, waiting), (late, last) = (pings.expect() for _ in range(3))
    pings.sent(early, 1.0)
    pings.sent(late, 2.0)
    assert pings.answer(b"none", 3.0) is None
    assert pings.answer(late, 3.5) == 1.5
    assert (first.rtt, last.rtt, waiting.rtt) == (2.5, 1.5, None)
    assert first.done is not None
    assert first.done.is_set()
    assert waiting.done is not None
    assert not waiting.done.is_set()
    pings.end()
    assert waiting.done.is_set()
    assert waiting.rtt is None
    assert pings.answer(unsent, 4.0) is None
