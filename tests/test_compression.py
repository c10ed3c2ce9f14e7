"""permessage-deflate: negotiated when the server offers it, messages intact,
the bytes on the wire compressed, and a deflate bomb refused with 1009 before
it is inflated."""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest
import trio

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    ConnectionFailed,
    ConnectionLost,
    Deflate,
    MessageReceived,
    ProtocolError,
)
from trio_clientsocket.testing import MockServer, open_mock_server

from .conftest import client_socket

pytestmark = pytest.mark.usefixtures("each_transport")

URL = "ws://app.test/app/gxwebsocket?client-1"


def socket_to(server: MockServer, **options: object) -> ClientSocket:
    options.setdefault("reconnect", Backoff(initial=1, factor=1, jitter=0))
    return client_socket(URL, open_stream=server.open_stream, **options)


async def next_message(sock: ClientSocket) -> object:
    with trio.fail_after(60):
        async for event in sock.events():
            if isinstance(event, MessageReceived):
                return event.message
    raise AssertionError("no message")


async def test_compression_is_negotiated_and_compresses(
    each_transport: str, autojump_clock: object
) -> None:
    text = '{"Id": "1", "Object": "", "Message": "' + "hello " * 20_000 + '"}'
    async with open_mock_server(echo=True) as server:
        server.compression = True
        async with socket_to(server, ping_interval=None) as sock:
            await sock.wait_connected()
            await sock.send(text)
            await sock.send(b"\x00" * 50_000)
            assert await next_message(sock) == text
            assert await next_message(sock) == b"\x00" * 50_000
            stats = sock.statistics()
    offer = server.connections[0].headers.get("sec-websocket-extensions")
    if each_transport == "trio-websocket":  # trio-websocket offers no extension
        assert not stats.compressed
        assert offer is None
        return
    assert stats.compressed
    assert server.received == [text, b"\x00" * 50_000]
    # both ways compressed: far fewer bytes on the wire than the messages hold
    assert stats.bytes_sent < 20_000
    assert stats.bytes_received < 20_000


async def test_no_compression_when_turned_off(autojump_clock: object) -> None:
    async with open_mock_server(echo=True) as server:
        server.compression = True
        async with socket_to(server, compression=None, ping_interval=None) as sock:
            await sock.wait_connected()
            await sock.send("x" * 10_000)
            assert await next_message(sock) == "x" * 10_000
            assert not sock.statistics().compressed
            assert sock.statistics().bytes_received > 10_000


async def test_no_compression_when_the_server_declines(autojump_clock: object) -> None:
    async with open_mock_server(echo=True) as server:  # compression off on the server
        async with socket_to(server, ping_interval=None) as sock:
            await sock.wait_connected()
            await sock.send("y" * 1000)
            assert await next_message(sock) == "y" * 1000
            assert not sock.statistics().compressed


@pytest.mark.parametrize(
    "deflate",
    [
        Deflate(server_max_window_bits=None, client_no_context_takeover=False),
        Deflate(server_no_context_takeover=True, client_max_window_bits=9, mem_level=1),
    ],
    ids=["full-window-with-context", "no-context-small-window"],
)
async def test_other_deflate_settings_round_trip(
    deflate: Deflate, each_transport: str, autojump_clock: object
) -> None:
    async with open_mock_server(echo=True) as server:
        server.compression = True
        async with socket_to(server, compression=deflate, ping_interval=None) as sock:
            await sock.wait_connected()
            for i in range(5):
                await sock.send(f"message {i} " * 500)
            got = [await next_message(sock) for _ in range(5)]
            compressed = sock.statistics().compressed
    assert got == [f"message {i} " * 500 for i in range(5)]
    assert compressed == (each_transport != "trio-websocket")


def bomb_frame(size: int, window_bits: int) -> bytes:
    """A server's compressed binary frame (RSV1 set) that inflates to ``size``
    zero bytes, built as a server with that window would."""
    compressor = zlib.compressobj(wbits=-window_bits)
    payload = compressor.compress(b"\x00" * size) + compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = payload[:-4]  # RFC 7692: without the final 00 00 ff ff
    return bytes([0xC2, 127]) + len(payload).to_bytes(8, "big") + payload


async def test_a_deflate_bomb_is_refused_with_1009_before_it_is_inflated(
    each_transport: str, autojump_clock: object
) -> None:
    limit = 2**20
    frame = bomb_frame(256 * limit, window_bits=12)  # 256 MiB in about 256 KiB
    async with open_mock_server() as server:
        server.compression = True
        async with socket_to(server, max_message_size=limit, ping_interval=None) as sock:
            connection = await server.wait_connections(1)
            await connection.send(b"small")
            assert await next_message(sock) == b"small"
            failed: ConnectionFailed | None = None
            tracemalloc.start()
            try:
                await connection.send_raw(frame)
                with trio.fail_after(60):
                    async for event in sock.events():
                        if isinstance(event, ConnectionFailed):
                            failed = event
                            break
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert failed is not None
    if each_transport == "trio-websocket":  # no compression: a frame with RSV1 is invalid
        assert isinstance(failed.error, ProtocolError)
        return
    assert isinstance(failed.error, ConnectionLost)
    assert failed.error.code == 1009
    assert failed.retry_in is not None
    assert server.connections[0].close_code == 1009
    # refused as it inflated past the limit: never anywhere near 256 MiB
    assert peak < 8 * limit


async def test_an_incompressible_message_of_the_limit_is_received_and_one_more_byte_refused(
    each_transport: str, autojump_clock: object
) -> None:
    # Deflate makes incompressible data a little larger on the wire: the limit
    # is on the message, not on its compressed frame.
    limit = 100_000
    exact = random.Random(7).randbytes(limit)
    over = exact + b"!"
    async with open_mock_server() as server:
        server.compression = True
        async with socket_to(server, max_message_size=limit, ping_interval=None) as sock:
            connection = await server.wait_connections(1)
            await connection.send(exact)
            assert await next_message(sock) == exact
            await connection.send(over)
            with trio.fail_after(60):
                async for event in sock.events():
                    assert not isinstance(event, MessageReceived)
                    if isinstance(event, ConnectionFailed):
                        break
            compressed = sock.statistics().compressed
    assert compressed == (each_transport != "trio-websocket")
    assert isinstance(event, ConnectionFailed)
    assert isinstance(event.error, ConnectionLost)
    assert event.error.code == 1009
    assert server.connections[0].close_code == 1009


def compressed_frames(message: str, fragments: int) -> bytes:
    """A server's compressed text message in ``fragments`` frames (RSV1 on the
    first), from a fresh compressor with the client's default window."""
    compressor = zlib.compressobj(wbits=-12)
    payload = compressor.compress(message.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = payload[:-4]
    step = -(-len(payload) // fragments)
    out = b""
    for i in range(fragments):
        part = payload[i * step : (i + 1) * step]
        first = 0x41 if i == 0 else 0x00  # RSV1 + text, then continuations
        fin = 0x80 if i == fragments - 1 else 0
        out += bytes([fin | first]) + length(len(part)) + part
    return out


def length(n: int) -> bytes:
    """A server frame's payload length, in the fewest bytes (as RFC 6455 asks)."""
    if n < 126:
        return bytes([n])
    if n < 2**16:
        return bytes([126]) + n.to_bytes(2, "big")
    return bytes([127]) + n.to_bytes(8, "big")


@pytest.mark.parametrize("fragments", [1, 3])
async def test_a_compressed_text_message_is_held_to_the_limit_once_inflated(
    fragments: int, each_transport: str, autojump_clock: object
) -> None:
    if each_transport == "trio-websocket":
        pytest.skip("trio-websocket offers no compression: a frame with RSV1 is invalid")
    limit = 10_000
    async with open_mock_server() as server:
        server.compression = True
        async with socket_to(server, max_message_size=limit, ping_interval=None) as sock:
            connection = await server.wait_connections(1)
            await connection.send_raw(compressed_frames("é" * (limit // 2), fragments))
            assert await next_message(sock) == "é" * (limit // 2)  # limit bytes of UTF-8
            await connection.send_raw(compressed_frames("a" * (limit + 1), fragments))
            with trio.fail_after(60):
                async for event in sock.events():
                    assert not isinstance(event, MessageReceived)
                    if isinstance(event, ConnectionFailed):
                        break
    assert isinstance(event, ConnectionFailed)
    assert isinstance(event.error, ConnectionLost)
    assert event.error.code == 1009
