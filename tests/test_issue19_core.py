"""Regression tests of issue 19 (items 1-4, 6, 11, 12 and 16): what a hostile
server or a careless caller found, through the public API, on every transport.
Each failed on the code before the fix (78b22c2)."""

from __future__ import annotations

import contextlib
import struct

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
    MessageReceived,
    ProtocolError,
    Skipped,
    SocketClosedError,
)
from trio_clientsocket.testing import open_mock_server

from ._hostile_helpers import Respond, drain, raw_server, request_key, server_frame, switching
from .conftest import client_socket, next_event_skip

pytestmark = pytest.mark.usefixtures("each_transport")

URL = "ws://app.test/app/gxwebsocket?client-1"
ONCE = {"reconnect": None, "ping_interval": None, "ping_timeout": None}
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


class ClientFrames:
    """The client's frames, read from the server's end of the stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.data = b""

    async def _need(self, count: int) -> bool:
        while len(self.data) < count:
            chunk = await self.stream.receive_some()
            if not chunk:
                return False
            self.data += bytes(chunk)
        return True

    async def next(self) -> tuple[int, bytes] | None:
        """The next frame's opcode and unmasked payload; None at the end."""
        if not await self._need(2):
            return None
        first, second = self.data[0], self.data[1]
        assert second & 0x80, "a client frame must be masked"
        length, start = second & 0x7F, 2
        if length == 126:
            if not await self._need(4):
                return None
            length, start = struct.unpack("!H", self.data[2:4])[0], 4
        elif length == 127:
            if not await self._need(10):
                return None
            length, start = struct.unpack("!Q", self.data[2:10])[0], 10
        if not await self._need(start + 4 + length):
            return None
        mask = self.data[start : start + 4]
        body = self.data[start + 4 : start + 4 + length]
        self.data = self.data[start + 4 + length :]
        return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(body))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def close_code(payload: bytes) -> int:
    code: int = struct.unpack("!H", payload[:2])[0]
    return code


def sent_close_code(sent: list[tuple[int, bytes] | None]) -> int:
    """The code of the close frame the client sent first (it must be one)."""
    assert sent
    frame = sent[0]
    assert frame is not None
    assert frame[0] == CLOSE
    return close_code(frame[1])


async def first_failure(respond: Respond) -> ConnectionFailed:
    """Connect once to a raw server that ``respond``s; the ConnectionFailed."""
    async with raw_server(respond) as server:
        async with client_socket(URL, open_stream=server.open_stream, **ONCE) as sock:
            await next_event_skip(sock, Connected)
            return await next_event_skip(sock, ConnectionFailed)


# -- 1. frames that come in the same read as the 101 answer ----------------------


async def test_a_ping_that_comes_with_the_answer_is_answered_at_once(
    autojump_clock: object,
) -> None:
    """Before: the pong waited until the client next wrote something; a server
    that pings on connect and waits for the pong closed 1011, for ever."""
    answered: list[tuple[int, bytes] | None] = []

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        await stream.send_all(switching(request_key(request)) + server_frame(PING, b"hello"))
        with trio.move_on_after(5):
            answered.append(await ClientFrames(stream).next())
        await stream.send_all(server_frame(CLOSE, close_payload(1000)))

    async with raw_server(respond) as server:
        async with client_socket(URL, open_stream=server.open_stream, **ONCE) as sock:
            await next_event_skip(sock, Connected)
            await next_event_skip(sock, ConnectionFailed)
    assert answered == [(PONG, b"hello")]


async def test_a_close_that_comes_with_the_answer_is_answered(autojump_clock: object) -> None:
    answered: list[tuple[int, bytes] | None] = []

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        close = server_frame(CLOSE, close_payload(4001, b"bye"))
        await stream.send_all(switching(request_key(request)) + close)
        with trio.move_on_after(5):
            answered.append(await ClientFrames(stream).next())

    failed = await first_failure(respond)
    assert isinstance(failed.error, ConnectionLost)
    assert (failed.error.code, failed.error.by_server) == (4001, True)
    assert answered == [(CLOSE, close_payload(4001))] or answered == [
        (CLOSE, close_payload(4001, b"bye"))
    ]


# -- 2. failing the connection sends the close frame it reports -------------------

BAD_FRAMES = {
    "invalid-utf8": (server_frame(TEXT, b"ok \xff"), 1007),
    "reserved-bits": (bytes([0xF1, 2]) + b"ok", 1002),
    "reserved-opcode": (bytes([0x83, 0]), 1002),
    "stray-continuation": (server_frame(CONT, b"x"), 1002),
    "fragmented-ping": (bytes([0x09, 1]) + b"p", 1002),
    "close-code-1005": (server_frame(CLOSE, close_payload(1005)), 1002),
    "close-reason-not-utf8": (server_frame(CLOSE, close_payload(1000, b"\xff")), 1007),
}


@pytest.mark.parametrize("bad", sorted(BAD_FRAMES))
@pytest.mark.parametrize("when", ["with-the-answer", "later"])
async def test_failing_the_connection_sends_the_close_frame_it_reports(
    autojump_clock: object, bad: str, when: str
) -> None:
    data, expected = BAD_FRAMES[bad]
    sent: list[tuple[int, bytes] | None] = []

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        answer = switching(request_key(request))
        if when == "later":
            await stream.send_all(answer)
            await trio.sleep(1)  # the server's own timing: long after the handshake
            await stream.send_all(data)
        else:
            await stream.send_all(answer + data)
        with trio.move_on_after(5):
            sent.append(await ClientFrames(stream).next())

    failed = await first_failure(respond)
    assert isinstance(failed.error, ProtocolError), repr(failed.error)
    assert failed.error.code == expected
    assert sent_close_code(sent) == expected


async def test_a_violation_the_connection_cannot_answer_says_no_close_frame_went(
    autojump_clock: object,
) -> None:
    """The server sends an invalid frame and goes at once: the close frame
    cannot be written, and the error does not claim a code was sent."""

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        await stream.send_all(switching(request_key(request)) + server_frame(TEXT, b"\xff"))
        await stream.aclose()

    failed = await first_failure(respond)
    error = failed.error
    if isinstance(error, ProtocolError):
        assert error.code is None
        assert "could not carry the close frame" in str(error)
    else:  # the end of the stream came first: no violation was found
        assert isinstance(error, ConnectionLost)
        assert error.code == 1006


# -- 3. fail fast on invalid UTF-8 --------------------------------------------------


async def test_invalid_utf8_fails_before_its_frame_is_complete(autojump_clock: object) -> None:
    """Autobahn 6.4.3: the invalid bytes come in the second piece of one frame;
    the client fails the connection then, not when the frame is complete."""
    valid = "κόσμε".encode()
    invalid = b"\xf4\x90\x80\x80"
    rest = b"edited"
    sent: list[tuple[int, bytes] | None] = []

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        whole = server_frame(TEXT, valid + invalid + rest)
        await stream.send_all(switching(request_key(request)) + whole[: 2 + len(valid)])
        await trio.sleep(1)
        await stream.send_all(invalid)
        with trio.move_on_after(5):
            sent.append(await ClientFrames(stream).next())
        # the rest of the frame never comes

    failed = await first_failure(respond)
    assert isinstance(failed.error, ProtocolError)
    assert failed.error.code == 1007
    assert sent_close_code(sent) == 1007


# -- 4. a close between two fragments ----------------------------------------------


async def test_a_close_between_fragments_completes_the_closing_handshake(
    autojump_clock: object,
) -> None:
    """Autobahn 7.1.5: a fragment, the server's close, the next fragment: the
    client answers the close with 1000 (the websockets engine failed it 1002)."""
    sent: list[tuple[int, bytes] | None] = []

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        frames = (
            server_frame(TEXT, b"fragment1", fin=False)
            + server_frame(CLOSE, close_payload(1000))
            + server_frame(CONT, b"fragment2")
        )
        await stream.send_all(switching(request_key(request)))
        await trio.sleep(1)
        await stream.send_all(frames)
        with trio.move_on_after(5):
            sent.append(await ClientFrames(stream).next())

    failed = await first_failure(respond)
    assert isinstance(failed.error, ConnectionLost)
    assert (failed.error.code, failed.error.by_server) == (1000, True)
    assert sent_close_code(sent) == 1000


# -- 6. a send-only application whose events buffer is full ----------------------


@pytest.mark.parametrize("ending", ["close", "drop"])
async def test_a_sender_that_never_reads_reconnects_when_the_server_goes(
    autojump_clock: object, ending: str
) -> None:
    """The event buffer is full and the reader paused; the server closes (and
    drops the stream after its close timeout) or drops the connection; the
    application goes on sending. Before, on the trio-websocket transport, the
    socket stayed Connected for ever and send() finally blocked: now it
    reconnects, and the messages go on the next connection. (The paused reader
    reads nothing, so the websockets and wsproto engines see the close frame
    only when the stream goes; trio-websocket's own reader sees it at once.)"""
    fast = Backoff(initial=0.5, factor=1, jitter=0)
    async with open_mock_server() as server:
        sock = client_socket(
            URL, open_stream=server.open_stream, reconnect=fast, event_buffer=2, outbox_size=5
        )
        async with sock:
            first = await server.wait_connections(1)
            for n in range(6):
                await first.send(f"to nobody {n}")
            await trio.testing.wait_all_tasks_blocked()
            if ending == "close":
                # as real servers do: the close frame, and the stream dropped
                # if no answer comes within the server's close timeout
                await first.close(1011, "going")
                with trio.move_on_after(10):
                    await server.wait_for(lambda: not first.is_open)
            await first.drop()
            with trio.fail_after(60):
                for n in range(20):
                    await sock.send(f"sent {n}")
                await server.wait_for(lambda: len(server.connections) >= 2)
                await server.wait_for(lambda: "sent 19" in server.received)
    assert server.connections[1].received[-1] == "sent 19"


# -- 11. every accepted buffer_bytes works ------------------------------------------


@pytest.mark.parametrize("buffer_bytes", [1, 2, 3])
async def test_a_tiny_byte_buffer_delivers_every_message(
    autojump_clock: object, buffer_bytes: int
) -> None:
    """buffer_bytes=1 was accepted, then stopped the reader for good after its
    first pause (its low-water mark, 0 bytes, was never reached)."""
    async with open_mock_server() as server:
        sock = client_socket(URL, open_stream=server.open_stream, buffer_bytes=buffer_bytes)
        async with sock:
            connection = await server.wait_connections(1)
            for n in range(5):
                await connection.send(f"message {n}")
            got: list[object] = []
            with trio.fail_after(60):
                async for event in sock.events():
                    if isinstance(event, MessageReceived):
                        got.append(event.message)
                        if len(got) == 5:
                            break
    assert got == [f"message {n}" for n in range(5)]


# -- 12. Skipped comes before the reports that were kept ----------------------------


async def test_skipped_comes_before_the_reports_kept_when_a_paused_session_ends(
    autojump_clock: object,
) -> None:
    """The buffer is full while refusals pile up reports past the reserve
    (some are skipped); then a session pauses on its message and ends. The
    Skipped event must come before the reports that were kept, as its
    reference says (it came after them)."""
    fast = Backoff(initial=0.01, factor=1, jitter=0)
    async with open_mock_server() as server:
        server.refuse(30)
        sock = client_socket(URL, open_stream=server.open_stream, reconnect=fast, event_buffer=1)
        async with sock:
            connection = await server.wait_connections(1)
            await connection.send("one")
            await connection.send("two")
            await trio.testing.wait_all_tasks_blocked()
            await connection.drop()
            await sock.send("poke")  # the paused reader reads nothing: a write finds the end
            await server.wait_for(lambda: len(server.connections) >= 2)
            events = drain(sock)
    kinds = [type(event) for event in events]
    assert Skipped in kinds
    skipped = kinds.index(Skipped)
    kept = [i for i, kind in enumerate(kinds) if kind in (Connected, ConnectionFailed)]
    # the first event is the one the buffer held; every report kept in the
    # reserve comes after the Skipped that counts those dropped before them
    assert all(i > skipped for i in kept[1:]), kinds
    assert MessageReceived in kinds


# -- 16. messages that arrive after close() ----------------------------------------


async def test_messages_read_after_close_begins_are_delivered_and_counted(
    autojump_clock: object, each_transport: str
) -> None:
    """Before: counted in messages_received and never delivered. (trio-websocket
    ends get_message() once our close frame is out: it delivers none of them,
    and none is counted.)"""

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        await stream.send_all(switching(request_key(request)))
        frames = ClientFrames(stream)
        with trio.move_on_after(5):
            while (frame := await frames.next()) is not None and frame[0] != CLOSE:
                pass
        late = b"".join(server_frame(TEXT, f"late {n}".encode()) for n in range(3))
        await stream.send_all(late + server_frame(CLOSE, close_payload(1000)))

    async with raw_server(respond) as server:
        sock: ClientSocket = client_socket(URL, open_stream=server.open_stream, **ONCE)
        async with sock:
            await next_event_skip(sock, Connected)
            await sock.close()
            events = drain(sock)
    delivered = [event.message for event in events if isinstance(event, MessageReceived)]
    if each_transport == "trio-websocket":
        assert delivered == []
    else:
        assert delivered == ["late 0", "late 1", "late 2"]
    assert sock.statistics().messages_received == len(delivered)
    assert isinstance(events[-1], Closed)


async def test_the_close_frame_goes_even_when_the_application_answers_first(
    autojump_clock: object,
) -> None:
    """Autobahn 3.4 on trio-websocket: a message and an invalid frame in one
    read; the application echoes the message as the client fails the
    connection. The echo found the connection over and ended the session,
    which cancelled the close frame being written: none went."""
    sent: list[tuple[int, bytes] | None] = []

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        data = server_frame(TEXT, b"Hello") + bytes([0xB1, 5]) + b"Hello"
        await stream.send_all(switching(request_key(request)) + data)
        frames = ClientFrames(stream)
        with trio.move_on_after(5):
            while (frame := await frames.next()) is not None:
                sent.append(frame)
                if frame[0] == CLOSE:
                    break

    async with raw_server(respond) as server:
        async with client_socket(URL, open_stream=server.open_stream, **ONCE) as sock:
            async for event in sock.events():
                if isinstance(event, MessageReceived):
                    with contextlib.suppress(SocketClosedError):
                        await sock.send(event.message)
                elif isinstance(event, ConnectionFailed):
                    break
    assert isinstance(event, ConnectionFailed)
    assert isinstance(event.error, ProtocolError)
    assert event.error.code == 1002
    assert sent
    last = sent[-1]
    assert last is not None
    assert last[0] == CLOSE
    assert close_code(last[1]) == 1002
