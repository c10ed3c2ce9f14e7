"""One benchmark measurement in a fresh process; prints one JSON line.

Run: ``python benchmarks/clients.py CLIENT TEST PORT [ARGS...]``, where TEST is
``recv SIZE COUNT``, ``send SIZE COUNT``, ``rtt COUNT`` (16 B messages), ``connect COUNT``,
``memory SOCKETS`` or ``idle_cpu SOCKETS SECONDS``. ``run.py`` and
``instructions.py`` drive it.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Protocol

import trio
from server import notification  # the payload of every send test

from trio_clientsocket import ClientSocket, Connected, MessageReceived


class Conn(Protocol):
    """One open connection. Each client writes its own loop, as an application
    would, so that no wrapper call per message is measured."""

    async def send(self, message: str, count: int = 1) -> None:
        """Send ``message`` ``count`` times."""

    async def recv(self, count: int = 1) -> str | bytes:
        """Receive ``count`` messages; return the last."""


Opener = Callable[[str], Any]  # url -> async context manager yielding a Conn


# -- the clients ------------------------------------------------------------------


class _TrioWebsocket:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, message: str, count: int = 1) -> None:
        for _ in range(count):
            await self.ws.send_message(message)

    async def recv(self, count: int = 1) -> str | bytes:
        for _ in range(count):
            message: str | bytes = await self.ws.get_message()
        return message


def trio_websocket_opener(**options: Any) -> Opener:
    import trio_websocket

    @asynccontextmanager
    async def open_conn(url: str) -> AsyncIterator[Conn]:
        async with trio_websocket.open_websocket_url(url, **options) as ws:
            yield _TrioWebsocket(ws)

    return open_conn


class _ClientSocket:
    """Used as the README shows: ``async for event in sock.events()`` and ``match``."""

    def __init__(self, sock: ClientSocket) -> None:
        self.sock = sock

    async def send(self, message: str, count: int = 1) -> None:
        for _ in range(count):
            await self.sock.send(message)

    async def recv(self, count: int = 1) -> str | bytes:
        async for event in self.sock.events():
            match event:
                case MessageReceived(message=message):
                    count -= 1
                    if count == 0:
                        return message
        raise EOFError("the socket closed")


async def _until_connected(sock: ClientSocket) -> None:
    """As an application does: read events until Connected (an unread event
    would hold the event buffer's memory in the idle tests, and so would a
    variable of this frame that kept the event)."""
    async for event in sock.events():
        match event:
            case Connected():
                return


def clientsocket_opener(**options: Any) -> Opener:
    @asynccontextmanager
    async def open_conn(url: str) -> AsyncIterator[Conn]:
        async with ClientSocket(url, **options) as sock:
            await _until_connected(sock)
            yield _ClientSocket(sock)

    return open_conn


class _SendRecv:
    """A connection with ``send(message)`` and ``recv()``: websockets' (trio or
    asyncio) or ``minimal.py``'s."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, message: str, count: int = 1) -> None:
        for _ in range(count):
            await self.ws.send(message)

    async def recv(self, count: int = 1) -> str | bytes:
        for _ in range(count):
            message: str | bytes = await self.ws.recv()
        return message


def websockets_opener(**options: Any) -> Opener:
    """websockets.trio's client; ``options`` go to its ``connect``."""
    from websockets.trio.client import connect

    @asynccontextmanager
    async def open_conn(url: str) -> AsyncIterator[Conn]:
        async with connect(url, **options) as ws:
            yield _SendRecv(ws)

    return open_conn


def websockets_asyncio_opener(**options: Any) -> Opener:
    """websockets' asyncio client (same connection class as websockets.trio's wrapper)."""
    from websockets.asyncio.client import connect

    @asynccontextmanager
    async def open_conn(url: str) -> AsyncIterator[Conn]:
        async with connect(url, **options) as ws:
            yield _SendRecv(ws)

    return open_conn


class _Picows:
    """picows (asyncio, Cython): its frames go into a deque that ``recv`` reads,
    the least any client can do to hand messages to a task; ``send`` waits while
    picows reports the transport's buffer over its high-water mark."""

    def __init__(self) -> None:
        import asyncio
        from collections import deque

        from picows import WSListener, WSMsgType

        conn = self

        class Listener(WSListener):
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type == WSMsgType.TEXT:
                    conn.queue.append(frame.get_payload_as_utf8_text())
                elif frame.msg_type == WSMsgType.BINARY:
                    conn.queue.append(frame.get_payload_as_bytes())
                else:
                    return
                waiter = conn.waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

            def pause_writing(self) -> None:
                conn.paused = asyncio.get_running_loop().create_future()

            def resume_writing(self) -> None:
                if conn.paused is not None:
                    conn.paused.set_result(None)
                    conn.paused = None

        self.listener_class = Listener
        self.queue: deque[str | bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.paused: asyncio.Future[None] | None = None
        self.transport: Any = None
        self.text = WSMsgType.TEXT

    async def send(self, message: str, count: int = 1) -> None:
        transport, text, data = self.transport, self.text, message.encode()
        for _ in range(count):
            while self.paused is not None:
                await self.paused
            transport.send(text, data)

    async def recv(self, count: int = 1) -> str | bytes:
        import asyncio

        queue = self.queue
        for _ in range(count):
            while not queue:
                self.waiter = asyncio.get_running_loop().create_future()
                await self.waiter
            message = queue.popleft()
        return message


def picows_opener() -> Opener:
    from picows import WSCloseCode, ws_connect

    @asynccontextmanager
    async def open_conn(url: str) -> AsyncIterator[Conn]:
        conn = _Picows()
        transport, _ = await ws_connect(conn.listener_class, url)
        conn.transport = transport
        try:
            yield conn
        finally:  # the close handshake: the server answers and closes the TCP connection
            transport.send_close(WSCloseCode.OK)
            await transport.wait_disconnected()

    return open_conn


def minimal_opener(kind: str) -> Opener:
    import minimal

    @asynccontextmanager
    async def open_conn(url: str) -> AsyncIterator[Conn]:
        async with minimal.connect(url, kind) as ws:
            yield _SendRecv(ws)

    return open_conn


ASYNCIO = {"picows (asyncio, Cython)", "websockets asyncio"}
CLIENTS: dict[str, Callable[[], Opener]] = {
    "trio-websocket (defaults)": lambda: trio_websocket_opener(),
    "trio-websocket (ClientSocket's settings)": lambda: trio_websocket_opener(
        message_queue_size=16, receive_buffer_size=65536
    ),
    "ClientSocket": lambda: clientsocket_opener(),
    "ClientSocket (wsproto engine)": lambda: clientsocket_opener(transport="wsproto"),
    "ClientSocket (trio-websocket transport)": lambda: clientsocket_opener(
        transport="trio-websocket"
    ),
    "websockets.trio": lambda: websockets_opener(compression=None, proxy=None),
    "ClientSocket (no compression offered)": lambda: clientsocket_opener(compression=None),
    "websockets.trio (deflate)": lambda: websockets_opener(compression="deflate", proxy=None),
    "websockets.trio (defaults)": lambda: websockets_opener(),
    "websockets asyncio": lambda: websockets_asyncio_opener(),
    "picows (asyncio, Cython)": lambda: picows_opener(),
    "minimal (SocketStream)": lambda: minimal_opener("stream"),
    "minimal (fd + wait_readable)": lambda: minimal_opener("fd"),
}
SLEEP: Callable[[float], Any] = trio.sleep


# -- the tests ----------------------------------------------------------------------


async def recv(opener: Opener, url: str, size: int, count: int) -> dict[str, float]:
    async with opener(url) as conn:
        start = time.perf_counter()
        await conn.send(f"push {count} {size}")
        assert await conn.recv(count + 1) == "end"  # count messages, then "end"
        elapsed = time.perf_counter() - start
    return {"msgs_per_s": count / elapsed, "mb_per_s": count * size / elapsed / 1e6}


async def send(opener: Opener, url: str, size: int, count: int) -> dict[str, float]:
    payload = notification(0, size)
    async with opener(url) as conn:
        await conn.send(f"pull {count}")
        start = time.perf_counter()
        await conn.send(payload, count)
        assert await conn.recv() == "done"
        elapsed = time.perf_counter() - start
    return {"msgs_per_s": count / elapsed, "mb_per_s": count * size / elapsed / 1e6}


async def rtt(opener: Opener, url: str, count: int) -> dict[str, float]:
    samples = []
    message = notification(0, 16)
    async with opener(url) as conn:
        await conn.send("echo")
        for i in range(count + 200):
            start = time.perf_counter()
            await conn.send(message)
            await conn.recv()
            if i >= 200:
                samples.append(time.perf_counter() - start)
    samples.sort()
    return {
        "median_us": statistics.median(samples) * 1e6,
        "p99_us": samples[int(len(samples) * 0.99)] * 1e6,
    }


async def connect(opener: Opener, url: str, count: int) -> dict[str, float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        async with opener(url) as conn:
            samples.append(time.perf_counter() - start)
            del conn
    return {"median_us": statistics.median(samples) * 1e6}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _open_many(opener: Opener, url: str, count: int, stack: AsyncExitStack) -> None:
    for _ in range(count):
        await stack.enter_async_context(opener(url))


async def memory(opener: Opener, url: str, sockets: int) -> dict[str, float]:
    async with AsyncExitStack() as warm:  # import and warm everything first
        await _open_many(opener, url, 10, warm)
    gc.collect()
    before = rss()
    async with AsyncExitStack() as stack:
        await _open_many(opener, url, sockets, stack)
        await SLEEP(0.5)
        gc.collect()
        after = rss()
    return {"kib_per_socket": (after - before) / sockets / 1024}


async def idle_cpu(opener: Opener, url: str, sockets: int, seconds: float) -> dict[str, float]:
    async with AsyncExitStack() as stack:
        await _open_many(opener, url, sockets, stack)
        await SLEEP(0.5)
        start = resource.getrusage(resource.RUSAGE_SELF)
        await SLEEP(seconds)
        end = resource.getrusage(resource.RUSAGE_SELF)
    used = (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime)
    return {"cpu_ms": used * 1000, "cpu_percent": used / seconds * 100}


TESTS: dict[str, Callable[..., Coroutine[Any, Any, dict[str, float]]]] = {
    "recv": recv,
    "send": send,
    "rtt": rtt,
    "connect": connect,
    "memory": memory,
    "idle_cpu": idle_cpu,
}


def main() -> None:
    client, test, port, *args = sys.argv[1:]
    opener = CLIENTS[client]()
    url = f"ws://127.0.0.1:{port}/bench"
    numbers = [float(a) if "." in a else int(a) for a in args]
    if client in ASYNCIO:
        import asyncio

        global SLEEP
        SLEEP = asyncio.sleep
        result = asyncio.run(TESTS[test](opener, url, *numbers))
    else:
        result = trio.run(TESTS[test], opener, url, *numbers)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
