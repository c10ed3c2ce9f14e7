"""Helpers for the regression tests of issue 12 (tests/test_hostile*.py).

Public API only. The fields that issue 12 adds (``SocketStatistics.events_dropped``
and ``Undelivered.count``; also ``ClientSocket.raw_url``, read in test_hostile.py)
are read by name, so that these modules type-check before the fields exist.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request
from wsproto.utilities import LocalProtocolError

from trio_clientsocket import ClientSocket, Event, Undelivered

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- events ----------------------------------------------------------------------


def drain(sock: ClientSocket) -> list[Event]:
    """Every event buffered now, without waiting."""
    events: list[Event] = []
    while True:
        try:
            events.append(sock.events().receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return events


# -- fields issue 12 adds (read by name: they do not exist before the fix) ------


def _field(obj: object, name: str) -> object:
    return getattr(obj, name)


def events_dropped(sock: ClientSocket) -> int:
    """``sock.statistics().events_dropped``: lifecycle events dropped or merged."""
    value = _field(sock.statistics(), "events_dropped")
    assert isinstance(value, int)
    return value


def undelivered_count(event: Undelivered) -> int:
    """``Undelivered.count``: how many messages the report covers (it may be more
    than ``len(messages)``)."""
    value = _field(event, "count")
    assert isinstance(value, int)
    return value


# -- hand-made WebSocket bytes ---------------------------------------------------


def accept_token(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def request_key(request: bytes) -> bytes:
    """The Sec-WebSocket-Key of a handshake request."""
    for line in request.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return value.strip()
    raise AssertionError(f"no Sec-WebSocket-Key in {request!r}")


def switching(key: bytes, *extra: bytes, accept: bytes | None = None) -> bytes:
    """A ``101 Switching Protocols`` answer to the request with ``key``."""
    token = accept_token(key) if accept is None else accept
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + token,
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """One unmasked frame, as a server sends it."""
    head = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        return bytes([head, size]) + payload
    if size < 65536:
        return bytes([head, 126]) + struct.pack("!H", size) + payload
    return bytes([head, 127]) + struct.pack("!Q", size) + payload


async def read_request(stream: trio.abc.Stream, limit: int = 65536) -> bytes:
    """Read a client's handshake request, up to the blank line."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        if not chunk:
            raise AssertionError(f"client went away mid-request: {data!r}")
        data += bytes(chunk)
        assert len(data) < limit
    return data


# -- in-memory hostile servers ------------------------------------------------

Respond = Callable[[trio.abc.Stream, bytes], Awaitable[None]]
"""A hostile server: given its end of the stream and the client's request."""


class RawServer:
    """An ``open_stream`` whose server side runs ``respond`` on a memory stream."""

    def __init__(self, nursery: trio.Nursery, respond: Respond) -> None:
        self._nursery = nursery
        self._respond = respond
        self.attempts = 0

    async def open_stream(self, url: str) -> trio.abc.Stream:
        self.attempts += 1
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._serve, server)
        await trio.lowlevel.checkpoint()
        return client

    async def _serve(self, stream: trio.abc.Stream) -> None:
        try:
            request = await read_request(stream)
            await self._respond(stream, request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def raw_server(respond: Respond) -> AsyncIterator[RawServer]:
    """Run a ``RawServer`` for the block (its connections end with the block)."""
    async with trio.open_nursery() as nursery:
        yield RawServer(nursery, respond)
        nursery.cancel_scope.cancel()


PingHandler = Callable[[trio.abc.Stream, WSConnection, Ping], Awaitable[None]]
"""What ``ping_server`` does with each ping: given the stream, wsproto's
connection (to answer with ``ws.send(event.response())``) and the ping."""


def ping_server(on_ping: PingHandler) -> Respond:
    """A raw wsproto server that accepts, then hands each ping to ``on_ping``
    (it answers no ping by itself)."""

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(request)
        for event in ws.events():
            if isinstance(event, Request):
                await stream.send_all(ws.send(AcceptConnection()))
        while True:
            data = await stream.receive_some()
            if not data:
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Ping):
                    await on_ping(stream, ws, event)

    return respond


# -- real TCP ----------------------------------------------------------------------

TcpRespond = Callable[[trio.SocketStream], Awaitable[None]]


@asynccontextmanager
async def tcp_server(respond: TcpRespond) -> AsyncIterator[int]:
    """A raw TCP server on 127.0.0.1 running ``respond`` for each connection;
    yields its port. Stopped with the block."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await respond(stream)

    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        port: int = listeners[0].socket.getsockname()[1]
        yield port
        nursery.cancel_scope.cancel()


class ThreadedPongServer:
    """A WebSocket server on 127.0.0.1 in its own thread, on blocking sockets, so
    that it keeps running while a test blocks trio's event loop. It answers each
    ping ``pong_delay`` seconds after reading it, and sets ``pinged`` as soon as
    it has read one. Connections are served one after the other."""

    def __init__(self, pong_delay: float) -> None:
        self.pong_delay = pong_delay
        self.pinged = threading.Event()
        self.pings = 0
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ThreadedPongServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                self.connections += 1
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        ws = WSConnection(ConnectionType.SERVER)
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    conn.sendall(ws.send(AcceptConnection()))
                elif isinstance(event, Ping):
                    self.pings += 1
                    self.pinged.set()
                    time.sleep(self.pong_delay)
                    conn.sendall(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    with contextlib.suppress(OSError, LocalProtocolError):
                        conn.sendall(ws.send(event.response()))
                    return
