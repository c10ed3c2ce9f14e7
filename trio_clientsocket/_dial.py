"""Dialing: from a URL to an established link. Opens the byte stream (the
``open_stream`` seam: TCP, and TLS for ``wss://``), runs the opening
handshake, and returns the link with the messages that came with the answer.

The handshake answer is read and checked by ``_handshake`` for every
transport, so that a failure is classified and worded the same way whichever
engine runs.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import attrs
import trio
import trio_websocket

from ._engine import ENGINES
from ._errors import ConnectionLost, HandshakeRejected, ProtocolError
from ._events import Message
from ._handshake import HeadReader, check_upgrade
from ._link import READ, CountingStream, Link, TrioWebsocketLink, WireLink
from ._url import Target, parse_url

__all__ = ["TRANSPORTS", "DialOptions", "Dialed", "OpenStream", "dial", "tcp_opener"]

OpenStream = Callable[[str], Awaitable[trio.abc.Stream]]
"""The ``open_stream`` option: given the URL of an attempt, return a connected
``trio.abc.Stream`` (TLS already negotiated for ``wss://``)."""

TRANSPORTS = ("websockets", "wsproto", "trio-websocket")


def tcp_opener(ssl_context: ssl.SSLContext | None) -> OpenStream:
    """The default ``open_stream``: TCP, plus TLS for ``wss://`` verified against
    ``ssl_context`` (default: the system trust store, host name checked). The
    TLS handshake is done here, so that a certificate failure is raised at
    once instead of looking like a timeout."""

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
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError) or cause is None:
            raise ConnectionLost(1006, "connection closed during the TLS handshake") from exc
        if isinstance(cause, ssl.SSLError):
            raise cause from exc
        raise
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return tls


@attrs.frozen
class DialOptions:
    """What dialing needs of the socket's options."""

    transport: str
    max_size: int
    open_stream: OpenStream
    subprotocols: tuple[str, ...] = ()


@attrs.define
class Dialed:
    """An established connection, ready to serve."""

    link: Link
    initial: list[Message]
    subprotocol: str | None


async def dial(
    nursery: trio.Nursery,
    target: Target,
    headers: list[tuple[str, str]],
    options: DialOptions,
) -> Dialed:
    """Open the stream and run the handshake. ``nursery`` is the connection's:
    trio-websocket's reader task runs in it. Raises the attempt's failure."""
    stream = await options.open_stream(target.url)
    try:
        if options.transport == "trio-websocket":
            return await _dial_trio_websocket(nursery, stream, target, headers, options)
        return await _dial_engine(stream, target, headers, options)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def _dial_engine(
    stream: trio.abc.Stream, target: Target, headers: list[tuple[str, str]], options: DialOptions
) -> Dialed:
    engine = ENGINES[options.transport](target, headers, options.max_size, options.subprotocols)
    request = engine.request()
    try:
        await stream.send_all(request)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise ConnectionLost(1006, "connection closed during the handshake") from exc
    reader = HeadReader()
    received = 0
    while True:
        try:
            data = bytes(await stream.receive_some(READ))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            raise ConnectionLost(1006, "connection closed during the handshake")
        received += len(data)
        got = reader.feed(data)
        if got is not None:
            break
    response, head, rest = got
    if response.status != 101:
        raise HandshakeRejected(response.status, rest, response.headers)
    subprotocol = check_upgrade(response, engine.key, options.subprotocols, ())
    initial = engine.accept(head, rest)
    link = WireLink(stream, engine, received, len(request))
    return Dialed(link, initial, subprotocol)


async def _dial_trio_websocket(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    target: Target,
    headers: list[tuple[str, str]],
    options: DialOptions,
) -> Dialed:
    counting = CountingStream(stream, options.subprotocols, options.max_size)
    ws: trio_websocket.WebSocketConnection | None = None
    with trio.CancelScope() as counting.handshake:
        ws = await trio_websocket.wrap_client_stream(
            nursery,
            counting,  # type: ignore[arg-type]  # any trio Stream works
            target.host_header,
            target.resource,
            subprotocols=list(options.subprotocols) or None,
            extra_headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            message_queue_size=1,
            max_message_size=options.max_size,
            receive_buffer_size=READ,
        )
    counting.handshake = None
    if ws is None:
        if counting.failure is not None:
            raise counting.failure
        raise ProtocolError("the handshake did not complete")  # pragma: no cover - see _refuse
    link = TrioWebsocketLink(ws, counting, nursery, options.max_size)
    return Dialed(link, [], counting.subprotocol)

