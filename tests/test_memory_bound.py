"""The documented memory bound, attacked with compression (issue 19, item 5):
a server sends highly compressible 1 MiB messages (deflate reaches ~1000:1,
so one 64 KiB read holds dozens of them). A client that stops reading holds
at most ``buffer_bytes + 2 x max_message_size`` of received data, and so does
one that reads; measured as the peak RSS growth of a client process of its
own (tests/memory_probe.py), against a server in this process."""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests._hostile_helpers import read_request, request_key, switching, tcp_server

MIB = 2**20
BUFFER_BYTES = 8 * MIB  # the defaults
MAX_MESSAGE = MIB
BOUND_KIB = (BUFFER_BYTES + 2 * MAX_MESSAGE) // 1024
COUNT = 100  # 100 MiB once inflated: twelve times the buffer
PROBE = Path(__file__).with_name("memory_probe.py")


def compressed_message(n: int, text: bool) -> bytes:
    """One server frame: 1 MiB of one repeated character, compressed on its own."""
    compressor = zlib.compressobj(wbits=-12)
    payload = bytes([0x41 + n % 26]) * MAX_MESSAGE
    body = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    body = body[:-4]  # RFC 7692: the empty block's tail is left out
    first = 0xC1 if text else 0xC2  # FIN, RSV1, text or binary
    assert len(body) < 65536
    return bytes([first, 126]) + len(body).to_bytes(2, "big") + body


@asynccontextmanager
async def compressing_server(text: bool) -> AsyncIterator[int]:
    frames = b"".join(compressed_message(n, text) for n in range(COUNT))
    assert len(frames) < 200_000  # the whole flood is a few reads

    async def respond(stream: trio.SocketStream) -> None:
        request = await read_request(stream)
        assert b"permessage-deflate" in request
        answer = switching(
            request_key(request),
            b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover;"
            b" server_max_window_bits=12; client_no_context_takeover",
        )
        await stream.send_all(answer + frames)
        if await stream.receive_some():  # the client's close frame: answer it
            await stream.send_all(b"\x88\x02\x03\xe8")

    async with tcp_server(respond) as port:
        yield port


async def probe(port: int, *args: str) -> dict[str, int]:
    command = [sys.executable, str(PROBE), str(port), *args]
    done = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, int] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("transport", ["websockets", "wsproto"])
@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
async def test_a_client_that_stops_reading_holds_the_documented_bound(
    transport: str, text: bool
) -> None:
    async with compressing_server(text) as port:
        with trio.fail_after(60):
            result = await probe(port, "--mode", "never", "--transport", transport)
    assert result["compressed"]
    assert 0 < result["buffered"] < COUNT  # it stopped reading: backpressure
    assert result["growth_kib"] <= BOUND_KIB, result


@pytest.mark.parametrize("transport", ["websockets", "wsproto"])
@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
async def test_a_client_that_reads_holds_the_documented_bound(
    transport: str, text: bool
) -> None:
    async with compressing_server(text) as port:
        with trio.fail_after(60):
            result = await probe(
                port, "--mode", "reads", "--count", str(COUNT), "--transport", transport
            )
    assert result["received"] == COUNT
    assert result["growth_kib"] <= BOUND_KIB, result
