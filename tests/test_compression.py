"""permessage-deflate: negotiated when the server offers it, messages intact,
the bytes on the wire compressed, and a deflate bomb refused with 1009 before
it is inflated."""

from __future__ import annotations

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
