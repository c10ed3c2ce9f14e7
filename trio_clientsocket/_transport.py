"""Opening the byte stream under a WebSocket, and watching it.

``open_stream`` is the seam: the default opens TCP (and TLS for ``wss://``,
with the TLS handshake done here so that a certificate failure is raised at
once instead of looking like a timeout), and the testing kit passes one that
returns an in-memory stream.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import trio

from ._url import Target, parse_url

__all__ = ["ObservedStream", "OpenStream", "tcp_opener"]

OpenStream = Callable[[str], Awaitable[trio.abc.Stream]]
"""The ``open_stream`` option: given the URL of an attempt, return a connected
``trio.abc.Stream`` (TLS already negotiated for ``wss://``)."""


def tcp_opener(ssl_context: ssl.SSLContext | None) -> OpenStream:
    """The default ``open_stream``: TCP, plus TLS for ``wss://`` verified against
    ``ssl_context`` (default: the system trust store, host name checked)."""

    async def open_stream(url: str) -> trio.abc.Stream:
        target = parse_url(url)
        tcp = await trio.open_tcp_stream(target.host, target.port)
        if not target.secure:
            return tcp
        return await _start_tls(tcp, target, ssl_context)

    return open_stream


async def _start_tls(
    tcp: trio.SocketStream, target: Target, context: ssl.SSLContext | None
) -> trio.abc.Stream:
    tls = trio.SSLStream(
        tcp,
        context or ssl.create_default_context(),
        server_hostname=target.host,
        https_compatible=True,
    )
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tcp)
        if isinstance(exc.__cause__, ssl.SSLError):
            raise exc.__cause__ from exc
        raise
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return tls


_CHUNK = 65536


class ObservedStream(trio.abc.Stream):
    """Wraps the transport stream to see what the WebSocket layer does with it:
    bytes in and out, whether the peer sent EOF or the layer closed it, and the
    first bytes of the server's answer (to read an HTTP status that the
    WebSocket layer could not report)."""

    __slots__ = (
        "_waiter",
        "broken",
        "bytes_in",
        "bytes_out",
        "closed_by_layer",
        "head",
        "inner",
        "on_write_error",
        "torn",
    )

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.bytes_in = 0
        self.bytes_out = 0
        self.head = b""
        self.closed_by_layer = False
        self.torn = False  # a write was cancelled part-way: the framing is lost
        # Called when a write finds the stream broken, in whichever task wrote:
        # trio-websocket may otherwise not notice until its next read.
        self.on_write_error: Callable[[], None] | None = None
        self.broken = False  # the peer sent EOF, or the stream was closed
        self._waiter: trio.Event | None = None  # created only while waited for

    async def wait_broken(self) -> None:
        if self.broken:
            await trio.lowlevel.checkpoint()
            return
        self._waiter = trio.Event()
        try:
            await self._waiter.wait()
        finally:
            self._waiter = None

    def _set_broken(self) -> None:
        self.broken = True
        if self._waiter is not None:
            self._waiter.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # A Cancelled out of the inner write may leave part of a frame on the
        # wire (trio cannot say how much went): ``torn`` records it. It may also
        # come before anything went, if the cancellation arrived just before
        # this call (a checkpoint here to tell the two apart costs 2% of a
        # small send): then the connection is given up needlessly, and the
        # message is reported undelivered, never lost.
        try:
            if len(data) <= _CHUNK:
                await self.inner.send_all(data)
                self.bytes_out += len(data)
                return
            # A large write goes in chunks, so that its progress shows in bytes_out
            # while it lasts (keepalive reads that as a sign the peer is alive).
            view = memoryview(data)
            for start in range(0, len(view), _CHUNK):
                chunk = view[start : start + _CHUNK]
                await self.inner.send_all(chunk)
                self.bytes_out += len(chunk)
        except trio.Cancelled:
            self.torn = True
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._set_broken()
            if self.on_write_error is not None:
                self.on_write_error()
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self.inner.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._set_broken()
            raise
        if not data:
            self._set_broken()
        elif len(self.head) < 64:
            self.head += bytes(data[: 64 - len(self.head)])
        self.bytes_in += len(data)
        return data

    async def aclose(self) -> None:
        # Only the WebSocket layer calls this (ClientSocket closes ``inner``):
        # outside a requested close, it means the layer gave up on the peer.
        self.closed_by_layer = True
        self._set_broken()
        await self.inner.aclose()

    def http_status(self) -> int | None:
        """The status of an HTTP response the server began, if it began one."""
        parts = self.head.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            return int(parts[1])
        return None
