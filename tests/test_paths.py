"""Paths through the socket, the session, the reconnect loop and the links that
only a particular order of events reaches: a write held behind a ping, a pong
held when the connection resets, a close while the reader is paused, a ping
behind a long upload, failures during the handshake's own I/O. Public API
only, on every transport, in memory on the mock clock (real TCP on 127.0.0.1
where TLS or a reset needs a kernel).

The uplink is shaped by ``Uplink``: it can hold the writes a predicate picks
(a ping, a pong, a large frame) until the test releases them or resets the
connection, and can make large writes slow."""

from __future__ import annotations

import socket as stdlib_socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    Closed,
    Connected,
    ConnectionFailed,
    ConnectionLost,
    Event,
    KeepaliveTimeout,
    MessageReceived,
    ProtocolError,
    SocketClosedError,
    Status,
    Undelivered,
)
from trio_clientsocket.testing import MockServer, ServerConnection, open_mock_server

from ._hostile_helpers import (
    drain,
    raw_server,
    request_key,
    server_frame,
    switching,
    tcp_server,
)
from .conftest import WrappedStream, client_socket, next_event_skip

pytestmark = pytest.mark.usefixtures("each_transport")

URL = "ws://app.test/app/gxwebsocket?client-1"
EXACT = Backoff(initial=1, factor=2, maximum=8, jitter=0)
WIRE = ("websockets", "wsproto")
"""The transports driven by the project's own link (``WireLink``)."""
BIG = 65536
"""The links hand a long frame to the stream in pieces of this size: a write of
at least this many bytes is (part of) a large message's frame."""
LARGE = 3 * BIG
"""A message that the writer task sends, in pieces (longer than what send()
writes in its own task)."""


Data = bytes | bytearray | memoryview
Hold = Callable[[Data], bool]


def opcode_is(opcode: int) -> Hold:
    """A hold predicate: a client frame of this opcode (FIN set)."""
    return lambda data: len(data) > 0 and data[0] == 0x80 | opcode


def is_big(data: Data) -> bool:
    return len(data) >= BIG


PING, PONG = 0x9, 0xA


class Uplink(WrappedStream):
    """The client's stream, shaped: writes that ``hold`` picks wait until
    ``release()`` (or ``reset()``); writes of BIG bytes or more take
    ``chunk_delay`` seconds; ``reset()`` is a connection reset: the held write
    and every later read or write raise ``BrokenResourceError``."""

    def __init__(
        self,
        inner: trio.abc.Stream,
        hold: Hold | None = None,
        chunk_delay: float = 0.0,
    ) -> None:
        super().__init__(inner)
        self.hold = hold
        self.chunk_delay = chunk_delay
        self.holding = trio.Event()
        self._go = trio.Event()
        self.was_reset = False

    async def send_all(self, data: Data) -> None:
        if self.was_reset:
            raise trio.BrokenResourceError("connection reset")
        if self.hold is not None and self.hold(data):
            self.holding.set()
            await self._go.wait()
            if self.was_reset:
                raise trio.BrokenResourceError("connection reset")
        if self.chunk_delay and len(data) >= BIG:
            await trio.sleep(self.chunk_delay)  # a slow link
        await self.inner.send_all(data)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if self.was_reset:
            raise trio.BrokenResourceError("connection reset")
        return data

    def release(self) -> None:
        self.hold = None
        self._go.set()

    def reset(self) -> None:
        self.was_reset = True
        self._go.set()


class Uplinks:
    """An ``open_stream`` that shapes the first connection (or every one)."""

    def __init__(self, server: MockServer, *, every: bool = False, **shape: Any) -> None:
        self.server = server
        self.every = every
        self.shape = shape
        self.links: list[Uplink] = []

    async def open_stream(self, url: str) -> trio.abc.Stream:
        inner = await self.server.open_stream(url)
        shape = self.shape if self.every or not self.links else {}
        link = Uplink(inner, **shape)
        self.links.append(link)
        return link

    @property
    def first(self) -> Uplink:
        return self.links[0]


def shaped(server: MockServer, uplinks: Uplinks | None = None, **options: Any) -> ClientSocket:
    options.setdefault("reconnect", EXACT)
    opener = uplinks.open_stream if uplinks is not None else server.open_stream
    return client_socket(URL, open_stream=opener, **options)


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


# -- what arrives ---------------------------------------------------------------------------


async def test_a_binary_message_is_delivered_as_bytes(
    request: pytest.FixtureRequest, autojump_clock: object
) -> None:
    """``MessageReceived.message`` is ``str | bytes``; a binary frame that holds
    JSON is still binary: no ``json`` view, no notification."""
    async with open_mock_server() as server, shaped(server) as sock:
        connection = await server.wait_connections(1)
        await connection.send(b'{"Message": "hi"}')
        event = await next_event_skip(sock, MessageReceived)
        assert type(event.message) is bytes
        assert event.message == b'{"Message": "hi"}'
        assert event.json is None
        assert event.notification is None
        assert {event.message} == {b'{"Message": "hi"}'}


async def test_a_frame_header_split_across_reads_is_reassembled(autojump_clock: object) -> None:
    payload = b"y" * 300  # a 16-bit length: a 4-byte header
    frame = server_frame(0x1, payload)
    async with open_mock_server() as server, shaped(server) as sock:
        connection = await server.wait_connections(1)
        for piece in (frame[:1], frame[1:3], frame[3:5], frame[5:]):
            await connection.send_raw(piece)
            await trio.testing.wait_all_tasks_blocked()
        event = await next_event_skip(sock, MessageReceived)
        assert event.message == payload.decode()
        assert sock.status is Status.CONNECTED


async def test_an_unsolicited_pong_is_ignored(autojump_clock: object) -> None:
    async with open_mock_server(echo=True) as server, shaped(server, ping_interval=None) as sock:
        connection = await server.wait_connections(1)
        await connection.send_raw(server_frame(PONG, b"not ours"))
        await sock.send("still here")
        assert (await next_event_skip(sock, MessageReceived)).message == "still here"
        assert sock.statistics().last_rtt is None  # no ping of ours was answered
        assert kinds(drain(sock)) == []
        assert sock.status is Status.CONNECTED


async def test_text_over_the_limit_in_bytes_is_closed_with_1009(autojump_clock: object) -> None:
    """26 four-byte characters: 104 bytes, over a limit of 100 that counts
    bytes, though only 26 characters."""
    async with open_mock_server() as server, shaped(server, max_message_size=100) as sock:
        connection = await server.wait_connections(1)
        await connection.send("\N{GRINNING FACE}" * 26)
        failed = await next_event_skip(sock, ConnectionFailed)
        assert isinstance(failed.error, ConnectionLost)
        assert failed.error.code == 1009
        await server.wait_for(lambda: not connection.is_open)
        assert connection.close_code == 1009


# -- what send() takes ------------------------------------------------------------------------


class Text(str):
    """A str subclass (a markup string, say)."""


async def test_bytes_like_and_str_subclass_messages_are_queued_as_bytes_and_str(
    autojump_clock: object,
) -> None:
    """While connecting, send() queues a copy: changing a bytearray afterwards
    changes nothing, and what is reported back has the plain types."""
    async with open_mock_server() as server:
        server.delay_handshake(10)
        async with shaped(server) as sock:
            buffer = bytearray(b"ab")
            await sock.send(buffer)  # type: ignore[arg-type]
            await sock.send(memoryview(b"cd"))  # type: ignore[arg-type]
            await sock.send(Text("ef"))
            buffer[:] = b"XX"
            unsent = await sock.close()
    assert unsent == (b"ab", b"cd", "ef")
    assert [type(m) for m in unsent] == [bytes, bytes, str]


async def test_a_bytearray_sent_on_a_live_connection_arrives_as_it_was(
    autojump_clock: object,
) -> None:
    async with open_mock_server() as server, shaped(server) as sock:
        connection = await server.wait_connections(1)
        await sock.wait_connected()
        buffer = bytearray(b"ab")
        await sock.send(buffer)  # type: ignore[arg-type]
        buffer[:] = b"XX"
        await sock.send(Text("cd"))
        await server.wait_for(lambda: len(connection.received) == 2)
    assert connection.received == [b"ab", "cd"]


# -- the handshake's own I/O ---------------------------------------------------------------


class RequestFails(WrappedStream):
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        raise trio.BrokenResourceError("connection reset")


class AnswerFails(WrappedStream):
    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        raise trio.BrokenResourceError("connection reset")


async def test_a_reset_while_writing_the_request_is_a_lost_connection(
    request: pytest.FixtureRequest, autojump_clock: object
) -> None:
    async with open_mock_server() as server:

        async def open_stream(url: str) -> trio.abc.Stream:
            return RequestFails(await server.open_stream(url))

        async with client_socket(URL, open_stream=open_stream, reconnect=None) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error, ConnectionLost)
    assert (failed.error.code, failed.error.reason) == (
        1006,
        "connection closed during the handshake",
    )
    assert trio.current_time() == 0  # at once, not after connect_timeout


async def test_a_reset_while_reading_the_answer_is_a_lost_connection(
    autojump_clock: object,
) -> None:
    async with open_mock_server() as server:

        async def open_stream(url: str) -> trio.abc.Stream:
            return AnswerFails(await server.open_stream(url))

        async with client_socket(URL, open_stream=open_stream, reconnect=EXACT) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
            assert isinstance(failed.error, ConnectionLost)
            assert (failed.error.code, failed.error.reason) == (
                1006,
                "connection closed during the handshake",
            )
            assert failed.retry_in == 1
            assert trio.current_time() == 0


@pytest.mark.parametrize(
    "extra",
    [(b"Upgrade: h2c",), (b"Bad Header: x",)],
    ids=["second-upgrade-header", "header-name-with-space"],
)
async def test_a_101_answer_that_is_not_valid_is_a_retried_protocol_error(
    extra: tuple[bytes, ...], request: pytest.FixtureRequest, autojump_clock: object
) -> None:
    """A 101 whose Upgrade also names another protocol, or with a header name
    that is not an HTTP token: the same failure on every transport, a
    ProtocolError, retried like other garbage from the server."""

    async def respond(stream: trio.abc.Stream, request_bytes: bytes) -> None:
        await stream.send_all(switching(request_key(request_bytes), *extra))
        await trio.sleep_forever()

    async with raw_server(respond) as server:
        async with client_socket(URL, open_stream=server.open_stream, reconnect=EXACT) as sock:
            event = await sock.events().receive()
    assert isinstance(event, ConnectionFailed), event
    assert isinstance(event.error, ProtocolError), repr(event.error)
    assert str(event.error).startswith(
        ("invalid handshake response", "the server's answer has an invalid header line")
    )
    assert event.retry_in == 1


async def test_a_close_frame_without_a_code_is_a_close_with_1005(autojump_clock: object) -> None:
    async with open_mock_server() as server, shaped(server) as sock:
        connection = await server.wait_connections(1)
        await connection.send_raw(server_frame(0x8))  # no payload: no code
        failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error, ConnectionLost), repr(failed.error)
    assert (failed.error.code, failed.error.reason, failed.error.by_server) == (1005, None, True)
    assert failed.retry_in == 1


async def test_a_masked_close_frame_from_the_server_is_a_protocol_error(
    autojump_clock: object,
) -> None:
    mask = b"\x01\x02\x03\x04"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\x03\xe8"))  # code 1000
    async with open_mock_server() as server, shaped(server) as sock:
        connection = await server.wait_connections(1)
        await connection.send_raw(bytes([0x88, 0x80 | 2]) + mask + payload)
        failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error, ProtocolError), repr(failed.error)
    assert failed.error.code == 1002
    assert failed.retry_in == 1


# -- the writer and the keepalive sharing one link --------------------------------------------


async def test_a_message_behind_a_ping_that_times_out_goes_on_the_next_connection(
    request: pytest.FixtureRequest, autojump_clock: object
) -> None:
    """The ping cannot be written (held); a message queued behind it was never
    written, so it is not 'in flight': it goes first on the next connection."""
    async with open_mock_server() as server:
        uplinks = Uplinks(server, hold=opcode_is(PING))
        async with shaped(server, uplinks, ping_interval=10, ping_timeout=5) as sock:
            await sock.wait_connected()
            await uplinks.first.holding.wait()
            assert trio.current_time() == 10
            await sock.send("m")
            failed = await next_event_skip(sock, ConnectionFailed)
            assert isinstance(failed.error, KeepaliveTimeout)
            assert trio.current_time() == 15
            second = await server.wait_connections(2)
            await server.wait_for(lambda: second.received == ["m"])
            assert not any(isinstance(e, Undelivered) for e in drain(sock))
            assert sock.statistics().messages_dropped == 0


ROUNDS = 20
"""Repetitions of a scenario whose outcome depends on the order in which trio
runs two tasks woken together (it picks one of two orders at random)."""


async def test_a_message_behind_a_stalled_ping_is_resent_when_the_connection_drops(
    request: pytest.FixtureRequest, autojump_clock: object
) -> None:
    outcomes: list[tuple[list[str], list[Any]]] = []
    for _ in range(ROUNDS):
        async with open_mock_server() as server:
            uplinks = Uplinks(server, hold=opcode_is(PING))
            async with shaped(server, uplinks, ping_interval=10, ping_timeout=100) as sock:
                connection = await server.wait_connections(1)
                await uplinks.first.holding.wait()
                await sock.send("m")
                await trio.testing.wait_all_tasks_blocked()
                await connection.drop()
                second = await server.wait_connections(2)
                await sock.wait_connected()
                await trio.testing.wait_all_tasks_blocked()
                outcomes.append((kinds(drain(sock)), second.received))
    expected = (["Connected", "ConnectionFailed", "Connected"], ["m"])
    assert outcomes == [expected] * ROUNDS


async def test_a_ping_behind_an_upload_that_keeps_moving_is_not_a_timeout(
    autojump_clock: object,
) -> None:
    """Four chunks of 64 KiB, 6 s each: the ping due at 10 s waits for the
    upload past its 5 s patience, but each chunk that goes restarts the wait."""
    message = b"\x00" * (4 * BIG)  # in four pieces of BIG bytes (and the header)
    async with open_mock_server() as server:
        uplinks = Uplinks(server, chunk_delay=6.0)
        async with shaped(server, uplinks, ping_interval=10, ping_timeout=5) as sock:
            connection = await server.wait_connections(1)
            await sock.send(message)
            await server.wait_for(lambda: connection.received == [message])
            assert trio.current_time() == 24
            await server.wait_for(lambda: connection.pings == 1)
            assert kinds(drain(sock)) == ["Connected"]
            assert sock.status is Status.CONNECTED


async def test_a_reset_while_an_automatic_pong_is_held_is_a_lost_connection(
    autojump_clock: object,
) -> None:
    """The server pings; our pong cannot be written; the keepalive ping comes
    due behind it; then the connection resets: a lost connection, not a dead
    peer, reported at the reset."""
    async with open_mock_server() as server:
        uplinks = Uplinks(server, hold=opcode_is(PONG))
        async with shaped(server, uplinks, ping_interval=10, ping_timeout=10) as sock:
            connection = await server.wait_connections(1)
            await connection.send_raw(server_frame(PING, b"hi"))
            await uplinks.first.holding.wait()
            await trio.sleep(12)  # the keepalive ping is due at 10 s
            uplinks.first.reset()
            await connection.drop()
            failed = await next_event_skip(sock, ConnectionFailed)
            assert isinstance(failed.error, ConnectionLost), repr(failed.error)
            assert (failed.error.code, failed.error.reason) == (
                1006,
                "connection dropped without a close frame",
            )
            assert trio.current_time() == 12
            await sock.wait_connected()


async def test_a_ping_flood_behind_a_blocked_write_then_a_reset(autojump_clock: object) -> None:
    """A large write is blocked; the server floods pings (their pongs must wait
    for the write): the client stops reading instead of holding them all. Then
    the connection resets: it is a lost connection, the socket reconnects, and
    the large message is accounted for once (reported in flight, or written on
    the next connection)."""
    flood = server_frame(PING, b"P" * 125) * 1000  # 127 kB of pings
    message = b"\x03" * LARGE
    async with open_mock_server() as server:
        uplinks = Uplinks(server, hold=is_big)
        async with shaped(server, uplinks, ping_interval=None) as sock:
            connection = await server.wait_connections(1)
            await sock.wait_connected()
            before = sock.statistics().bytes_received
            await sock.send(message)
            await uplinks.first.holding.wait()
            await connection.send_raw(flood)
            await trio.testing.wait_all_tasks_blocked()
            assert sock.statistics().bytes_received - before < len(flood)
            uplinks.first.reset()
            await connection.drop()
            second = await server.wait_connections(2)
            await sock.wait_connected()
            await trio.testing.wait_all_tasks_blocked()
            events = drain(sock)
            (failed,) = [e for e in events if isinstance(e, ConnectionFailed)]
            assert isinstance(failed.error, ConnectionLost), repr(failed.error)
            assert failed.error.code == 1006
            reported = [e for e in events if isinstance(e, Undelivered)]
            in_flight = [m for e in reported if e.reason == "in flight" for m in e.messages]
            assert in_flight + second.received == [message]


# -- closing ---------------------------------------------------------------------------------------


async def test_close_behind_a_held_pong_ends_when_the_connection_resets(
    autojump_clock: object,
) -> None:
    async with open_mock_server() as server:
        uplinks = Uplinks(server, hold=opcode_is(PONG))
        async with shaped(server, uplinks, ping_interval=None, close_timeout=30) as sock:
            connection = await server.wait_connections(1)
            await connection.send_raw(server_frame(PING, b"hi"))
            await uplinks.first.holding.wait()
            returned: list[float] = []

            async def close() -> None:
                assert await sock.close() == ()
                returned.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(close)
                await trio.sleep(2)
                assert returned == []  # close() waits for the gate the pong holds
                uplinks.first.reset()
                await connection.drop()
            assert returned == [2]
            assert kinds(drain(sock)) == ["Connected", "Closed"]
            assert sock.status is Status.DISCONNECTED
    assert connection.close_code is None  # our close frame never went


async def test_keepalive_stops_once_the_close_frame_is_out(autojump_clock: object) -> None:
    """A silent server: close() waits its full close_timeout for the answer,
    and the keepalive (due at 5 s, patience 5 s) does not cut it short."""
    async with open_mock_server() as server:
        async with shaped(server, ping_interval=5, ping_timeout=5, close_timeout=30) as sock:
            await sock.wait_connected()
            server.stall()
            await trio.sleep(1)
            assert await sock.close() == ()
            assert trio.current_time() == 31
            assert kinds(drain(sock)) == ["Connected", "Closed"]


async def test_close_while_the_reader_waits_for_the_application(autojump_clock: object) -> None:
    """Three messages in one write, a buffer of one: the reader waits for room.
    close() does not wait for the application to read, and the closing
    handshake completes; the messages come out once each, in order, before
    the Closed event."""
    burst = b"".join(server_frame(0x1, m) for m in (b"m1", b"m2", b"m3"))
    async with open_mock_server() as server, shaped(server, event_buffer=1) as sock:
        connection = await server.wait_connections(1)
        assert await sock.events().receive() == Connected(url=URL)
        await connection.send_raw(burst)
        await trio.testing.wait_all_tasks_blocked()
        assert sock.statistics().events_buffered == 1  # the reader waits with m2
        assert await sock.close() == ()
        assert trio.current_time() == 0
        *received, last = drain(sock)
        assert last == Closed(url=URL)
        messages = [e.message for e in received if isinstance(e, MessageReceived)]
        assert messages == ["m1", "m2", "m3"][: len(received)]
        assert messages[:1] == ["m1"]
    assert connection.close_code == 1000


async def test_aclose_of_the_events_lets_a_waiting_reader_read_on(autojump_clock: object) -> None:
    burst = b"".join(server_frame(0x1, m) for m in (b"m1", b"m2", b"m3"))
    async with open_mock_server(echo=True) as server, shaped(server, event_buffer=1) as sock:
        connection = await server.wait_connections(1)
        await connection.send_raw(burst)
        await trio.testing.wait_all_tasks_blocked()
        assert sock.statistics().events_buffered == 1  # m1; the reader waits with m2
        await sock.events().aclose()
        await connection.send("m4")
        await connection.send("m5")
        await trio.testing.wait_all_tasks_blocked()
        assert sock.statistics().messages_received == 5
        assert sock.statistics().events_buffered == 0
        await sock.send("still writing")
        await server.wait_for(lambda: connection.received == ["still writing"])
        with pytest.raises(trio.ClosedResourceError):
            sock.events().receive_nowait()


async def test_close_returns_at_once_when_the_connection_drops_during_the_flush(
    autojump_clock: object,
) -> None:
    """A large message is being written (held) when close() is called; the
    connection drops: close() returns then, and the message, cut off part-way,
    is reported 'in flight'."""
    message = b"\x01" * LARGE
    async with open_mock_server() as server:
        uplinks = Uplinks(server, hold=is_big)
        async with shaped(server, uplinks, close_timeout=30) as sock:
            connection = await server.wait_connections(1)
            await sock.send(message)
            await uplinks.first.holding.wait()
            unsent: list[tuple[Any, ...]] = []

            async def close() -> None:
                unsent.append(await sock.close())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(close)
                await trio.sleep(1)
                assert unsent == []
                await connection.drop()
            assert trio.current_time() == 1
            assert unsent == [()]
            assert drain(sock) == [
                Connected(url=URL),
                Undelivered(messages=(message,), reason="in flight"),
                Closed(url=URL),
            ]


async def test_close_in_another_task_returns_when_the_block_is_cancelled(
    request: pytest.FixtureRequest, autojump_clock: object
) -> None:
    """close() waits for a silent server's answer (close_timeout 30 s) in a task
    outside the block; the block is cancelled at 5 s and closes at once: the
    waiting close() returns then too."""
    returned: list[float] = []
    async with open_mock_server() as server:
        sock = shaped(server, close_timeout=30)

        async def close() -> None:
            await sock.close()
            returned.append(trio.current_time())

        async with trio.open_nursery() as outside:
            with trio.CancelScope() as block:
                async with sock:
                    await sock.wait_connected()
                    server.stall()
                    outside.start_soon(close)
                    await trio.sleep(5)
                    block.cancel()
            assert trio.current_time() == 5
            assert sock.status is Status.DISCONNECTED
    assert returned == [5]
    assert kinds(drain(sock)) == ["Connected", "Closed"]


async def test_a_cancelled_entry_ends_the_event_stream(
    request: pytest.FixtureRequest, autojump_clock: object
) -> None:
    """Entering under a cancelled scope fails; the socket is over, so its event
    stream must end (a task reading it would otherwise wait forever)."""
    async with open_mock_server() as server:
        sock = shaped(server)
        with trio.CancelScope() as scope:
            scope.cancel()
            async with sock:
                raise AssertionError("entered under a cancelled scope")
        with pytest.raises(SocketClosedError):
            await sock.open(URL)
        with pytest.raises(trio.EndOfChannel):
            sock.events().receive_nowait()


async def test_the_keepalive_waits_for_the_application_before_judging_a_silent_server(
    autojump_clock: object,
) -> None:
    """The ping is due at 10 s but waits behind a large upload; at 11 s the
    server goes silent after a burst the application does not read (the reader
    waits for room). The ping goes at 12 s and nothing answers it, yet the peer
    is not judged until the application has caught up (at 40 s) and a new ping
    has had its full 10 s."""
    burst = b"".join(server_frame(0x1, m) for m in (b"m1", b"m2", b"m3", b"m4"))
    async with open_mock_server() as server:
        uplinks = Uplinks(server, hold=is_big)
        options = {"ping_interval": 10, "ping_timeout": 10, "event_buffer": 2}
        async with shaped(server, uplinks, **options) as sock:
            connection = await server.wait_connections(1)
            assert await sock.events().receive() == Connected(url=URL)
            await sock.send(b"\x02" * LARGE)
            await uplinks.first.holding.wait()
            await trio.sleep(11)
            server.stall()
            await connection.send_raw(burst)
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(1)
            uplinks.first.release()
            await trio.sleep(40 - 12)
            assert sock.status is Status.CONNECTED
            assert drain(sock) == [MessageReceived("m1"), MessageReceived("m2")]
            failed = await next_event_skip(sock, ConnectionFailed)
            assert isinstance(failed.error, KeepaliveTimeout)
            assert trio.current_time() == 50
            assert drain(sock) == []


# -- failures that are no transport failures -------------------------------------------------


class Boom(BaseException):
    """Not an Exception: like KeyboardInterrupt, it must not be taken for a
    connection failure."""


class ExplodingReads(WrappedStream):
    def __init__(self, inner: trio.abc.Stream) -> None:
        super().__init__(inner)
        self.armed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if self.armed:
            raise Boom
        return data


async def test_a_base_exception_from_the_stream_is_not_a_connection_failure(
    each_transport: str, autojump_clock: object
) -> None:
    if each_transport == "trio-websocket":
        pytest.skip(
            "trio-websocket's reader task can lose it to the Cancelled that closing its "
            "message channel raises while unwinding (depends on scheduling order)"
        )
    streams: list[ExplodingReads] = []
    with pytest.RaisesGroup(Boom, flatten_subgroups=True):
        async with open_mock_server() as server:

            async def open_stream(url: str) -> trio.abc.Stream:
                streams.append(ExplodingReads(await server.open_stream(url)))
                return streams[-1]

            async with client_socket(URL, open_stream=open_stream) as sock:
                connection = await server.wait_connections(1)
                await sock.wait_connected()
                streams[0].armed = True
                await connection.send("x")
                await trio.sleep_forever()
    assert len(streams) == 1  # not retried
    assert not any(isinstance(e, ConnectionFailed) for e in drain(sock))


class FailingTogether(WrappedStream):
    """Once armed, the next read and the next large write fail together."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        super().__init__(inner)
        self.armed = False
        self.go = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.armed and len(data) >= BIG:
            await self.go.wait()
            raise RuntimeError("write")
        await self.inner.send_all(data)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.armed:
            await self.go.wait()
            raise RuntimeError("read")
        return await self.inner.receive_some(max_bytes)


async def test_two_tasks_failing_together_are_reported_as_one_error(
    each_transport: str, autojump_clock: object
) -> None:
    if each_transport == "trio-websocket":
        pytest.skip(
            "trio-websocket's reader task can lose its error to the Cancelled that "
            "closing its message channel raises while unwinding (scheduling order)"
        )
    streams: list[FailingTogether] = []
    async with open_mock_server() as server:

        async def open_stream(url: str) -> trio.abc.Stream:
            streams.append(FailingTogether(await server.open_stream(url)))
            return streams[-1]

        async with client_socket(URL, open_stream=open_stream, reconnect=None) as sock:
            connection = await server.wait_connections(1)
            await sock.wait_connected()
            streams[0].armed = True
            await connection.send("wake the reader")
            await sock.send(b"\x00" * LARGE)
            await trio.testing.wait_all_tasks_blocked()
            streams[0].go.set()
            failed = await next_event_skip(sock, ConnectionFailed)
    error = failed.error
    assert type(error).__name__ == "TransportError"
    assert str(error).startswith("connection failed: [")
    assert "RuntimeError('read')" in str(error)
    assert "RuntimeError('write')" in str(error)
    assert failed.retry_in is None


def failing_opener(error: BaseException) -> Callable[[str], Any]:
    async def open_stream(url: str) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        raise error

    return open_stream


async def test_an_exception_group_of_one_from_open_stream_is_reported_as_its_error(
    autojump_clock: object,
) -> None:
    """An ``open_stream`` that runs a nursery of its own (happy eyeballs, say)
    and fails with one error: the event carries that error, classified as such
    (an OSError is retried)."""
    refused = ConnectionRefusedError(111, "refused")
    group = ExceptionGroup("dialing", [refused])
    opener = failing_opener(group)
    async with client_socket(URL, open_stream=opener, reconnect=EXACT) as sock:
        failed = await next_event_skip(sock, ConnectionFailed)
    assert failed.error is refused
    assert failed.retry_in == 1


async def test_an_exception_group_of_two_from_open_stream_is_one_transport_error(
    autojump_clock: object,
) -> None:
    group = ExceptionGroup("dialing", [OSError("v4 refused"), OSError("v6 unreachable")])
    opener = failing_opener(group)
    async with client_socket(URL, open_stream=opener, reconnect=EXACT) as sock:
        failed = await next_event_skip(sock, ConnectionFailed)
    assert type(failed.error).__name__ == "TransportError"
    assert str(failed.error) == (
        "connection failed: [OSError('v4 refused'), OSError('v6 unreachable')]"
    )
    assert failed.retry_in == 1


# -- TLS over real TCP ---------------------------------------------------------------------------


@asynccontextmanager
async def tls_client(port: int, **options: Any) -> AsyncIterator[ClientSocket]:
    authority = trustme.CA()
    context = ssl.create_default_context()
    authority.configure_trust(context)
    options.setdefault("reconnect", Backoff(initial=0.01, jitter=0, max_attempts=1))
    async with client_socket(f"wss://127.0.0.1:{port}/", ssl_context=context, **options) as sock:
        yield sock


async def test_closing_during_the_tls_handshake_closes_the_tcp_connection() -> None:
    """The server takes the ClientHello and never answers; close() then ends
    the attempt, and the server sees the connection closed."""
    hello = trio.Event()
    ended = trio.Event()

    async def respond(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        hello.set()
        while await stream.receive_some():
            pass
        ended.set()

    with trio.fail_after(10):
        async with tcp_server(respond) as port, tls_client(port) as sock:
            await hello.wait()
            assert await sock.close() == ()
            await ended.wait()
        assert kinds(drain(sock)) == ["Closed"]


async def reset_on_hello(stream: trio.SocketStream) -> None:
    """Take the ClientHello, then reset the connection (RST)."""
    await stream.receive_some()
    stream.socket.setsockopt(
        stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0)
    )


async def test_a_reset_during_the_tls_handshake_is_retried() -> None:
    with trio.fail_after(10):
        async with tcp_server(reset_on_hello) as port, tls_client(port, reconnect=EXACT) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error, trio.BrokenResourceError), repr(failed.error)
    assert "Connection reset by peer" in str(failed.error)
    assert failed.retry_in == 1


async def test_a_reported_error_keeps_its_cause() -> None:
    """trio raises the BrokenResourceError from the ConnectionResetError; the
    event should still say so (as AttemptError documents for its own cause)."""
    with trio.fail_after(10):
        async with tcp_server(reset_on_hello) as port, tls_client(port, reconnect=EXACT) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error.__cause__, ConnectionResetError)


# -- the mock server's own edges ---------------------------------------------------------------


async def test_writes_to_a_connection_that_ended_are_ignored(autojump_clock: object) -> None:
    async with open_mock_server() as server, shaped(server) as sock:
        connection = await server.wait_connections(1)
        await sock.wait_connected()
        await sock.close()
        await server.wait_for(lambda: not connection.is_open)
        await connection.send("late")
        await connection.close(1001)
        await connection.send_raw(server_frame(0x1, b"raw"))
        assert connection.close_code == 1000
        assert kinds(drain(sock)) == ["Connected", "Closed"]


async def test_a_detached_server_connection_ignores_every_write() -> None:
    """A ServerConnection made by hand (to call a handler in a unit test) has
    no stream: writing to it, closing or dropping it does nothing."""
    connection = ServerConnection(path="/app/gxwebsocket?x", client_id="x", headers={}, opened_at=0)
    await connection.send("hi")
    await connection.send(b"hi")
    await connection.send_raw(b"\x81\x00")
    await connection.close()
    await connection.drop()
    assert connection.is_open
    assert (connection.received, connection.close_code) == ([], None)


async def raise_in_the_block() -> None:
    async with open_mock_server() as server:
        await server.wait_for(lambda: True)
        raise LookupError("from the block")


async def test_open_mock_server_lets_the_blocks_exception_out_ungrouped() -> None:
    with pytest.raises(LookupError, match=r"^from the block$"):
        await raise_in_the_block()


async def test_a_pong_from_the_client_is_ignored_by_the_server(autojump_clock: object) -> None:
    async with open_mock_server(echo=True) as server, shaped(server, ping_interval=None) as sock:
        connection = await server.wait_connections(1)
        await connection.send_raw(server_frame(PING, b"yo"))
        await sock.send("after the pong")
        assert (await next_event_skip(sock, MessageReceived)).message == "after the pong"
        assert connection.pings == 0  # it counts the client's pings only
        assert connection.is_open


async def test_a_refused_tcp_connection_is_closed_and_the_next_one_served() -> None:
    fast = Backoff(initial=0.01, jitter=0)
    with trio.fail_after(10):
        async with open_mock_server(echo=True) as server:
            port = await server.listen_tcp()
            server.refuse(1)
            url = f"ws://127.0.0.1:{port}/app/gxwebsocket?tcp"
            async with client_socket(url, reconnect=fast) as sock:
                failed = await next_event_skip(sock, ConnectionFailed)
                assert isinstance(failed.error, ConnectionLost)
                assert failed.error.code == 1006
                await sock.wait_connected()
                await sock.send("over tcp")
                assert (await next_event_skip(sock, MessageReceived)).message == "over tcp"
    assert server.attempts == 2
    assert len(server.connections) == 1
