"""Review of the receive path rewritten for issue 19 (cc2db86, 9e1b34f): a
hostile server and a careless caller against the websockets engine's own frame
parser, the wsproto engine's sliced input, the room and backlog, and the close
frame that fails the connection.

Two levels: the sans-I/O engines fed the same bytes (differential: they must
agree on the messages and on the close code they fail with), and the public
API (``ClientSocket`` with ``open_stream=`` and hand-made server bytes) on
every transport. Findings that fail today are kept as strict xfails, each
with the finding as its reason.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_clientsocket import (
    ClientSocket,
    Connected,
    ConnectionFailed,
    ConnectionLost,
    Deflate,
    MessageReceived,
    ProtocolError,
    SocketClosedError,
)
from trio_clientsocket._engine import WebsocketsEngine
from trio_clientsocket._engine_wsproto import WsprotoEngine
from trio_clientsocket._events import Message
from trio_clientsocket._handshake import HeadReader
from trio_clientsocket._url import parse_url

from ._hostile_helpers import raw_server, request_key, switching
from .conftest import TRANSPORTS, WrappedStream
from .test_fuzz import frame as fuzz_frame
from .test_issue19_core import ClientFrames
from .test_units_engine import client_frames, head_for

EngineType = type[WebsocketsEngine] | type[WsprotoEngine]
Engine = WebsocketsEngine | WsprotoEngine
ENGINES = (WebsocketsEngine, WsprotoEngine)
engines = pytest.mark.parametrize("cls", ENGINES, ids=["websockets", "wsproto"])


def cases(argname: str, values: dict[str, object], **xfails: str) -> pytest.MarkDecorator:
    """Parametrize ``argname`` over ``values`` (id -> value); ``xfails``: id
    (``_`` for ``-``) -> the finding that makes that case fail today."""
    params = []
    for key, value in values.items():
        reason = xfails.get(key.replace("-", "_"))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(value, marks=marks, id=key))
    return pytest.mark.parametrize(argname, params)


def engines_but(**xfails: str) -> pytest.MarkDecorator:
    """Both engines as ``cls``; ``xfails``: engine name -> finding."""
    return cases("cls", {"websockets": WebsocketsEngine, "wsproto": WsprotoEngine}, **xfails)


TARGET = parse_url("ws://h.test/app")
URL = "ws://app.test/app"
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
RSV1 = 0x40
DEFLATE_12 = "permessage-deflate; server_max_window_bits=12"
DEFLATE_12_RESET = DEFLATE_12 + "; server_no_context_takeover"

# -- frames --------------------------------------------------------------------------


def wire(first: int, payload: bytes = b"", *, masked: bool = False) -> bytes:
    """A frame with its first byte as given (FIN, RSV, opcode) and the shortest
    length encoding; ``masked`` sets the mask bit (servers must not)."""
    data = fuzz_frame(first & 0x0F, payload, fin=bool(first & 0x80), rsv=(first >> 4) & 7)
    if not masked:
        return data
    key = b"\x01\x02\x03\x04"
    head = data[: len(data) - len(payload)]
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head[:1] + bytes([head[1] | 0x80]) + head[2:] + key + body


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    return wire((0x80 if fin else 0) | (RSV1 if rsv1 else 0) | opcode, payload)


def close(code: int, reason: bytes = b"") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason)


class Compressor:
    """The server's side of permessage-deflate: one context for all messages
    (context takeover) unless ``reset``."""

    def __init__(self, bits: int = 12, *, reset: bool = False) -> None:
        self._bits = bits
        self._reset = reset
        self._zlib = zlib.compressobj(wbits=-bits)

    def message(self, data: bytes) -> bytes:
        """The payload of a compressed message (the 4-byte tail left out)."""
        if self._reset:
            self._zlib = zlib.compressobj(wbits=-self._bits)
        out = self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]


def deflated(data: bytes) -> bytes:
    return Compressor().message(data)


def final_block(data: bytes) -> bytes:
    """A compressed message ended with a BFINAL=1 block (RFC 7692, 7.2.3.4):
    the sender starts a new DEFLATE stream for the next message."""
    compressor = zlib.compressobj(wbits=-12)
    return compressor.compress(data) + compressor.flush()


def frames_of(
    opcode: int, payload: bytes, cuts: Sequence[int], *, rsv1: bool = False
) -> list[bytes]:
    """The frames of ``payload`` as one message cut at ``cuts``."""
    bounds = [0, *sorted(cuts), len(payload)]
    parts = [payload[a:b] for a, b in itertools.pairwise(bounds)]
    last = len(parts) - 1
    return [
        frame(opcode if i == 0 else CONT, part, fin=i == last, rsv1=rsv1 and i == 0)
        for i, part in enumerate(parts)
    ]


def fragments(opcode: int, payload: bytes, cuts: Sequence[int], *, rsv1: bool = False) -> bytes:
    return b"".join(frames_of(opcode, payload, cuts, rsv1=rsv1))


# -- the engines -----------------------------------------------------------------------


def engine_for(
    cls: EngineType,
    max_size: int = 1000,
    answer: str | None = None,
    offer: Deflate | None = None,
) -> Engine:
    """An engine past a 101 answer; ``answer``: its Sec-WebSocket-Extensions."""
    engine = cls(TARGET, [], max_size, compression=offer or (Deflate() if answer else None))
    engine.request()
    extra = (f"Sec-WebSocket-Extensions: {answer}",) if answer else ()
    got = HeadReader().feed(head_for(engine.key, *extra) + b"\r\n\r\n")
    assert got is not None
    engine.accept(got[0], got[1], b"")
    assert engine.compressed == bool(answer)
    return engine


def feed(
    engine: Engine, data: bytes, cuts: Sequence[int] = (), room: int | None = None
) -> list[Message]:
    """``data`` in reads cut at ``cuts``; the backlog drained after each read as
    the link does (``room`` bytes of messages a parse, or everything)."""
    out: list[Message] = []
    start = 0
    for stop in [*sorted(cuts), len(data)]:
        out += (
            engine.receive(data[start:stop])
            if room is None
            else engine.receive(data[start:stop], room)
        )
        start = stop
        for _ in range(len(data) + 1):
            if not engine.backlog:
                break
            out += engine.receive(b"") if room is None else engine.receive(b"", room)
        assert not engine.backlog
    return out


@attrs.frozen
class Outcome:
    """What an engine made of some bytes: messages, the close code it failed
    the connection with, the server's close code (ints)."""

    messages: list[Message]
    violation: int | None
    peer: int | None


def outcome(engine: Engine, messages: list[Message]) -> Outcome:
    ending = engine.ending
    violation = int(ending.violation[0]) if ending.violation else None
    peer = int(ending.peer_close[0]) if ending.peer_close else None
    return Outcome(messages, violation, peer)


def run(
    cls: EngineType,
    data: bytes,
    cuts: Sequence[int] = (),
    room: int | None = None,
    *,
    max_size: int = 1000,
    answer: str | None = None,
) -> Outcome:
    engine = engine_for(cls, max_size, answer)
    return outcome(engine, feed(engine, data, cuts, room))


def both(data: bytes, cuts: Sequence[int] = (), **options: Any) -> tuple[Outcome, Outcome]:
    return run(WebsocketsEngine, data, cuts, **options), run(WsprotoEngine, data, cuts, **options)


# A conversation that uses every path of the parser: 7-bit, 16-bit and 64-bit
# lengths, characters of 2, 3 and 4 bytes cut between frames, empty frames and
# messages, pings and pongs between fragments, an unfragmented message after
# a fragmented one, and the server's close.
CHARS = "aé€😀"
RICH_TEXT = CHARS * 40
RICH = (
    frame(TEXT, "é".encode()[:1], fin=False)
    + frame(PING, b"p1")
    + frame(CONT, "é".encode()[1:] + "😀".encode()[:3], fin=False)
    + frame(CONT, b"", fin=False)
    + frame(PONG, b"")
    + frame(CONT, "😀".encode()[3:])
    + frame(BINARY, b"")
    + frame(TEXT, b"")
    + frame(BINARY, bytes(range(256)) * 2)  # 16-bit length
    + frame(TEXT, RICH_TEXT.encode())
    + bytes([0x82, 127])
    + struct.pack("!Q", 70_000)
    + b"\x07" * 70_000  # 64-bit length
    + close(1000, b"done")
)
RICH_MESSAGES: list[Message] = [
    "é😀",
    b"",
    "",
    bytes(range(256)) * 2,
    RICH_TEXT,
    b"\x07" * 70_000,
]


def rich_compressed(reset: bool) -> bytes:
    compressor = Compressor(reset=reset)
    first = compressor.message(RICH_TEXT.encode())
    second = compressor.message(RICH_TEXT.encode())  # tiny with context takeover
    third = compressor.message(bytes(range(256)) * 40)
    return (
        fragments(TEXT, first, [1, 2, len(first) // 2], rsv1=True)
        + frame(PING, b"between messages")
        + frame(TEXT, second, rsv1=True)
        + frame(BINARY, b"plain, between compressed ones")
        + frame(BINARY, third, rsv1=True)
        + frame(TEXT, b"", rsv1=True)
        + close(1000)
    )


RICH_COMPRESSED_MESSAGES: list[Message] = [
    RICH_TEXT,
    RICH_TEXT,
    b"plain, between compressed ones",
    bytes(range(256)) * 40,
    "",
]


@engines
def test_every_single_cut_of_a_rich_conversation_gives_the_same_messages(
    cls: EngineType,
) -> None:
    """Frames cut at every byte: header, extended length, payload, inside a
    UTF-8 character, inside a control frame."""
    end = RICH.index(b"\x07" * 10) + 10  # every cut up to the 64-bit payload
    for cut in range(end):
        assert run(cls, RICH, [cut], max_size=70_000) == Outcome(RICH_MESSAGES, None, 1000), cut


@engines
@pytest.mark.parametrize("reset", [False, True], ids=["context-takeover", "no-context-takeover"])
def test_every_cut_of_a_compressed_conversation_gives_the_same_messages(
    cls: EngineType, reset: bool
) -> None:
    data = rich_compressed(reset)
    answer = DEFLATE_12_RESET if reset else DEFLATE_12
    expected = Outcome(RICH_COMPRESSED_MESSAGES, None, 1000)
    for cut in range(len(data)):
        assert run(cls, data, [cut], max_size=20_000, answer=answer) == expected, cut
    # byte by byte, and with the smallest room (one message a parse)
    every = range(1, len(data))
    assert run(cls, data, every, max_size=20_000, answer=answer) == expected
    assert run(cls, data, [], 1, max_size=20_000, answer=answer) == expected


@engines
def test_every_pair_of_cuts_around_a_fragmented_message_gives_the_same_messages(
    cls: EngineType,
) -> None:
    data = RICH[: RICH.index(frame(BINARY, b""))] + frame(TEXT, "€".encode())
    for first in range(len(data)):
        for second in range(first, len(data)):
            assert run(cls, data, [first, second]).messages == ["é😀", "€"], (first, second)


@engines
@pytest.mark.parametrize("room", [1, 2, 100, 1000])
def test_the_room_never_loses_duplicates_or_reorders_a_message(cls: EngineType, room: int) -> None:
    messages = [bytes([n]) * (n * 7 % 300) for n in range(60)]
    data = b"".join(frame(BINARY, m) for m in messages)
    for cuts in ([], [1], [3, 500, 501], list(range(1, len(data), 97))):
        assert run(cls, data, cuts, room).messages == messages


def test_the_room_is_kept_when_a_message_ends_with_an_empty_frame_ok_case() -> None:
    """Control case for the next test: the final fragment carries a byte."""
    engine = engine_for(WebsocketsEngine)
    data = frame(BINARY, b"a" * 100, fin=False) + frame(CONT, b"a") + frame(BINARY, b"b" * 100)
    assert engine.receive(data, 1) == [b"a" * 101]
    assert engine.backlog


def test_the_room_is_kept_when_a_message_ends_with_an_empty_frame() -> None:
    engine = engine_for(WebsocketsEngine)
    data = frame(BINARY, b"a" * 100, fin=False) + frame(CONT) + frame(BINARY, b"b" * 100)
    assert engine.receive(data, 1) == [b"a" * 100]
    assert engine.backlog


# -- differential: the same bytes, the same outcome --------------------------------------


def test_the_engines_agree_on_every_first_byte_and_mask_bit() -> None:
    """Every FIN/RSV/opcode combination, masked or not, with and without
    compression, followed by a continuation and the server's close: the same
    messages and the same close code. (The combinations where they disagree
    are the xfail tests below.)"""
    disagree = []
    for answer in (None, DEFLATE_12):
        for first in range(256):
            bodies = [b"", b"ok"] + ([struct.pack("!H", 1000)] if first & 0xF == CLOSE else [])
            follows = [b"", frame(CONT), frame(CONT, b"", fin=False) + frame(CONT)]
            if not answer:
                follows.append(frame(TEXT, b"next"))
            cases = [(body, follow, False) for body in bodies for follow in follows]
            cases.append((b"ok", b"", True))  # the mask bit set
            for body, follow, masked in cases:
                payload = deflated(body) if answer and first & RSV1 else body
                data = wire(first, payload, masked=masked) + follow + close(1000)
                a, b = both(data, answer=answer)
                if a != b:
                    disagree.append((answer, hex(first), masked, body, follow, a, b))
    assert disagree == []


DISAGREEMENTS = {
    "non-minimal-16-bit-length": (
        bytes([0x81, 126, 0, 2]) + b"ok" + close(1000),
        None,
        "wsproto refuses a length not in its shortest form (1002), the websockets engine "
        "delivers the message (RFC 6455 5.2: the minimal number of bytes MUST be used)",
    ),
    "non-minimal-64-bit-length": (
        bytes([0x82, 127]) + struct.pack("!Q", 300) + b"x" * 300 + close(1000),
        None,
        "the same with a 64-bit length",
    ),
    "close-code-1014": (
        close(1014, b"bad gateway"),
        None,
        "close code 1014 (Bad Gateway, in the IANA registry): the websockets engine "
        "takes it as the server's close, wsproto fails the connection with 1002",
    ),
    "corrupt-deflate-data": (
        frame(BINARY, b"\xff\xff\xff", rsv1=True) + close(1000),
        DEFLATE_12,
        "a compressed payload that does not inflate: 1002 from the websockets engine, "
        "1007 from wsproto",
    ),
    "new-message-inside-a-compressed-one": (
        frame(TEXT, deflated(b"abc"), fin=False, rsv1=True) + frame(TEXT, b"x") + close(1000),
        DEFLATE_12,
        "a new data frame while a compressed message is unfinished: 1002 from the "
        "websockets engine, 1007 ('error in extension') from wsproto",
    ),
}


WSPROTO_LIMITS = {"close-code-1014"}
"""Disagreements that are wsproto's own (it refuses close code 1014, which the
IANA registry added after RFC 6455): documented on the comparison page."""


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=[pytest.mark.xfail(strict=True, reason=reason)] if name in WSPROTO_LIMITS else [],
        )
        for name, (_, _, reason) in DISAGREEMENTS.items()
    ],
)
def test_the_engines_agree_on_these_bytes(name: str) -> None:
    data, answer, _ = DISAGREEMENTS[name]
    a, b = both(data, answer=answer)
    assert a == b


@engines
@pytest.mark.parametrize(
    "data",
    [
        bytes([0x82, 127]) + struct.pack("!Q", 70_000) + b"x" * 70_000,
        fragments(BINARY, b"x" * 70_000, [1, 65_536]),
        frame(TEXT, "é".encode() * 35_000),
        fragments(TEXT, "é".encode() * 35_000, [1, 69_999]),  # a character cut in two
    ],
    ids=["64-bit", "fragmented", "text", "fragmented-text"],
)
@pytest.mark.parametrize("over", [0, 1])
def test_a_message_of_exactly_max_message_size_passes_and_one_byte_more_fails(
    cls: EngineType, data: bytes, over: int
) -> None:
    limit = 70_000 - over
    got = run(cls, data + close(1000), [3, 11, len(data) - 1], max_size=limit)
    if over:
        assert got == Outcome([], 1009, None)
    else:
        assert len(got.messages) == 1
        assert got == Outcome(got.messages, None, 1000)


@engines
@pytest.mark.parametrize("over", [0, 1])
@pytest.mark.parametrize("reset", [False, True], ids=["context-takeover", "no-context-takeover"])
def test_a_compressed_message_of_exactly_the_limit_passes_and_one_byte_more_fails(
    cls: EngineType, over: int, reset: bool
) -> None:
    compressor = Compressor(reset=reset)
    warm = compressor.message(b"\x00" * 100)
    payload = compressor.message(b"\x00" * 50_000)
    data = (
        frame(BINARY, warm, rsv1=True)
        + fragments(BINARY, payload, [1, len(payload) // 2], rsv1=True)
        + close(1000)
    )
    answer = DEFLATE_12_RESET if reset else DEFLATE_12
    got = run(cls, data, [5, 9], max_size=50_000 - over, answer=answer)
    if over:
        assert got == Outcome([b"\x00" * 100], 1009, None)
    else:
        assert got == Outcome([b"\x00" * 100, b"\x00" * 50_000], None, 1000)


@engines
def test_a_bomb_in_a_later_fragment_fails_with_1009_before_it_inflates(cls: EngineType) -> None:
    compressor = zlib.compressobj(wbits=-12)
    start = compressor.compress(b"harmless start") + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = compressor.compress(b"\x00" * 20_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = (
        frame(BINARY, start, fin=False, rsv1=True)
        + frame(CONT, b"", fin=False)
        + frame(CONT, bomb[:-4])
        + close(1000)
    )
    engine = engine_for(cls, 100_000, DEFLATE_12)
    got = feed(engine, data, [40])
    assert outcome(engine, got) == Outcome([], 1009, None)
    ((_, payload), *_) = [f for f in client_frames(engine.pending()) if f[0] == CLOSE]
    assert struct.unpack("!H", payload[:2])[0] == 1009


@engines
@pytest.mark.parametrize("bits", range(9, 16))
def test_every_server_window_from_9_to_15_bits_inflates(cls: EngineType, bits: int) -> None:
    answer = f"permessage-deflate; server_max_window_bits={bits}"
    engine = engine_for(cls, 100_000, answer, Deflate(server_max_window_bits=None))
    compressor = Compressor(bits)
    text = (RICH_TEXT * 50).encode()
    data = frame(TEXT, compressor.message(text), rsv1=True)
    data += frame(TEXT, compressor.message(text), rsv1=True)
    assert feed(engine, data, [7]) == [text.decode()] * 2


def window_8_stream() -> bytes:
    """A message a server with a 256-byte window may send (zlib cannot
    compress with 8 bits: 9 with matches no farther than 2 bytes back)."""
    return deflated(b"ab" * 500)


@engines_but()
def test_a_server_window_of_8_bits_is_accepted(cls: EngineType) -> None:
    answer = "permessage-deflate; server_max_window_bits=8"
    engine = engine_for(cls, 100_000, answer, Deflate(server_max_window_bits=None))
    assert feed(engine, frame(BINARY, window_8_stream(), rsv1=True)) == [b"ab" * 500]


@engines_but()
def test_messages_ended_by_a_final_deflate_block_are_all_delivered(cls: EngineType) -> None:
    data = (
        frame(TEXT, final_block(b"Hello"), rsv1=True)
        + frame(TEXT, final_block(b"World"), rsv1=True)
        + close(1000)
    )
    assert run(cls, data, answer=DEFLATE_12) == Outcome(["Hello", "World"], None, 1000)


def test_a_final_deflate_block_is_fine_without_context_takeover() -> None:
    """Control case: with a new inflater for each message, it works."""
    data = frame(TEXT, final_block(b"Hello"), rsv1=True) + frame(
        TEXT, final_block(b"World"), rsv1=True
    )
    for cls in ENGINES:
        assert run(cls, data, answer=DEFLATE_12_RESET).messages == ["Hello", "World"]


@engines_but()
@pytest.mark.parametrize("control", [PING, PONG])
def test_a_control_frame_inside_a_compressed_message_changes_nothing(
    cls: EngineType, control: int
) -> None:
    payload = deflated(b"hello world hello world")
    data = (
        frame(BINARY, payload[:3], fin=False, rsv1=True)
        + frame(control, b"c")
        + frame(CONT, payload[3:])
    )
    assert run(cls, data, answer=DEFLATE_12).messages == [b"hello world hello world"]


@engines
def test_nothing_after_the_close_frame_or_a_violation_is_parsed(cls: EngineType) -> None:
    after = frame(TEXT, b"after") + frame(PING, b"x") + frame(TEXT, b"\xff")
    assert run(cls, frame(TEXT, b"a") + close(1001) + after) == Outcome(["a"], None, 1001)
    assert run(cls, frame(TEXT, b"a") + frame(BINARY, b"", rsv1=True) + after) == Outcome(
        ["a"], 1002, None
    )


@engines
def test_the_end_of_the_stream_inside_a_frame_is_1006_at_every_byte(cls: EngineType) -> None:
    data = frame(TEXT, b"whole") + frame(TEXT, "κόσμε".encode(), fin=False) + frame(CONT, b"!")
    for cut in range(len(b"whole") + 2, len(data)):
        engine = engine_for(cls)
        got = feed(engine, data[:cut])
        engine.receive_eof()
        assert engine.ended
        assert outcome(engine, got) == Outcome(["whole"], None, None), cut


# -- hypothesis: random conversations, random reads, random rooms ------------------------


@st.composite
def conversations(
    draw: st.DrawFn, *, compressed: bool, controls_in_compressed: bool = False
) -> tuple[bytes, list[Message], bool]:
    """Frames of several messages (some compressed, fragmented, with pings
    between frames), the messages they make, and whether context is reset."""
    reset = draw(st.booleans())
    compressor = Compressor(reset=reset)
    data = b""
    expected: list[Message] = []
    for _ in range(draw(st.integers(1, 8))):
        text = draw(st.booleans())
        if text:
            body = draw(st.text(alphabet=CHARS + "xyz", max_size=300)).encode()
            expected.append(body.decode())
        else:
            body = draw(st.binary(max_size=300))
            expected.append(body)
        squeeze = compressed and draw(st.booleans())
        payload = compressor.message(body) if squeeze else body
        cuts = draw(st.lists(st.integers(0, len(payload)), max_size=3))
        frames = frames_of(TEXT if text else BINARY, payload, cuts, rsv1=squeeze)
        if draw(st.booleans()) and (controls_in_compressed or not squeeze):
            frames.insert(1, frame(PING, b"p"))  # after the first frame: maybe inside
        data += b"".join(frames)
        if draw(st.booleans()):
            data += frame(PONG, b"")
    return data + close(1000), expected, reset


@engines
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    story=conversations(compressed=True),
    cuts=st.lists(st.integers(0, 4000), max_size=8),
    room=st.sampled_from([None, 1, 50, 600]),
)
def test_random_conversations_split_at_random_give_every_message_once_in_order(
    cls: EngineType, story: tuple[bytes, list[Message], bool], cuts: list[int], room: int | None
) -> None:
    data, expected, reset = story
    cuts = [c for c in cuts if c <= len(data)]
    answer = DEFLATE_12_RESET if reset else DEFLATE_12
    assert run(cls, data, cuts, room, max_size=10_000, answer=answer) == Outcome(
        expected, None, 1000
    )


# -- the public API, on every transport ------------------------------------------------------

COMPRESSING = ("websockets", "wsproto")
"""The transports that offer permessage-deflate (trio-websocket has none)."""


def on(transports: Sequence[str] = TRANSPORTS, **xfails: str) -> pytest.MarkDecorator:
    """Each transport as ``transport``; ``xfails``: transport -> finding."""
    return cases("transport", {t: t for t in transports}, **xfails)


@attrs.define
class Story:
    """What the application saw and what the client wrote back."""

    messages: list[Message] = attrs.Factory(list)
    error: BaseException | None = None
    replies: list[tuple[int, bytes]] = attrs.Factory(list)
    """The client's frames after the handshake: (opcode, payload)."""

    def close_codes(self) -> list[int]:
        return [struct.unpack("!H", p[:2])[0] for op, p in self.replies if op == CLOSE and p]


async def story(
    transport: str,
    chunks: Sequence[bytes],
    *,
    answer: str | None = None,
    pause: float = 1.0,
    read_delay: float = 0.0,
    stream: Callable[[trio.abc.Stream], trio.abc.Stream] | None = None,
    before_reading: float = 0.0,
    meanwhile: Callable[[ClientSocket], Awaitable[None]] | None = None,
    **options: Any,
) -> Story:
    """A server that answers 101 (with ``answer`` as its extensions), then
    sends ``chunks`` ``pause`` seconds apart and records the client's frames;
    an application that reads every event (``read_delay`` seconds after each
    message, starting ``before_reading`` seconds in) until the connection
    fails (reconnect off), while ``meanwhile(sock)`` runs; ``stream`` wraps the
    client's stream."""
    seen = Story()

    async def replies(server_end: trio.abc.Stream) -> None:
        frames = ClientFrames(server_end)
        with trio.move_on_after(60), contextlib.suppress(trio.BrokenResourceError):
            while (got := await frames.next()) is not None:
                seen.replies.append(got)

    async def respond(server_end: trio.abc.Stream, request: bytes) -> None:
        extra = (f"Sec-WebSocket-Extensions: {answer}".encode(),) if answer else ()
        await server_end.send_all(switching(request_key(request), *extra))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(replies, server_end)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                for chunk in chunks:
                    await trio.sleep(pause)
                    await server_end.send_all(chunk)

    options = {"reconnect": None, "ping_interval": None, "ping_timeout": None, **options}
    async with raw_server(respond) as server:

        async def open_stream(url: str) -> trio.abc.Stream:
            inner = await server.open_stream(url)
            return inner if stream is None else stream(inner)

        sock = ClientSocket(
            URL,
            open_stream=open_stream,
            transport=transport,  # type: ignore[arg-type]  # one of TRANSPORTS
            **options,
        )
        async with sock, trio.open_nursery() as nursery:
            if meanwhile is not None:
                nursery.start_soon(meanwhile, sock)
            with trio.fail_after(3600):
                await trio.sleep(before_reading)
                async for event in sock.events():
                    if isinstance(event, MessageReceived):
                        seen.messages.append(event.message)
                        await trio.sleep(read_delay)
                    elif isinstance(event, ConnectionFailed):
                        seen.error = event.error
                        break
                    else:
                        assert isinstance(event, Connected), event
            await trio.sleep(5)  # the server reads what the client wrote
    return seen


def lost(error: BaseException | None, code: int, *, by_server: bool) -> bool:
    return isinstance(error, ConnectionLost) and (error.code, error.by_server) == (code, by_server)


@on()
@pytest.mark.parametrize("ending", [close(1000), frame(TEXT, b"\xff")], ids=["close", "1007"])
async def test_the_close_code_is_an_int(
    autojump_clock: object, transport: str, ending: bytes
) -> None:
    seen = await story(transport, [ending])
    assert isinstance(seen.error, ConnectionLost | ProtocolError), repr(seen.error)
    assert type(seen.error.code) is int


@on()
async def test_a_rich_conversation_cut_into_pieces_is_delivered_whole(
    autojump_clock: object, transport: str
) -> None:
    cuts = [1, 2, 3, 5, 9, 13, 30, 200, 600, 2000, 2001, 2002, 40_000]
    bounds = [0, *cuts, len(RICH)]
    chunks = [RICH[a:b] for a, b in itertools.pairwise(bounds)]
    seen = await story(transport, chunks, max_message_size=70_000)
    assert seen.messages == RICH_MESSAGES
    assert lost(seen.error, 1000, by_server=True), repr(seen.error)
    assert (PONG, b"p1") in seen.replies
    assert seen.close_codes() == [1000]


@on(COMPRESSING)
async def test_a_compressed_conversation_cut_into_pieces_is_delivered_whole(
    autojump_clock: object, transport: str
) -> None:
    data = rich_compressed(reset=False)
    chunks = [data[a : a + 7] for a in range(0, len(data), 7)]
    seen = await story(transport, chunks, answer=DEFLATE_12, pause=0.01)
    assert seen.messages == RICH_COMPRESSED_MESSAGES
    assert lost(seen.error, 1000, by_server=True), repr(seen.error)


@on(COMPRESSING)
async def test_messages_ended_by_a_final_deflate_block_reach_the_application(
    autojump_clock: object, transport: str
) -> None:
    chunks = [
        frame(TEXT, final_block(b"Hello"), rsv1=True),
        frame(TEXT, final_block(b"World"), rsv1=True),
        frame(TEXT, final_block(b"again"), rsv1=True) + close(1000),
    ]
    seen = await story(transport, chunks, answer=DEFLATE_12)
    assert seen.messages == ["Hello", "World", "again"]


@on(COMPRESSING)
async def test_a_ping_inside_a_compressed_message_is_answered_and_changes_nothing(
    autojump_clock: object, transport: str
) -> None:
    payload = deflated(b"hello world hello world")
    chunks = [
        frame(BINARY, payload[:3], fin=False, rsv1=True),
        frame(PING, b"mid") + frame(CONT, payload[3:]),
        close(1000),
    ]
    seen = await story(transport, chunks, answer=DEFLATE_12)
    assert seen.messages == [b"hello world hello world"]
    assert (PONG, b"mid") in seen.replies


@on(COMPRESSING)
async def test_a_server_window_of_8_bits_works(autojump_clock: object, transport: str) -> None:
    chunks = [frame(BINARY, window_8_stream(), rsv1=True), close(1000)]
    seen = await story(
        transport,
        chunks,
        answer="permessage-deflate; server_max_window_bits=8",
        compression=Deflate(server_max_window_bits=None),
    )
    assert seen.messages == [b"ab" * 500]
    assert lost(seen.error, 1000, by_server=True), repr(seen.error)


@on(
    wsproto="wsproto (1.3) refuses close code 1014 (Bad Gateway, which the IANA registry "
    "added after RFC 6455): the wsproto engine fails the connection with 1002; documented "
    "on the comparison page",
    trio_websocket="trio-websocket parses with wsproto: the same (ProtocolError 1002, and the "
    "client's close frame says 1002)",
)
async def test_the_servers_close_with_code_1014_is_its_close(
    autojump_clock: object, transport: str
) -> None:
    seen = await story(transport, [close(1014, b"upstream down")])
    assert lost(seen.error, 1014, by_server=True), repr(seen.error)
    assert seen.close_codes() == [1014]


@on()
@pytest.mark.parametrize("over", [0, 1])
async def test_a_64_bit_length_of_exactly_max_message_size_and_one_more(
    autojump_clock: object, transport: str, over: int
) -> None:
    size = 70_000 + over
    data = bytes([0x82, 127]) + struct.pack("!Q", size) + b"z" * size
    seen = await story(transport, [data[:5], data[5:], close(1000)], max_message_size=70_000)
    if over:
        assert seen.messages == []
        assert lost(seen.error, 1009, by_server=False), repr(seen.error)
        assert seen.close_codes() == [1009]
    else:
        assert seen.messages == [b"z" * size]
        assert lost(seen.error, 1000, by_server=True), repr(seen.error)


@on(COMPRESSING)
async def test_a_bomb_in_a_later_fragment_fails_with_1009(
    autojump_clock: object, transport: str
) -> None:
    compressor = zlib.compressobj(wbits=-12)
    start = compressor.compress(b"harmless") + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = compressor.compress(b"\x00" * 20_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    chunks = [
        frame(BINARY, b"before"),
        frame(BINARY, start, fin=False, rsv1=True) + frame(CONT, b"", fin=False),
        frame(CONT, bomb[:-4]),
    ]
    seen = await story(transport, chunks, answer=DEFLATE_12, max_message_size=100_000)
    assert seen.messages == [b"before"]
    assert lost(seen.error, 1009, by_server=False), repr(seen.error)
    assert seen.close_codes() == [1009]


@on()
async def test_empty_messages_and_frames_are_delivered(
    autojump_clock: object, transport: str
) -> None:
    chunks = [
        frame(TEXT) + frame(BINARY),
        frame(TEXT, fin=False) + frame(CONT, fin=False),
        frame(CONT) + frame(BINARY, fin=False),
        frame(CONT) + close(1000),
    ]
    seen = await story(transport, chunks)
    assert seen.messages == ["", b"", "", b""]
    assert [type(m) for m in seen.messages] == [str, bytes, str, bytes]


@on()
@pytest.mark.parametrize("cut", [1, 2, 5, 6, 9])
async def test_the_end_of_the_stream_inside_a_frame_is_a_lost_connection(
    autojump_clock: object, transport: str, cut: int
) -> None:
    partial = frame(TEXT, "κόσμε".encode())[:cut]
    seen = await story(transport, [frame(TEXT, b"whole") + partial])
    assert seen.messages == ["whole"]
    assert lost(seen.error, 1006, by_server=False), repr(seen.error)


def public_outcome(seen: Story) -> tuple[object, ...]:
    error = seen.error
    code = getattr(error, "code", None)
    return (
        tuple(seen.messages),
        type(error).__name__,
        None if code is None else int(code),
        getattr(error, "by_server", None),
        tuple(seen.close_codes()),
    )


async def first_byte_sweep(transport: str) -> dict[int, tuple[object, ...]]:
    found = {}
    for first in range(256):
        chunk = frame(TEXT, b"a") + wire(first, b"ok") + frame(CONT) + frame(TEXT, b"z")
        found[first] = public_outcome(await story(transport, [chunk]))
    return found


def test_every_transport_ends_alike_on_every_first_byte() -> None:
    """Through the public API: the messages, the error (type, code,
    by_server) and the close frame the client sent, for every FIN/RSV/opcode
    combination, are the same on the three transports."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    found = {t: trio.run(first_byte_sweep, t, clock=clock) for t in TRANSPORTS}
    differ = {
        hex(first): [found[t][first] for t in TRANSPORTS]
        for first in range(256)
        if len({found[t][first] for t in TRANSPORTS}) > 1
    }
    assert differ == {}


@on()
@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(TEXT, b"\xff"), 1007),
        (wire(0xC1, b"ok"), 1002),
        (frame(CONT, b"x"), 1002),
        (wire(0x83), 1002),
    ],
    ids=["invalid-utf8", "rsv1", "stray-continuation", "opcode-3"],
)
async def test_a_violation_followed_by_the_servers_close_is_the_clients_failure(
    autojump_clock: object, transport: str, bad: bytes, code: int
) -> None:
    seen = await story(transport, [frame(TEXT, b"a") + bad + close(1000, b"bye")])
    assert seen.messages == ["a"]
    assert isinstance(seen.error, ProtocolError), repr(seen.error)
    assert seen.error.code == code
    assert seen.close_codes() == [code]


@on()
@pytest.mark.parametrize(
    "ending",
    [close(1001), frame(TEXT, b"\xff"), frame(TEXT, b"a", fin=False) + frame(TEXT, b"b")],
    ids=["close", "invalid-utf8", "new-message-mid-message"],
)
async def test_nothing_after_the_end_is_delivered(
    autojump_clock: object, transport: str, ending: bytes
) -> None:
    after = frame(TEXT, b"after") + frame(PING, b"late")
    seen = await story(transport, [frame(TEXT, b"first") + ending + after, frame(TEXT, b"more")])
    assert seen.messages == ["first"]
    assert (PONG, b"late") not in seen.replies
    assert len(seen.close_codes()) == 1


@on()
async def test_a_ping_flood_while_the_reader_is_paused_loses_nothing(
    autojump_clock: object, transport: str
) -> None:
    """The application reads nothing while the server fills the buffer and
    pings 3,000 times; then it reads: every message, in order, and every
    ping answered."""
    messages = [f"message {n}" for n in range(12)]
    flood = frame(PING, b"f") * 3000
    chunks = [b"".join(frame(TEXT, m.encode()) for m in messages[:8]) + flood]
    chunks += [b"".join(frame(TEXT, m.encode()) for m in messages[8:]) + close(1000)]
    seen = await story(transport, chunks, event_buffer=4, before_reading=30)
    assert seen.messages == messages
    assert seen.replies.count((PONG, b"f")) == 3000


@st.composite
def chopped(draw: st.DrawFn, *, compressed: bool) -> tuple[list[bytes], list[Message], bool]:
    data, expected, reset = draw(conversations(compressed=compressed))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=10))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a], expected, reset


async def slow_reader_story(
    transport: str, chunks: list[bytes], reset: bool, buffer_bytes: int, delay: float
) -> Story:
    compressed = transport in COMPRESSING
    return await story(
        transport,
        chunks,
        answer=(DEFLATE_12_RESET if reset else DEFLATE_12) if compressed else None,
        pause=0.3,
        read_delay=delay,
        event_buffer=3,
        buffer_bytes=buffer_bytes,
        max_message_size=2000,
        compression=Deflate(server_no_context_takeover=reset) if compressed else None,
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    compressed_story=chopped(compressed=True),
    plain_story=chopped(compressed=False),
    buffer_bytes=st.sampled_from([1, 100, 1000, 5000]),
    delay=st.sampled_from([0.0, 0.1, 1.0]),
)
def test_a_slow_application_gets_every_message_once_in_order(
    transport: str,
    compressed_story: tuple[list[bytes], list[Message], bool],
    plain_story: tuple[list[bytes], list[Message], bool],
    buffer_bytes: int,
    delay: float,
) -> None:
    chunks, expected, reset = compressed_story if transport in COMPRESSING else plain_story
    seen = trio.run(
        slow_reader_story,
        transport,
        chunks,
        reset,
        buffer_bytes,
        delay,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    assert seen.messages == expected
    assert lost(seen.error, 1000, by_server=True), repr(seen.error)


@on()
@pytest.mark.parametrize("leave_at", [n + 0.5 for n in range(9)])
async def test_leaving_the_block_while_a_message_is_assembled_is_prompt_and_clean(
    autojump_clock: object, transport: str, leave_at: float
) -> None:
    """The server sends a fragmented message a few bytes a second; the
    application leaves the block at any point of it: the block exits within
    close_timeout, nothing escapes, and the server gets a close frame."""
    message = fragments(TEXT, "κόσμε κόσμε".encode(), [3, 9])
    written: list[tuple[int, bytes]] = []

    async def respond(server_end: trio.abc.Stream, request: bytes) -> None:
        await server_end.send_all(switching(request_key(request)))
        for start in range(0, len(message), 3):
            await trio.sleep(1)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await server_end.send_all(message[start : start + 3])
        frames = ClientFrames(server_end)
        with trio.move_on_after(10), contextlib.suppress(trio.BrokenResourceError):
            while (got := await frames.next()) is not None:
                written.append(got)
                if got[0] == CLOSE:
                    await server_end.send_all(close(1000))

    async with raw_server(respond) as server:
        sock = ClientSocket(
            URL,
            open_stream=server.open_stream,
            transport=transport,  # type: ignore[arg-type]
            reconnect=None,
            ping_interval=None,
            ping_timeout=None,
            close_timeout=3,
        )
        with trio.CancelScope() as scope:
            scope.deadline = trio.current_time() + leave_at
            async with sock:
                await sock.wait_connected()
                await trio.sleep_forever()
        left = trio.current_time()
        assert scope.cancelled_caught
        assert left <= leave_at + 3 + 0.2
        await trio.sleep(20)
    assert [op for op, _ in written] == [CLOSE]


# -- the close frame that fails the connection, and a stalled uplink ------------------------


class Stalled(WrappedStream):
    """A client stream whose uplink stops after the handshake request (the
    server no longer reads, its TCP window is full) until ``release`` is set."""

    def __init__(self, inner: trio.abc.Stream, release: trio.Event) -> None:
        super().__init__(inner)
        self.release = release
        self.requested = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.requested:
            await self.release.wait()
        self.requested = True
        await self.inner.send_all(data)


@pytest.mark.parametrize(
    ("transport", "bad"),
    [
        pytest.param(transport, bad, id=f"{transport}-{name}")
        for transport in TRANSPORTS
        for name, bad in [("violation", frame(TEXT, b"\xff")), ("servers-close", close(1001))]
    ],
)
async def test_a_stalled_uplink_does_not_keep_an_ended_connection_for_ever(
    autojump_clock: object, transport: str, bad: bytes
) -> None:
    """The connection has ended (the client failed it, or the server closed)
    and the client's close frame cannot be written: the socket must still
    report the end and reconnect, within its timeouts (ping 20 + 20, close 3;
    trio-websocket gives a failing close frame ABORT_WRITE)."""
    release = trio.Event()
    with trio.move_on_after(1000):
        seen = await story(
            transport,
            [bad],
            stream=lambda inner: Stalled(inner, release),
            ping_interval=20,
            ping_timeout=20,
        )
        assert seen.error is not None
        return
    raise AssertionError("the socket still waits to write its close frame")


@on()
async def test_a_send_racing_a_violation_does_not_cut_the_close_frame(
    autojump_clock: object, transport: str
) -> None:
    """The server sends invalid UTF-8 at 1 s; the client's close frame waits
    for a slow uplink (2 s); meanwhile, the application sends."""
    release = trio.Event()

    async def race(sock: ClientSocket) -> None:
        await trio.sleep(2)
        await trio.testing.wait_all_tasks_blocked()
        with contextlib.suppress(SocketClosedError):  # trio-websocket: over already
            sock.send_nowait("racing")
        await trio.sleep(1)
        release.set()

    seen = await story(
        transport,
        [frame(TEXT, b"\xff")],
        stream=lambda inner: Stalled(inner, release),
        meanwhile=race,
        close_timeout=10,
    )
    assert isinstance(seen.error, ProtocolError), repr(seen.error)
    if transport == "trio-websocket":
        # it gives the failing close frame ABORT_WRITE (0.05 s), by design
        assert seen.error.code is None
        return
    assert seen.error.code == 1007
    assert seen.close_codes() == [1007]
