"""The sans-I/O engines (``_engine``): both are fed the same hand-made server
bytes (unmasked frames, ``0x81 len payload``) and must assemble, refuse and
record endings alike. No I/O, no time."""

from __future__ import annotations

import struct

import pytest
import wsproto.utilities

from trio_clientsocket import ConnectionLost, ProtocolError
from trio_clientsocket._engine import (
    TOO_BIG,
    Ending,
    WebsocketsEngine,
    WsprotoEngine,
    ending_error,
    fragment_limit,
)
from trio_clientsocket._events import Message
from trio_clientsocket._handshake import (
    HandshakeResponse,
    HeadReader,
    accept_token,
    request_key,
)
from trio_clientsocket._url import parse_url

EngineType = type[WebsocketsEngine] | type[WsprotoEngine]
Engine = WebsocketsEngine | WsprotoEngine

TARGET = parse_url("ws://h.test:8080/app/gxwebsocket?client-1")
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA

engines = pytest.mark.parametrize(
    "cls", [WebsocketsEngine, WsprotoEngine], ids=["websockets", "wsproto"]
)


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """One unmasked frame, as a server sends it."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        return bytes([first, len(payload)]) + payload
    return bytes([first, 126]) + struct.pack("!H", len(payload)) + payload


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, unmasked payload) of each masked frame the client wrote."""
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        assert data[1] & 0x80, "a client frame must be masked"
        start = 2
        if length == 126:
            length, start = struct.unpack("!H", data[2:4])[0], 4
        mask = data[start : start + 4]
        body = data[start + 4 : start + 4 + length]
        frames.append((opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(body))))
        data = data[start + 4 + length :]
    return frames


def close_code_sent(data: bytes) -> int:
    ((opcode, payload),) = client_frames(data)
    assert opcode == CLOSE
    code: int = struct.unpack("!H", payload[:2])[0]
    return code


def head_for(key: str, *extra: str) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_token(key)}",
        *extra,
    ]
    return "\r\n".join(lines).encode("latin-1")


def accept(engine: Engine, head: bytes, rest: bytes) -> list[Message]:
    """``engine.accept()`` with the answer parsed as the socket parses it."""
    got = HeadReader().feed(head + b"\r\n\r\n")
    assert got is not None
    response, parsed_head, _ = got
    return engine.accept(response, parsed_head, rest)


def connected(cls: EngineType, max_size: int = 1000, *, rest: bytes = b"") -> Engine:
    engine = cls(TARGET, [], max_size)
    engine.request()
    assert accept(engine, head_for(engine.key), rest) == []
    return engine


# -- the handshake -----------------------------------------------------------------


@engines
def test_request_carries_target_headers_subprotocols_and_key(cls: EngineType) -> None:
    engine = cls(TARGET, [("X-Token", "abc")], 1000, ("v1", "v2"))
    request = engine.request()
    lines = request.split(b"\r\n")
    assert lines[0] == b"GET /app/gxwebsocket?client-1 HTTP/1.1"
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])}
    assert headers[b"host"] == b"h.test:8080"
    assert headers[b"x-token"] == b"abc"
    assert headers[b"sec-websocket-protocol"].replace(b" ", b"") == b"v1,v2"
    assert request.endswith(b"\r\n\r\n")
    assert engine.key == request_key(request)


@engines
def test_accept_returns_the_messages_that_came_with_the_answer(cls: EngineType) -> None:
    engine = cls(TARGET, [], 1000, ("v1", "v2"))
    engine.request()
    rest = frame(TEXT, b"hi") + frame(BINARY, b"\x00\x01") + frame(TEXT, b"par", fin=False)
    messages = accept(engine, head_for(engine.key, "Sec-WebSocket-Protocol: v2"), rest)
    assert messages == ["hi", b"\x00\x01"]
    assert engine.writable
    assert not engine.ended
    assert engine.receive(frame(CONT, b"tial")) == ["partial"]


@pytest.mark.parametrize(
    "extra",
    [("Upgrade: h2c",), ("Bad Header: x",)],
    ids=["second-upgrade-header", "header-name-with-space"],
)
def test_an_answer_wsproto_refuses_is_a_protocol_error_naming_its_reason(
    extra: tuple[str, ...],
) -> None:
    """Answers that ``check_upgrade`` lets through (it looks for the 'websocket'
    token and does not police header names) but wsproto refuses: its reason is
    kept in the message and as the cause. (The websockets engine no longer
    parses the answer: see test_units_handshake for what it lets through.)"""
    engine = WsprotoEngine(TARGET, [], 1000)
    engine.request()
    head = head_for(engine.key, *extra)
    response = HandshakeResponse(101, "Switching Protocols", ())  # wsproto reads the head
    with pytest.raises(ProtocolError) as info:
        engine.accept(response, head, b"")
    cause = info.value.__cause__
    assert isinstance(cause, wsproto.utilities.ProtocolError)
    assert str(info.value) == f"invalid handshake response: {cause}"


# -- assembling messages -------------------------------------------------------------


@engines
def test_fragmented_text_is_joined_even_when_a_character_is_split(cls: EngineType) -> None:
    engine = connected(cls)
    data = (
        frame(TEXT, b"caf", fin=False)
        + frame(CONT, b"\xc3", fin=False)  # the first byte of "é" alone
        + frame(CONT, b"\xa9!")
        + frame(TEXT, b"next")
    )
    assert engine.receive(data) == ["café!", "next"]


@engines
def test_fragmented_binary_is_joined_with_empty_fragments_skipped(cls: EngineType) -> None:
    engine = connected(cls)
    data = frame(BINARY, b"ab", fin=False) + frame(CONT, fin=False) + frame(CONT, b"cd")
    (message,) = engine.receive(data)
    assert message == b"abcd"
    assert type(message) is bytes


@pytest.mark.parametrize(
    "cls",
    [
        pytest.param(
            WebsocketsEngine,
            id="websockets"
        ),
        pytest.param(WsprotoEngine, id="wsproto"),
    ],
)
def test_a_binary_message_is_bytes(cls: EngineType) -> None:
    """``Message`` is ``str | bytes``: a bytearray is unhashable, mutable, and not
    ``isinstance(m, bytes)`` (``MessageReceived.json`` raises TypeError on it)."""
    engine = connected(cls)
    (message,) = engine.receive(frame(BINARY, b"\x00\xff"))
    assert message == b"\x00\xff"
    assert type(message) is bytes


@engines
def test_a_message_split_across_reads_is_returned_once_complete(cls: EngineType) -> None:
    engine = connected(cls)
    data = frame(TEXT, b"x" * 300)
    assert engine.receive(data[:3]) == []
    assert engine.receive(data[3:200]) == []
    assert engine.receive(data[200:]) == ["x" * 300]


@engines
def test_fragments_up_to_the_limit_make_a_message(cls: EngineType) -> None:
    limit = fragment_limit(1024)
    assert limit == 1024
    engine = connected(cls, 1024)
    data = frame(TEXT, b"a", fin=False) + frame(CONT, fin=False) * (limit - 2) + frame(CONT, b"b")
    assert engine.receive(data) == ["ab"]
    assert not engine.ended


@engines
def test_one_fragment_over_the_limit_fails_the_connection_with_1009(cls: EngineType) -> None:
    engine = connected(cls, 1024)
    data = (
        frame(TEXT, b"ok")
        + frame(TEXT, b"a", fin=False)
        + frame(CONT, fin=False) * 1023
        + frame(CONT, b"b")
    )
    assert engine.receive(data) == ["ok"]  # what came before is still delivered
    assert engine.ended
    assert not engine.writable
    assert engine.ending == Ending(violation=(TOO_BIG, "a message had too many fragments"))
    assert close_code_sent(engine.pending()) == TOO_BIG
    error = ending_error(engine.ending)
    assert isinstance(error, ConnectionLost)
    assert (error.code, error.by_server) == (TOO_BIG, False)


@engines
@pytest.mark.parametrize(
    "data",
    [
        frame(TEXT, b"\xff", fin=False) + frame(CONT, b"ok"),
        frame(TEXT, b"ok", fin=False) + frame(CONT, b"\xff"),
    ],
    ids=["first-fragment", "continuation"],
)
def test_invalid_utf8_in_a_fragmented_text_fails_the_connection_with_1007(
    cls: EngineType, data: bytes
) -> None:
    engine = connected(cls)
    assert engine.receive(frame(TEXT, b"before") + data) == ["before"]
    assert engine.ended
    violation = engine.ending.violation
    assert violation is not None
    assert violation[0] == 1007
    assert close_code_sent(engine.pending()) == 1007
    error = ending_error(engine.ending)
    assert isinstance(error, ProtocolError)
    assert error.code == 1007
    assert str(error).startswith("the server broke the WebSocket protocol: ")


# -- control frames and endings ---------------------------------------------------


@engines
def test_a_ping_is_answered_with_a_pong_of_the_same_payload(cls: EngineType) -> None:
    engine = connected(cls)
    assert engine.receive(frame(PING, b"are you there")) == []
    assert client_frames(engine.pending()) == [(PONG, b"are you there")]
    assert engine.pong is None


@engines
def test_an_unsolicited_pong_is_recorded_and_nothing_else(cls: EngineType) -> None:
    engine = connected(cls)
    assert engine.receive(frame(PONG, b"zz")) == []
    assert engine.pong == b"zz"
    assert engine.pending() == b""
    assert engine.writable
    assert not engine.ended


@engines
def test_our_ping_and_message_frames_are_masked_client_frames(cls: EngineType) -> None:
    engine = connected(cls)
    assert client_frames(engine.ping(b"p1")) == [(PING, b"p1")]
    assert client_frames(engine.send("é")) == [(TEXT, "é".encode())]
    assert client_frames(engine.send(b"\x00")) == [(BINARY, b"\x00")]


@engines
def test_the_servers_close_is_answered_and_recorded(cls: EngineType) -> None:
    engine = connected(cls)
    assert engine.receive(frame(CLOSE, close_payload(4001, b"bye"))) == []
    assert engine.ended
    assert not engine.writable
    assert engine.ending == Ending(peer_close=(4001, "bye"))
    assert close_code_sent(engine.pending()) == 4001
    assert engine.close(1000, "") == b""  # no second close frame
    error = ending_error(engine.ending)
    assert isinstance(error, ConnectionLost)
    assert (error.code, error.reason, error.by_server) == (4001, "bye", True)


@engines
def test_a_ping_after_our_close_neither_fails_nor_ends_the_connection(cls: EngineType) -> None:
    """wsproto may not send anything once our close frame is out: the engine must
    not ask it to pong; the close reply still ends the connection cleanly."""
    engine = connected(cls)
    assert close_code_sent(engine.close(1000, "done")) == 1000
    assert not engine.writable
    assert engine.receive(frame(PING, b"late")) == []
    assert not engine.ended
    engine.pending()  # websockets pongs, wsproto does not: either is fine
    assert engine.receive(frame(CLOSE, close_payload(1000))) == []
    assert engine.ended
    assert engine.ending == Ending(peer_close=(1000, ""))


@engines
def test_a_message_too_big_after_our_close_sends_no_second_close_frame(cls: EngineType) -> None:
    engine = connected(cls, max_size=100)
    engine.close(1000, "")
    assert engine.receive(frame(BINARY, b"x" * 101)) == []
    assert engine.ended
    assert engine.ending == Ending(violation=(TOO_BIG, "a message exceeded max_message_size"))
    assert engine.pending() == b""


@engines
def test_end_of_stream_without_a_close_frame_is_1006(cls: EngineType) -> None:
    engine = connected(cls)
    engine.receive_eof()
    assert engine.ended
    assert engine.ending == Ending()
    error = ending_error(engine.ending)
    assert isinstance(error, ConnectionLost)
    assert (error.code, error.reason) == (1006, "connection dropped without a close frame")


# -- ending_error and fragment_limit ----------------------------------------------


def test_ending_error_prefers_a_violation_to_the_peers_close() -> None:
    error = ending_error(Ending(peer_close=(1000, ""), violation=(1002, "bad opcode")))
    assert isinstance(error, ProtocolError)
    assert (str(error), error.code) == ("the server broke the WebSocket protocol: bad opcode", 1002)


def test_ending_error_of_a_peer_close_without_reason_has_none() -> None:
    error = ending_error(Ending(peer_close=(1005, "")))
    assert isinstance(error, ConnectionLost)
    assert (error.code, error.reason, error.by_server) == (1005, None, True)


@pytest.mark.parametrize(
    ("max_size", "limit"), [(1, 1024), (16 * 1024, 1024), (2**20, 2**16), (2**20 + 15, 2**16)]
)
def test_fragment_limit_is_a_sixteenth_of_max_size_and_at_least_1024(
    max_size: int, limit: int
) -> None:
    assert fragment_limit(max_size) == limit
