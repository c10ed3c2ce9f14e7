"""Dialing: from a URL to an established link. Opens the byte stream (the
``open_stream`` seam: TCP, and TLS for ``wss://``), runs the opening
handshake, and returns the link with the messages that came with the answer.

The handshake answer is read and checked by ``_handshake`` for every
transport, so that a failure is classified and worded the same way whichever
engine runs.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
import trio

from ._compression import Deflate
from ._engine import Engine, WebsocketsEngine
from ._errors import ConnectionLost, HandshakeRejected, ProtocolError, connect_error
from ._handshake import HandshakeResponse, HeadReader, check_upgrade, secret_header
from ._link import READ, Link, WireLink

if TYPE_CHECKING:
    from ._engine_wsproto import WsprotoEngine
from ._proxy import (
    Proxy,
    ProxyOption,
    choose_proxy,
    http_tunnel,
    proxy_environment,
    socks5_tunnel,
)
from ._url import Target, parse_url, redirect_url

__all__ = ["TRANSPORTS", "DialOptions", "Dialed", "OpenStream", "dial", "tcp_opener"]

OpenStream = Callable[[str], Awaitable[trio.abc.Stream]]
"""The ``open_stream`` option: given the URL of an attempt, return a connected
``trio.abc.Stream`` (TLS already negotiated for ``wss://``)."""

TRANSPORTS = ("websockets", "wsproto", "trio-websocket")


def tcp_opener(
    ssl_context: ssl.SSLContext | None,
    proxy: ProxyOption = None,
    user_agent: str | None = None,
    proxy_ssl: ssl.SSLContext | None = None,
) -> OpenStream:
    """The default ``open_stream``: TCP, through a proxy if one applies
    (``_proxy.choose_proxy``), plus TLS for ``wss://`` verified against
    ``ssl_context`` (default: the system trust store, host name checked). The
    TLS handshake is done here, so that a certificate failure is raised at
    once instead of looking like a timeout."""

    environment = proxy_environment() if proxy is True else None

    async def open_stream(url: str) -> trio.abc.Stream:
        target = parse_url(url)
        via = choose_proxy(target, proxy, environment)
        if via is None:
            stream = await _connect(target.host, target.port, f"{target.host}:{target.port}")
        else:
            stream = await _tunnel(target, via, user_agent, proxy_ssl)
        if not target.secure:
            return stream
        return await _start_tls(stream, target, ssl_context)

    return open_stream


async def _connect(host: str, port: int, where: str) -> trio.abc.Stream:
    """A TCP stream to ``host:port``; a failure names ``where`` and its cause.
    A host name goes through ``trio.open_tcp_stream`` (happy eyeballs over its
    addresses); an IP address, one candidate with nothing to race, is
    connected to directly."""
    try:
        family = _address_family(host)
        if family is None:
            return await trio.open_tcp_stream(host, port)
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)
    except OSError as exc:
        raise connect_error(exc, where) from exc


def _address_family(host: str) -> int | None:
    """The address family of ``host`` if it is an IP address, else None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


async def _tunnel(
    target: Target, proxy: Proxy, user_agent: str | None, proxy_ssl: ssl.SSLContext | None
) -> trio.abc.Stream:
    """A stream to ``target`` through ``proxy``."""
    stream = await _connect(proxy.host, proxy.port, f"the proxy {proxy.shown}")
    try:
        if proxy.scheme == "https":
            stream = await _start_tls(stream, proxy, proxy_ssl)
        if proxy.scheme in ("http", "https"):
            await http_tunnel(stream, target, proxy, user_agent)
        else:
            await socks5_tunnel(stream, target, proxy)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        await trio.aclose_forcefully(stream)
        raise ConnectionLost(1006, f"connection to the proxy {proxy.shown} lost") from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _start_tls(
    tcp: trio.abc.Stream, target: Target | Proxy, context: ssl.SSLContext | None
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
    chosen = tls.selected_alpn_protocol()
    if chosen is not None and chosen != "http/1.1":
        # A server that speaks HTTP/2 answers the handshake in frames that are
        # not an HTTP/1.1 response: name the cause, and do not retry it.
        await trio.aclose_forcefully(tls)
        raise ssl.SSLError(
            f"the server chose the ALPN protocol {chosen!r}, and a WebSocket handshake "
            "needs HTTP/1.1: offer only 'http/1.1' (or no ALPN) in ssl_context"
        )
    return tls


@attrs.frozen
class DialOptions:
    """What dialing needs of the socket's options."""

    transport: str
    max_size: int
    open_stream: OpenStream
    subprotocols: tuple[str, ...] = ()
    compression: Deflate | None = None


@attrs.define
class Dialed:
    """An established connection, ready to serve."""

    link: Link
    subprotocol: str | None
    response: HandshakeResponse
    compressed: bool = False
    """permessage-deflate was negotiated."""
    target: Target | None = None
    """Where the connection went, after any redirect."""


MAX_REDIRECTS = 10
"""Redirects followed in one attempt (as websockets does)."""
REDIRECTS = frozenset({301, 302, 303, 307, 308})


def redirected(
    target: Target, headers: list[tuple[str, str]], error: HandshakeRejected
) -> tuple[Target, list[tuple[str, str]]]:
    """Where a 3xx answer sends the attempt, and with which headers: a
    credential (``Authorization``, a password in the URL, ``Cookie``, any
    header whose value the socket's reprs hide) goes to the same origin only:
    the same scheme, host and port, as browsers, requests and curl do. Raises
    the answer itself when it has no Location."""
    location = dict(error.headers).get("location")
    if location is None:
        raise error
    new = parse_url(redirect_url(target, location))
    if new.origin != target.origin:
        headers = [(k, v) for k, v in headers if not secret_header(k)]
        auth = new.basic_auth()  # given by the server itself, in the Location
        if auth is not None:
            headers.append(auth)
    return new, headers


async def dial(
    nursery: trio.Nursery,
    target: Target,
    headers: list[tuple[str, str]],
    options: DialOptions,
) -> Dialed:
    """Open the stream and run the handshake, following redirects. ``nursery``
    is the connection's: trio-websocket's reader task runs in it. Raises the
    attempt's failure."""
    last: HandshakeRejected | None = None
    for _ in range(MAX_REDIRECTS + 1):
        stream = await options.open_stream(target.url)
        try:
            if options.transport == "trio-websocket":
                dialed = await _dial_trio_websocket(nursery, stream, target, headers, options)
            else:
                dialed = await _dial_engine(stream, target, headers, options)
        except HandshakeRejected as error:
            await trio.aclose_forcefully(stream)
            if error.status_code not in REDIRECTS:
                raise
            target, headers = redirected(target, headers, error)
            last = error
            continue
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        dialed.target = target
        return dialed
    assert last is not None
    raise HandshakeRejected(
        last.status_code, b"", last.headers, detail=f"more than {MAX_REDIRECTS} redirects"
    )


def engine_class(name: str) -> type[WebsocketsEngine] | type[WsprotoEngine]:
    """The engine of ``transport=name``: wsproto's is imported on first use, so
    that a program that never uses it does not pay for importing it."""
    if name == "websockets":
        return WebsocketsEngine
    from ._engine_wsproto import WsprotoEngine

    return WsprotoEngine


async def _dial_engine(
    stream: trio.abc.Stream, target: Target, headers: list[tuple[str, str]], options: DialOptions
) -> Dialed:
    engine: Engine = engine_class(options.transport)(
        target, headers, options.max_size, options.subprotocols, options.compression
    )
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
    subprotocol = check_upgrade(response, engine.key, options.subprotocols, engine.extension_names)
    engine.accept(response, head, rest)  # the link's first read parses ``rest``
    link = WireLink(stream, engine, received, len(request))
    return Dialed(link, subprotocol, response, compressed=engine.compressed)


async def _dial_trio_websocket(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    target: Target,
    headers: list[tuple[str, str]],
    options: DialOptions,
) -> Dialed:
    import trio_websocket  # the transport's modules are imported on first use

    from ._link_trio_websocket import CountingStream, TrioWebsocketLink

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
    response, counting.response = counting.response, None  # held by Connected only
    assert response is not None
    return Dialed(link, counting.subprotocol, response)

