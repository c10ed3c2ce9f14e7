"""Two minimal WebSocket clients for Trio: the floor ClientSocket is measured against.

Each does only what a correct client must: the opening handshake (checking
``Sec-WebSocket-Accept``), masked client frames (a fresh random mask per frame,
applied by websockets' C ``apply_mask``), unfragmented text and binary messages
from the server (any length), pings answered, and the close handshake. No
extensions, no fragmented messages, no keepalive, no reconnecting, no limits.

Both keep Trio's rules: every ``send()`` and ``recv()`` checks for cancellation,
and there is a schedule point at least every ``SCHEDULE_EVERY`` calls.

- ``StreamClient``: on ``trio.SocketStream`` (``send_all``, ``receive_some``), which
  passes a schedule point on every call.
- ``FdClient``: on the same socket's ``fileno()``, with non-blocking ``os.read`` and
  ``os.write``, waiting in ``trio.lowlevel.wait_readable``/``wait_writable`` only
  when they would block.

Run: ``async with connect("ws://127.0.0.1:8000/", "fd") as ws: await ws.send("hi")``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
from websockets.speedups import apply_mask

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SCHEDULE_EVERY = 16
READ_SIZE = 65536
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class ProtocolError(Exception):
    """The server broke the protocol (or used a part of it this client lacks)."""


class ConnectionClosed(Exception):
    """The close handshake is over."""


def frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame: masked with a fresh random key."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return header + mask + apply_mask(payload, mask)


class MinimalClient:
    """The protocol; subclasses move the bytes (``_read``, ``_write``)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = b""
        self._pos = 0  # where the next frame starts in _buffer
        self._ready = 0  # calls since the last schedule point
        self._close_sent = False

    async def _read(self) -> bytes:
        """The next bytes from the server (b"" at EOF); sets ``_ready = 0`` if it
        passed a schedule point."""
        raise NotImplementedError

    async def _write(self, data: bytes) -> None:
        """Write all of ``data``; checks for cancellation; sets ``_ready = 0`` if it
        passed a schedule point."""
        raise NotImplementedError

    async def _counted(self) -> None:
        """One more call done without blocking: a schedule point every SCHEDULE_EVERY."""
        self._ready += 1
        if self._ready >= SCHEDULE_EVERY:
            self._ready = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _fill(self) -> None:
        data = await self._read()
        if not data:
            raise ProtocolError("the server closed the TCP connection")
        self._buffer = self._buffer[self._pos :] + data
        self._pos = 0

    async def handshake(self, host: str, port: int, path: str) -> None:
        key = base64.b64encode(os.urandom(16))
        await self._write(
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path.encode(), host.encode(), port, key)
        )
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > 16384:
                raise ProtocolError("handshake response too long")
            await self._fill()
        status, *lines = self._buffer[:end].decode("latin-1").split("\r\n")
        self._pos = end + 4
        if status.split(" ", 2)[1:2] != ["101"]:
            raise ProtocolError(f"handshake refused: {status}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise ProtocolError("wrong Sec-WebSocket-Accept")
        if (
            headers.get("upgrade", "").lower() != "websocket"
            or "sec-websocket-extensions" in headers
        ):
            raise ProtocolError("bad upgrade response")

    def _parse(self) -> tuple[int, bytes] | None:
        """The next whole frame in the buffer, or None."""
        buffer, pos = self._buffer, self._pos
        available = len(buffer) - pos
        if available < 2:
            return None
        first, length = buffer[pos], buffer[pos + 1]
        if first & 0x70 or length & 0x80:
            raise ProtocolError("reserved bits set, or a masked server frame")
        start = pos + 2
        if length == 126:
            start = pos + 4
            if available < 4:
                return None
            length = int.from_bytes(buffer[pos + 2 : start], "big")
        elif length == 127:
            start = pos + 10
            if available < 10:
                return None
            length = int.from_bytes(buffer[pos + 2 : start], "big")
        stop = start + length
        if stop > len(buffer):
            return None
        self._pos = stop
        if not first & 0x80 or not first & 0x0F:
            raise ProtocolError("fragmented messages are not supported")
        return first & 0x0F, buffer[start:stop]

    async def recv(self) -> str | bytes:
        """The next message; ConnectionClosed once the server closed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            parsed = self._parse()
            if parsed is None:
                await self._fill()
                continue
            opcode, payload = parsed
            if opcode == OP_TEXT:
                message: str | bytes = payload.decode()
            elif opcode == OP_BINARY:
                message = payload
            elif opcode == OP_PING:
                await self._write(frame(OP_PONG, payload))
                continue
            elif opcode == OP_PONG:
                continue
            elif opcode == OP_CLOSE:
                if not self._close_sent:  # echo the server's code
                    self._close_sent = True
                    await self._write(frame(OP_CLOSE, payload[:2]))
                raise ConnectionClosed
            else:
                raise ProtocolError(f"unknown opcode {opcode}")
            await self._counted()
            return message

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self._write(frame(OP_TEXT, message.encode()))
        else:
            await self._write(frame(OP_BINARY, message))

    async def aclose(self) -> None:
        """The close handshake (1000), then the TCP connection is closed."""
        try:
            if not self._close_sent:
                self._close_sent = True
                await self._write(frame(OP_CLOSE, (1000).to_bytes(2, "big")))
                while True:  # messages still in flight are dropped
                    await self.recv()
        except ConnectionClosed:
            pass
        finally:
            await self._stream.aclose()


class StreamClient(MinimalClient):
    """On ``trio.SocketStream``: each call is a checkpoint."""

    async def _read(self) -> bytes:
        data = await self._stream.receive_some(READ_SIZE)
        self._ready = 0
        return bytes(data)

    async def _write(self, data: bytes) -> None:
        await self._stream.send_all(data)
        self._ready = 0


class FdClient(MinimalClient):
    """On the socket's file descriptor: trio waits only when the kernel would block."""

    def __init__(self, stream: trio.SocketStream) -> None:
        super().__init__(stream)
        self._fd = stream.socket.fileno()

    async def _read(self) -> bytes:
        while True:
            try:
                return os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._fd)
                self._ready = 0

    async def _write(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        fd, view = self._fd, memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)
                self._ready = 0
        await self._counted()


@asynccontextmanager
async def connect(url: str, kind: str) -> AsyncIterator[MinimalClient]:
    """A connected client, ``kind`` ``"stream"`` or ``"fd"``; closed on exit."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None or parts.port is None:
        raise ValueError(f"need ws://host:port/path, got {url!r}")
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    client = {"stream": StreamClient, "fd": FdClient}[kind](stream)
    try:
        await client.handshake(parts.hostname, parts.port, parts.path or "/")
        yield client
    finally:
        await client.aclose()
