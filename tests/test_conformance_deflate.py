"""Unit tests of the conformance suite's server-side permessage-deflate
(tests/conformance/deflate.py) against two independent client-side
implementations (websockets' and wsproto's), and of its test data loader
(tests/conformance/testdata.py)."""

from __future__ import annotations

import hashlib
import random
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate
from wsproto.frame_protocol import FrameProtocol, RsvBits
from wsproto.frame_protocol import Opcode as WsprotoOpcode

from tests.conformance import testdata
from tests.conformance.deflate import Deflate, DeflateError, DeflateOffer, parse_offers

# What the server asks of the client in sections 13.1-13.6 (13.7 picks among
# them): (request_no_context_takeover, request_max_window_bits).
SERVER_REQUESTS = [(False, 0), (True, 0), (False, 9), (False, 15), (True, 9), (True, 15)]

# What clients offer: (server_no_context_takeover, server_max_window_bits,
# client_no_context_takeover, client_max_window_bits) as websockets' factory
# takes them. The first six are the client offers of sections 13.1-13.6; then
# websockets' default, ClientSocket's default and a client window hint.
WEBSOCKETS_OFFERS: list[tuple[bool, int | None, bool, int | bool]] = [
    (False, None, False, True),
    (True, None, False, True),
    (False, 9, False, True),
    (False, 15, False, True),
    (True, 9, False, True),
    (True, 15, False, True),
    (False, None, False, True),
    (False, 12, True, True),
    (False, None, False, 10),
]


def _messages() -> list[bytes]:
    """Messages whose repeats lie 3,000 bytes back (beyond a 2**9 window,
    within 2**15), some repeated whole (context takeover helps them)."""
    rng = random.Random(1)
    block = rng.randbytes(3000)
    text = b'{"id": 17, "name": "caf\xc3\xa9", "tags": ["a", "b"]}' * 40
    return [block * 4, text, b"", block * 4, text, rng.randbytes(100), block * 2]


def _chunks(data: bytes, size: int | None) -> list[bytes]:
    """``data`` cut in pieces of ``size`` (one piece if None), at least one."""
    if size is None or not data:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


def _negotiate_websockets(
    offer: tuple[bool, int | None, bool, int | bool], request: tuple[bool, int]
) -> tuple[Deflate, PerMessageDeflate]:
    """The server's Deflate and websockets' client extension after the
    handshake: offer header -> parse_offers -> Deflate -> answer header ->
    websockets' client."""
    snct, sbits, cnct, cbits = offer
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=snct,
        server_max_window_bits=sbits,
        client_no_context_takeover=cnct,
        client_max_window_bits=cbits,
    )
    header = build_extension([(factory.name, list(factory.get_request_params()))])
    [parsed] = parse_offers([header])
    deflate = Deflate(
        parsed, request_no_context_takeover=request[0], request_max_window_bits=request[1]
    )
    [(name, params)] = parse_extension(deflate.response_header())
    assert name == "permessage-deflate"
    return deflate, factory.process_response_params(params, [])


@pytest.mark.parametrize("fragment_size", [None, 256])
@pytest.mark.parametrize("request_", SERVER_REQUESTS)
@pytest.mark.parametrize("offer", WEBSOCKETS_OFFERS)
def test_round_trip_with_websockets_client(
    offer: tuple[bool, int | None, bool, int | bool],
    request_: tuple[bool, int],
    fragment_size: int | None,
) -> None:
    deflate, client = _negotiate_websockets(offer, request_)
    # Both sides agree on every parameter.
    assert client.remote_no_context_takeover == deflate.server_no_context_takeover
    assert client.remote_max_window_bits == deflate.server_max_window_bits
    assert client.local_no_context_takeover == (deflate.client_no_context_takeover or offer[2])
    assert client.local_max_window_bits <= deflate.client_max_window_bits
    for message in _messages():
        # server -> client, the compressed message cut into frames
        pieces = _chunks(deflate.compress(message), fragment_size)
        received = b""
        for i, piece in enumerate(pieces):
            frame = Frame(
                Opcode.BINARY if i == 0 else Opcode.CONT, piece, fin=i == len(pieces) - 1,
                rsv1=i == 0,
            )  # fmt: skip
            received += client.decode(frame).data
        assert received == message
        # client -> server, the message cut into frames before compression
        parts = _chunks(message, fragment_size)
        sent = b""
        for i, part in enumerate(parts):
            opcode = Opcode.TEXT if i == 0 else Opcode.CONT
            frame = client.encode(Frame(opcode, part, fin=i == len(parts) - 1))
            assert frame.rsv1 == (i == 0)
            sent += frame.data
        assert deflate.decompress(sent) == message


# wsproto's client offers both window sizes always (15 unless set).
WSPROTO_OFFERS = [(False, 15, False, 15), (True, 9, False, 15), (False, 12, True, 12)]


@pytest.mark.parametrize("request_", SERVER_REQUESTS)
@pytest.mark.parametrize("offer", WSPROTO_OFFERS)
def test_round_trip_with_wsproto_client(
    offer: tuple[bool, int, bool, int], request_: tuple[bool, int]
) -> None:
    snct, sbits, cnct, cbits = offer
    client = WsprotoDeflate(
        client_no_context_takeover=cnct,
        client_max_window_bits=cbits,
        server_no_context_takeover=snct,
        server_max_window_bits=sbits,
    )
    [parsed] = parse_offers([f"{client.name}; {client.offer()}"])
    deflate = Deflate(
        parsed, request_no_context_takeover=request_[0], request_max_window_bits=request_[1]
    )
    client.finalize(deflate.response_header())
    assert client.server_max_window_bits == deflate.server_max_window_bits
    assert client.client_max_window_bits <= deflate.client_max_window_bits
    proto = FrameProtocol(client=True, extensions=[client])
    no_rsv = RsvBits(False, False, False)
    for message in _messages():
        compressed = deflate.compress(message)
        assert client.frame_inbound_header(
            proto, WsprotoOpcode.BINARY, RsvBits(True, False, False), len(compressed)
        ) == RsvBits(True, False, False)
        head = client.frame_inbound_payload_data(proto, compressed)
        tail = client.frame_inbound_complete(proto, True)
        assert isinstance(head, bytes)
        assert isinstance(tail, bytes)
        assert head + tail == message
        rsv, sent = client.frame_outbound(proto, WsprotoOpcode.TEXT, no_rsv, message, True)
        assert rsv.rsv1
        assert deflate.decompress(sent) == message


def _offer(header: str) -> DeflateOffer:
    [offer] = parse_offers([header])
    return offer


def test_parse_offers_reads_each_parameter() -> None:
    assert _offer("permessage-deflate") == DeflateOffer(
        accept_no_context_takeover=True,
        accept_max_window_bits=False,
        request_no_context_takeover=False,
        request_max_window_bits=0,
        client_max_window_bits=0,
    )
    assert _offer(
        'Permessage-Deflate; server_no_context_takeover; server_max_window_bits="12";'
        " client_no_context_takeover; client_max_window_bits=10"
    ) == DeflateOffer(
        accept_no_context_takeover=True,
        accept_max_window_bits=True,
        request_no_context_takeover=True,
        request_max_window_bits=12,
        client_max_window_bits=10,
    )


def test_client_no_context_takeover_binds_the_client_only() -> None:
    offer = _offer("permessage-deflate; client_no_context_takeover")
    assert not offer.request_no_context_takeover
    assert Deflate(offer).response_header() == "permessage-deflate"


def test_parse_offers_keeps_order_across_values_and_skips_other_extensions() -> None:
    offers = parse_offers(
        [
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_no_context_takeover,permessage-deflate",
        ]
    )
    assert [(o.request_max_window_bits, o.request_no_context_takeover) for o in offers] == [
        (9, False),
        (0, True),
        (0, False),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "permessage-deflate; x_unknown",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=1e1",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=",
    ],
)
def test_invalid_offers_are_declined_and_the_next_still_counts(bad: str) -> None:
    assert parse_offers([bad]) == []
    assert parse_offers([f"{bad}, permessage-deflate; server_max_window_bits=11"]) == [
        DeflateOffer(request_max_window_bits=11)
    ]


def test_a_client_window_hint_of_8_is_valid_and_caps_the_request() -> None:
    deflate = Deflate(
        _offer("permessage-deflate; client_max_window_bits=8"), request_max_window_bits=9
    )
    assert deflate.response_header() == "permessage-deflate; client_max_window_bits=8"
    assert deflate.client_max_window_bits == 8
    message = b"abc" * 1000
    compressor = zlib.compressobj(6, zlib.DEFLATED, -9)
    compressed = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert deflate.decompress(compressed[:-4]) == message
    # A hint above the request leaves the request alone.
    hinted = Deflate(_offer("permessage-deflate; client_max_window_bits=12"),
                     request_max_window_bits=10)  # fmt: skip
    assert hinted.response_header() == "permessage-deflate; client_max_window_bits=10"


@pytest.mark.parametrize(
    ("header", "request_", "answer"),
    [
        ("permessage-deflate", (False, 0), "permessage-deflate"),
        ("permessage-deflate", (True, 0), "permessage-deflate; client_no_context_takeover"),
        (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9;"
            " client_max_window_bits",
            (True, 15),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9;"
            " client_no_context_takeover; client_max_window_bits=15",
        ),
    ],
)
def test_response_header_repeats_the_requests_and_adds_the_servers(
    header: str, request_: tuple[bool, int], answer: str
) -> None:
    deflate = Deflate(
        _offer(header), request_no_context_takeover=request_[0], request_max_window_bits=request_[1]
    )
    assert deflate.response_header() == answer


def test_asking_for_a_window_the_offer_does_not_accept_is_an_error() -> None:
    with pytest.raises(ValueError, match="request_max_window_bits: the offer does not"):
        Deflate(_offer("permessage-deflate"), request_max_window_bits=9)
    with pytest.raises(ValueError, match="request_max_window_bits must be"):
        Deflate(_offer("permessage-deflate; client_max_window_bits"), request_max_window_bits=8)
    with pytest.raises(ValueError, match="request_no_context_takeover"):
        Deflate(DeflateOffer(accept_no_context_takeover=False), request_no_context_takeover=True)


def test_server_context_takeover_is_kept_unless_the_client_asked() -> None:
    message = random.Random(2).randbytes(2000)
    keeping = Deflate(_offer("permessage-deflate"))
    first = keeping.compress(message)
    assert len(keeping.compress(message)) < len(first) // 10  # the window holds it
    resetting = Deflate(_offer("permessage-deflate; server_no_context_takeover"))
    assert resetting.compress(message) == resetting.compress(message) == first


def test_empty_message_compresses_to_one_byte() -> None:
    deflate = Deflate(_offer("permessage-deflate"))
    assert deflate.compress(b"") == b"\x00"
    assert deflate.decompress(b"\x00") == b""


def _client(deflate: Deflate, *, no_context_takeover: bool, window_bits: int) -> PerMessageDeflate:
    """websockets' client side, configured by hand (possibly against the agreement)."""
    return PerMessageDeflate(
        deflate.server_no_context_takeover, no_context_takeover,
        deflate.server_max_window_bits, window_bits,
    )  # fmt: skip


def _client_sends(client: PerMessageDeflate, message: bytes) -> bytes:
    return bytes(client.encode(Frame(Opcode.BINARY, message)).data)


def test_a_client_that_keeps_context_against_the_agreement_is_detected() -> None:
    deflate = Deflate(_offer("permessage-deflate"), request_no_context_takeover=True)
    client = _client(deflate, no_context_takeover=False, window_bits=15)
    message = random.Random(3).randbytes(500)
    assert deflate.decompress(_client_sends(client, message)) == message
    with pytest.raises(DeflateError, match="cannot decompress"):
        deflate.decompress(_client_sends(client, message))  # refers to the first message


def test_a_client_window_larger_than_agreed_is_detected_across_messages() -> None:
    offer = _offer("permessage-deflate; client_max_window_bits")
    block = random.Random(4).randbytes(3000)
    deflate = Deflate(offer, request_max_window_bits=9)
    too_wide = _client(deflate, no_context_takeover=False, window_bits=15)
    assert deflate.decompress(_client_sends(too_wide, block)) == block
    with pytest.raises(DeflateError, match="cannot decompress"):
        deflate.decompress(_client_sends(too_wide, block))  # 3,000 bytes back
    fresh = Deflate(offer, request_max_window_bits=9)
    narrow = _client(fresh, no_context_takeover=False, window_bits=9)
    for _ in range(2):
        assert fresh.decompress(_client_sends(narrow, block)) == block


def _inflate_bytewise(decompress: Callable[[bytes], bytes], compressed: bytes) -> bytes:
    """Inflate one byte of input at a time: zlib then checks every distance
    against the window it holds (in one call it also accepts the call's output)."""
    return b"".join(decompress(compressed[i : i + 1]) for i in range(len(compressed)))


@pytest.mark.parametrize("bits", [9, 12])
def test_the_server_compresses_within_the_window_the_client_asked(bits: int) -> None:
    message = random.Random(5).randbytes(2**bits + 1000) * 3  # repeats beyond the window
    deflate = Deflate(_offer(f"permessage-deflate; server_max_window_bits={bits}"))
    assert deflate.server_max_window_bits == bits
    client = zlib.decompressobj(-bits)
    for _ in range(2):  # the second message may refer to the first, within the window
        assert (
            _inflate_bytewise(client.decompress, deflate.compress(message) + b"\x00\x00\xff\xff")
            == message
        )
    unbounded = Deflate(_offer("permessage-deflate"))  # the check is sharp: 15 fails it
    with pytest.raises(zlib.error, match="too far back"):
        _inflate_bytewise(zlib.decompressobj(-bits).decompress, unbounded.compress(message))


def test_corrupt_data_is_a_deflate_error() -> None:
    deflate = Deflate(_offer("permessage-deflate"))
    with pytest.raises(DeflateError):
        deflate.decompress(b"\xff\xff\xff\xff")


def test_a_message_ending_with_a_final_block_is_accepted() -> None:
    deflate = Deflate(_offer("permessage-deflate"))
    for message in (b"first message", b"second message"):
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        assert deflate.decompress(compressor.compress(message) + compressor.flush()) == message
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    with pytest.raises(DeflateError, match="after the final"):
        deflate.decompress(compressor.compress(b"x") + compressor.flush() + b"junk")


# The test data loader.


def test_testdata_from_the_override_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"not the real file"
    (tmp_path / "data1.json").write_bytes(data)
    monkeypatch.setattr(
        testdata, "FILES", {**testdata.FILES, "data1.json": hashlib.sha256(data).hexdigest()}
    )
    monkeypatch.setenv(testdata.ENV, str(tmp_path))
    assert testdata.autobahn_testdata("data1.json") == data


def test_testdata_with_a_wrong_hash_is_a_skip_naming_the_fetch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data1.json").write_bytes(b"tampered")
    monkeypatch.setenv(testdata.ENV, str(tmp_path))
    with pytest.raises(testdata.TestdataUnavailable) as raised:
        testdata.autobahn_testdata("data1.json")
    reason = str(raised.value)
    assert "SHA-256" in reason
    assert "pip download --no-deps --no-binary :all:" in reason
    assert "autobahntestsuite==25.10.1" in reason
    assert "\n" not in reason
    with pytest.raises(testdata.TestdataUnavailable, match="cannot read"):
        testdata.autobahn_testdata("lena512.bmp")


def test_testdata_of_an_unknown_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="name must be one of"):
        testdata.autobahn_testdata("../secret")


# Sections 12/13: the server's acceptances and the echo grading.

s12_13 = pytest.importorskip("tests.conformance.sections.s12_13")  # needs the test data


@pytest.mark.parametrize(
    ("accept", "offers", "answer"),
    [
        ("accept1", ["permessage-deflate"], "permessage-deflate"),
        ("accept2", ["permessage-deflate"], "permessage-deflate; client_no_context_takeover"),
        ("accept3", ["permessage-deflate"], None),  # the offer allows no window request
        (
            "accept3",
            ["permessage-deflate", "permessage-deflate; client_max_window_bits"],
            "permessage-deflate; client_max_window_bits=9",
        ),
        (
            "accept4",
            ["permessage-deflate; server_max_window_bits=10; client_max_window_bits"],
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=15",
        ),
        (
            "accept6",
            ["permessage-deflate; server_no_context_takeover; client_max_window_bits"],
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " client_max_window_bits=15",
        ),
        (
            "accept7",
            ["permessage-deflate; client_max_window_bits"],
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=9",
        ),
        ("accept7", ["permessage-deflate"], "permessage-deflate; client_no_context_takeover"),
        ("accept5", [], None),
    ],
)
def test_section_13_acceptances(accept: str, offers: list[str], answer: str | None) -> None:
    deflate = getattr(s12_13, accept)(parse_offers(offers))
    assert (deflate.response_header() if deflate else None) == answer


class _Peer:
    """The part of the Peer the compression cases use; the client echoes
    through ``echo``."""

    def __init__(self, deflate: Deflate | None) -> None:
        self.deflate = deflate
        self.sent: list[tuple[bytes, bool, int | None]] = []
        self.closes: list[int | None] = []
        self.timers: list[float] = []

    def send_message(
        self, payload: bytes, binary: bool, *, fragment_size: int | None = None
    ) -> None:
        self.sent.append((payload, binary, fragment_size))

    def send_close(self, code: int | None = None) -> None:
        self.closes.append(code)

    def close_after(self, delay: float) -> None:
        self.timers.append(delay)


def _compression_case(size: tuple[int, int, int, int]) -> tuple[Any, _Peer, Any]:
    case = s12_13.Compression("12.1.1", "", data_set="json_data1", size=size, accept=s12_13.accept1)
    peer = _Peer(Deflate(DeflateOffer()))
    return case, peer, cast(Any, peer)


def test_compression_case_sends_slices_round_the_data_and_passes_on_exact_echoes() -> None:
    source = testdata.autobahn_testdata("data1.json").decode()
    case, peer, p = _compression_case((100_000, 3, 60, 256))
    case.on_open(p)
    assert peer.timers == [60]
    for _ in range(3):
        payload, binary, _ = peer.sent[-1]
        case.on_message(p, payload, binary)
    assert (case.behavior, peer.closes) == ("OK", [1000])
    sent = [payload.decode() for payload, _, _ in peer.sent]
    assert sent == [source[:100_000], source[100_000:] + source[:5944], source[5944:105_944]]
    assert {(binary, size) for _, binary, size in peer.sent} == {(False, 256)}


@pytest.mark.parametrize(
    ("echo", "result"),
    [
        (lambda m: (m, True), "type differs"),
        (lambda m: (m[:-1], False), "length differs"),
        (lambda m: (m[:-1] + b"!", False), "contents differs"),
    ],
)
def test_compression_case_fails_at_the_first_wrong_echo(
    echo: Callable[[bytes], tuple[bytes, bool]], result: str
) -> None:
    case, peer, p = _compression_case((16, 1000, 60, 0))
    case.on_open(p)
    case.on_message(p, peer.sent[-1][0], False)
    case.on_message(p, *echo(peer.sent[-1][0]))
    assert (case.behavior, peer.closes, len(peer.sent)) == ("FAILED", [1000], 2)
    assert result in case.result
    case.on_message(p, peer.sent[-1][0], False)  # a late echo changes nothing
    assert (case.behavior, len(peer.sent)) == ("FAILED", 2)


def test_compression_case_without_deflate_is_unimplemented() -> None:
    case, peer, p = _compression_case((16, 1000, 60, 0))
    peer.deflate = None
    case.on_open(p)
    assert (case.behavior, peer.closes, peer.sent) == ("UNIMPLEMENTED", [1000], [])
