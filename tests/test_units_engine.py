"""The sans-I/O engines (``_engine``): both are fed the same hand-made server
bytes (unmasked frames, ``0x81 len payload``) and must assemble, refuse and
record endings alike. No I/O, no time."""

from __future__ import annotations

import struct
import zlib

import pytest
import wsproto.utilities

from trio_clientsocket import ConnectionLost, Deflate, ProtocolError
from trio_clientsocket._engine import (
    TOO_BIG,
    Ending,
    WebsocketsEngine,
    ending_error,
    fragment_limit,
)
from trio_clientsocket._engine_wsproto import WsprotoEngine
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
    """``engine.accept()`` with the answer parsed as the socket parses it; the
    messages that came with it (parsed from the backlog, as the link's first
    read does)."""
    got = HeadReader().feed(head + b"\r\n\r\n")
    assert got is not None
    response, parsed_head, _ = got
    engine.accept(response, parsed_head, rest)
    assert engine.backlog == bool(rest)
    return engine.receive(b"") if rest else []


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
    assert engine.controls == [(False, b"are you there", 0)]


@engines
def test_an_unsolicited_pong_is_recorded_and_nothing_else(cls: EngineType) -> None:
    engine = connected(cls)
    assert engine.receive(frame(PONG, b"zz")) == []
    assert engine.controls == [(True, b"zz", 0)]
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


# -- issue 19: RFC 6455 strictness, fail-fast, bounded parsing --------------------


def frame64(opcode: int, payload: bytes, *, fin: bool = True, first: int | None = None) -> bytes:
    """A frame with a 64-bit length (``first`` overrides the first byte)."""
    head = first if first is not None else (0x80 if fin else 0) | opcode
    return bytes([head, 127]) + struct.pack("!Q", len(payload)) + payload


@engines
def test_frames_that_came_with_the_answer_wait_in_the_backlog(cls: EngineType) -> None:
    """The 101 answer and the first frames in one read: the engine parses them
    on the link's first read, so that their pong or close reply is written at
    once (before, they were parsed in accept() and their reply waited)."""
    engine = cls(TARGET, [], 1000)
    engine.request()
    got = HeadReader().feed(head_for(engine.key) + b"\r\n\r\n")
    assert got is not None
    engine.accept(got[0], got[1], frame(PING, b"p") + frame(CLOSE, close_payload(1001)))
    assert engine.backlog
    assert engine.pending() == b""  # nothing parsed yet
    assert engine.receive(b"") == []
    assert client_frames(engine.pending()) == [(PONG, b"p"), (CLOSE, close_payload(1001))]
    assert engine.ended
    assert not engine.backlog


@engines
def test_invalid_utf8_fails_at_once_in_the_middle_of_a_frame(cls: EngineType) -> None:
    """Autobahn 6.4.3: the invalid byte arrives in the second chop of one frame;
    the connection fails then, not when the frame is complete."""
    engine = connected(cls)
    data = frame(TEXT, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited")
    assert engine.receive(data[:13]) == []
    assert not engine.ended
    assert engine.receive(data[13:17]) == []
    assert engine.ended
    violation = engine.ending.violation
    assert violation is not None
    assert violation[0] == 1007
    assert close_code_sent(engine.pending()) == 1007


@engines
def test_a_close_between_fragments_is_answered_normally(cls: EngineType) -> None:
    """Autobahn 7.1.5: a fragment, the server's close, the next fragment: the
    close handshake completes with 1000 (websockets' protocol alone fails it
    with 1002); the partial message and what follows the close are dropped."""
    engine = connected(cls)
    data = frame(TEXT, b"fragment1", fin=False) + frame(CLOSE, close_payload(1000))
    assert engine.receive(data + frame(CONT, b"fragment2")) == []
    assert engine.ended
    assert engine.ending == Ending(peer_close=(1000, ""))
    assert close_code_sent(engine.pending()) == 1000


@engines
@pytest.mark.parametrize(
    "data",
    [
        bytes([0x83, 0]),  # reserved opcode 3
        bytes([0x8B, 0]),  # reserved control opcode 11
        bytes([0xC1, 2]) + b"ok",  # RSV1 without compression
        bytes([0xA1, 2]) + b"ok",  # RSV2
        bytes([0x91, 2]) + b"ok",  # RSV3
        frame(CONT, b"x"),  # nothing to continue
        frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),  # a new message mid-message
        bytes([0x09, 1]) + b"p",  # a fragmented ping
        frame(PING, b"p" * 126),  # a control frame over 125 bytes
        bytes([0x81, 0x82]) + b"mask" + b"ok",  # a masked frame from the server
        frame64(TEXT, b"", first=0x81)[:2] + b"\x80" + b"\0" * 7,  # length's top bit set
        frame(CLOSE, b"\x03"),  # a 1-byte close payload
        frame(CLOSE, close_payload(1005)),  # a code that may not be sent
        frame(CLOSE, close_payload(1000, b"\xff")),  # a reason that is not UTF-8
    ],
    ids=[
        "opcode-3",
        "opcode-11",
        "rsv1",
        "rsv2",
        "rsv3",
        "stray-continuation",
        "text-in-text",
        "fragmented-ping",
        "long-ping",
        "masked",
        "huge-length",
        "close-1-byte",
        "close-1005",
        "close-bad-reason",
    ],
)
def test_frames_a_server_must_not_send_fail_the_connection_with_a_close_frame(
    cls: EngineType, data: bytes
) -> None:
    engine = connected(cls)
    assert engine.receive(frame(TEXT, b"before") + data + frame(TEXT, b"after")) == ["before"]
    assert engine.ended
    assert engine.failed
    violation = engine.ending.violation
    assert violation is not None
    assert violation[0] in (1002, 1007)
    assert close_code_sent(engine.pending()) == violation[0]
    assert not engine.writable


def test_a_frame_header_over_the_limit_fails_before_its_payload_comes() -> None:
    """websockets engine: the header says it all (wsproto refuses the message
    once more than max_message_size has arrived)."""
    engine = connected(WebsocketsEngine, max_size=1000)
    assert engine.receive(frame64(BINARY, b"")[:2] + struct.pack("!Q", 2**40)) == []
    assert engine.ended
    assert engine.ending.violation == (TOO_BIG, "a message exceeded max_message_size")


def test_parsing_stops_at_the_room_and_resumes_from_the_backlog() -> None:
    """websockets engine (wsproto parses a whole uncompressed read: at most
    64 KiB of messages; compressed, see the next test)."""
    engine = connected(WebsocketsEngine, max_size=1000)
    data = b"".join(frame(TEXT, str(n).encode() * 10) for n in range(10))
    first = engine.receive(data, 25)
    assert first == ["0" * 10, "1" * 10, "2" * 10]  # the one that crosses the room is in
    assert engine.backlog
    rest = engine.receive(b"", 1000)
    assert first + rest == [str(n) * 10 for n in range(10)]
    assert not engine.backlog


@engines
def test_a_closed_engine_parses_nothing_more(cls: EngineType) -> None:
    engine = connected(cls)
    assert engine.receive(frame(CLOSE, close_payload(1000)) + frame(TEXT, b"late")) == []
    assert engine.receive(frame(TEXT, b"later")) == []
    assert not engine.backlog


def deflated(payload: bytes, bits: int = 12) -> bytes:
    """A message as a server compresses it on its own (no context takeover)."""
    compressor = zlib.compressobj(wbits=-bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def connected_deflate(cls: EngineType, max_size: int) -> Engine:
    engine = cls(TARGET, [], max_size, compression=Deflate())
    engine.request()
    answer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12"
    accept(engine, head_for(engine.key, answer), b"")
    assert engine.compressed
    return engine


def compressed_frame(payload: bytes, opcode: int = BINARY) -> bytes:
    data = frame(opcode, deflated(payload))
    return bytes([0xC0 | opcode]) + data[1:]


@engines
def test_a_compressed_read_inflates_only_as_far_as_the_room(cls: EngineType) -> None:
    """Issue 19 (5): one read of well-compressed 1 MiB messages inflated them
    all before the buffer was asked; now parsing stops at the room."""
    mib = 2**20
    engine = connected_deflate(cls, mib)
    data = b"".join(compressed_frame(bytes([n]) * mib) for n in range(20))
    assert len(data) < 65536  # one read's worth
    first = engine.receive(data, 2 * mib)
    assert 2 <= len(first) <= 3
    assert engine.backlog
    rest: list[Message] = []
    for _ in range(40):
        if not engine.backlog:
            break
        rest += engine.receive(b"", 2 * mib)
    assert first + rest == [bytes([n]) * mib for n in range(20)]


@engines
def test_a_deflate_bomb_is_refused_without_inflating_it(cls: EngineType) -> None:
    engine = connected_deflate(cls, 1000)
    assert engine.receive(compressed_frame(b"\0" * 10**7)) == []
    assert engine.ended
    assert engine.ending.violation == (TOO_BIG, "a message exceeded max_message_size")


@engines
def test_compressed_text_is_inflated_and_checked(cls: EngineType) -> None:
    engine = connected_deflate(cls, 1000)
    message = "héllo " * 20
    assert engine.receive(compressed_frame(message.encode(), TEXT)) == [message]
    assert engine.receive(compressed_frame(b"\xff", TEXT)) == []
    violation = engine.ending.violation
    assert violation is not None
    assert violation[0] == 1007
