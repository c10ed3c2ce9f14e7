"""The clients under test. Each connects once to the URL it is given, echoes
every message back (text as text, binary as binary) and ends when its
connection ends, without reconnecting.

- ``websockets-engine``, ``wsproto-engine``, ``trio-websocket``: a
  ``ClientSocket`` on that transport (``reconnect=None``, ``max_message_size``
  32 MiB for section 9's 16 MiB messages, the default compression offer).
- ``websockets-client``: the reference, websockets' own asyncio client as
  websockets' compliance suite runs it (``connect(url, max_size=2**25)``,
  every other setting its default), in a subprocess that runs one case per
  line it reads (so that asyncio and Trio do not mix, and Python starts once).
- ``raw``: the suite's own minimal client, correct: a check of the harness.
  ``raw-no-utf8`` never validates UTF-8, ``raw-no-pong`` answers no ping,
  ``raw-no-close-reply`` does not answer the server's close, ``raw-drop``
  fails the connection by dropping TCP without a close frame, ``raw-rsv``
  accepts reserved bits: each must be flagged in the cases that target it.

``CLIENTS[name]`` is a ``ClientSpec``; ``async with spec.open() as run`` gives
the ``run(url)`` coroutine function (the reference's subprocess lives as long
as the block).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import trio

from trio_clientsocket import (
    ClientSocket,
    Closed,
    ConnectionFailed,
    MessageReceived,
    SocketClosedError,
)

from . import frames

__all__ = ["CLIENTS", "ClientSpec", "RawKnobs", "raw_client"]

Run = Callable[[str], Awaitable[None]]
TransportName = Literal["websockets", "wsproto", "trio-websocket"]
MAX_MESSAGE = 2**25
"""Large enough for section 9's 16 MiB messages (websockets' compliance client uses the same)."""
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WAIT_FOR_SERVER = 3.0
"""Seconds the raw client waits for the server's close or TCP drop before it drops TCP."""
REFERENCE_START = 30.0
"""Seconds the reference's subprocess may take to import websockets and say it is ready."""


@dataclass(frozen=True)
class ClientSpec:
    name: str
    description: str
    open: Callable[[], AbstractAsyncContextManager[Run]]
    """``async with spec.open() as run``: ``await run(url)`` plays one case."""
    kind: Literal["clientsocket", "reference", "raw"]


# -- ClientSocket ---------------------------------------------------------------------


async def clientsocket_client(url: str, transport: TransportName) -> None:
    """A ClientSocket on ``transport``: echo until the connection ends."""
    async with ClientSocket(
        url,
        transport=transport,
        reconnect=None,
        max_message_size=MAX_MESSAGE,
        proxy=None,  # loopback: never through a proxy of the environment
    ) as sock:
        async for event in sock.events():
            match event:
                case MessageReceived(message=message):
                    # SocketClosedError: the connection ended; its ConnectionFailed follows
                    with contextlib.suppress(SocketClosedError):
                        await sock.send(message)
                case ConnectionFailed(retry_in=None) | Closed():
                    return


def _clientsocket(transport: TransportName) -> Callable[[], AbstractAsyncContextManager[Run]]:
    @asynccontextmanager
    async def open_() -> AsyncIterator[Run]:
        async def run(url: str) -> None:
            await clientsocket_client(url, transport)

        yield run

    return open_


# -- the reference: websockets' asyncio client, in a subprocess ---------------------------

_REFERENCE = """
import asyncio, sys
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

async def run_case(url):
    async with connect(url, max_size=2**25) as ws:
        try:
            async for msg in ws:
                await ws.send(msg)
        except WebSocketException:
            pass

print("ready", flush=True)
for line in sys.stdin:
    try:
        asyncio.run(run_case(line.strip()))
    except Exception as exc:
        print("error", type(exc).__name__, str(exc).replace("\\n", " "), flush=True)
    else:
        print("done", flush=True)
"""


class _Reference:
    """websockets' client in one subprocess; ``run(url)`` plays one case. A
    case cancelled half-way kills the process; the next case starts another."""

    def __init__(self) -> None:
        self._proc: trio.Process | None = None
        self._pending = b""

    async def _start(self) -> trio.Process:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", _REFERENCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._proc = proc
        self._pending = b""
        with trio.fail_after(REFERENCE_START):
            line = await self._line()
        if line != "ready":
            raise RuntimeError(f"the websockets client did not start: {line!r}")
        return proc

    async def _line(self) -> str:
        assert self._proc is not None
        assert self._proc.stdout is not None
        while b"\n" not in self._pending:
            chunk = await self._proc.stdout.receive_some(4096)
            if not chunk:
                raise RuntimeError(f"the websockets client exited ({self._proc.returncode})")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode(errors="replace").strip()

    async def run(self, url: str) -> None:
        proc = self._proc if self._proc is not None else await self._start()
        assert proc.stdin is not None
        done = False
        try:
            await proc.stdin.send_all(url.encode() + b"\n")
            line = await self._line()
            done = True
        finally:
            if not done:
                await self.aclose()
        if line != "done":
            raise RuntimeError(f"websockets: {line.removeprefix('error ')}")

    async def aclose(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with trio.CancelScope(shield=True):
            if proc.stdin is not None:
                await proc.stdin.aclose()
            with trio.move_on_after(5):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if proc.stdout is not None:
                await proc.stdout.aclose()


@asynccontextmanager
async def _open_reference() -> AsyncIterator[Run]:
    reference = _Reference()
    try:
        yield reference.run
    finally:
        await reference.aclose()


# -- the raw client -------------------------------------------------------------------


@dataclass(frozen=True)
class RawKnobs:
    """What the raw client does right (all True: a correct client)."""

    validate_utf8: bool = True
    """Fail the connection (1007) on invalid UTF-8 in text and close reasons."""
    answer_pings: bool = True
    answer_close: bool = True
    """Answer the server's close frame with one of its own."""
    close_frame_on_failure: bool = True
    """Fail the connection with a close frame (else: drop TCP at once)."""
    check_rsv: bool = True
    """Fail the connection on RSV bits (else: take the frame as if they were 0)."""


async def raw_client(url: str, knobs: RawKnobs = RawKnobs()) -> None:
    """The raw client: one connection, echo, RFC 6455 as ``knobs`` say."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await stream.send_all(request.encode())
        head, rest = await _read_response(stream)
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines)
        }
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if not status.startswith("HTTP/1.1 101 ") or headers.get("sec-websocket-accept") != accept:
            raise RuntimeError(f"handshake refused: {status!r}")
        reader = frames.FrameReader(
            from_client=False, check_rsv=knobs.check_rsv, check_utf8=knobs.validate_utf8
        )
        await _raw_session(stream, reader, knobs, rest)


async def _read_response(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    data = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise RuntimeError("the server closed before answering the handshake")
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


async def _send(stream: trio.SocketStream, opcode: int, payload: bytes) -> None:
    # a broken stream: the server is gone, and the reader sees it
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(frames.encode_frame(opcode, payload, mask=os.urandom(4)))


async def _raw_session(
    stream: trio.SocketStream, reader: frames.FrameReader, knobs: RawKnobs, rest: bytes
) -> None:
    """Read, echo, answer; return when the connection is over (TCP dropped
    by either side)."""
    data = rest
    deadline: float | None = None  # once closing: when to give up on the server
    while True:
        for event in reader.feed(data) if data else []:
            if isinstance(event, frames.Violation):
                if not knobs.close_frame_on_failure:
                    return  # drop TCP, no close frame
                if deadline is None:
                    await _send(stream, frames.OP_CLOSE, frames.close_payload(event.code))
                    deadline = trio.current_time() + WAIT_FOR_SERVER
            elif deadline is not None:
                if isinstance(event, frames.Close):
                    return  # the server answered our close: drop TCP
            elif isinstance(event, frames.Message):
                await _send(
                    stream, frames.OP_BINARY if event.binary else frames.OP_TEXT, event.payload
                )
            elif isinstance(event, frames.Ping):
                if knobs.answer_pings:
                    await _send(stream, frames.OP_PONG, event.payload)
            elif isinstance(event, frames.Close):
                if event.error is not None:
                    if not knobs.close_frame_on_failure:
                        return
                    await _send(stream, frames.OP_CLOSE, frames.close_payload(event.error.code))
                elif knobs.answer_close:
                    await _send(stream, frames.OP_CLOSE, frames.close_payload(event.code))
                deadline = trio.current_time() + WAIT_FOR_SERVER
        with trio.move_on_at(deadline if deadline is not None else float("inf")):
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            continue
        return  # the server kept the connection past our wait: drop it


# -- the registry -----------------------------------------------------------------------


def _raw(knobs: RawKnobs) -> Callable[[], AbstractAsyncContextManager[Run]]:
    @asynccontextmanager
    async def open_() -> AsyncIterator[Run]:
        async def run(url: str) -> None:
            await raw_client(url, knobs)

        yield run

    return open_


CLIENTS: dict[str, ClientSpec] = {
    spec.name: spec
    for spec in [
        ClientSpec(
            "websockets-engine",
            'ClientSocket, transport="websockets"',
            _clientsocket("websockets"),
            "clientsocket",
        ),
        ClientSpec(
            "wsproto-engine",
            'ClientSocket, transport="wsproto"',
            _clientsocket("wsproto"),
            "clientsocket",
        ),
        ClientSpec(
            "trio-websocket",
            'ClientSocket, transport="trio-websocket"',
            _clientsocket("trio-websocket"),
            "clientsocket",
        ),
        ClientSpec(
            "websockets-client",
            "websockets' asyncio client (the reference)",
            _open_reference,
            "reference",
        ),
        ClientSpec("raw", "the suite's raw client, correct", _raw(RawKnobs()), "raw"),
        ClientSpec(
            "raw-no-utf8",
            "raw client that never validates UTF-8",
            _raw(RawKnobs(validate_utf8=False)),
            "raw",
        ),
        ClientSpec(
            "raw-no-pong",
            "raw client that answers no ping",
            _raw(RawKnobs(answer_pings=False)),
            "raw",
        ),
        ClientSpec(
            "raw-no-close-reply",
            "raw client that does not answer the server's close",
            _raw(RawKnobs(answer_close=False)),
            "raw",
        ),
        ClientSpec(
            "raw-drop",
            "raw client that fails the connection without a close frame",
            _raw(RawKnobs(close_frame_on_failure=False)),
            "raw",
        ),
        ClientSpec(
            "raw-rsv",
            "raw client that accepts reserved bits",
            _raw(RawKnobs(check_rsv=False)),
            "raw",
        ),
    ]
}
