"""Issue 21, item 3: errors that say what to do. A refused connection names
the address and the cause, a proxy that is down is named as the proxy, a
printed Connected does not dump the handshake's headers, and a TLS server
that picks HTTP/2 by ALPN is a fatal error that names ALPN. Real sockets on
127.0.0.1, every transport."""

from __future__ import annotations

import socket
import ssl

import pytest
import trio
import trustme

from trio_clientsocket import Backoff, Connected, ConnectionFailed, MessageReceived
from trio_clientsocket.testing import open_mock_server

from ._hostile_helpers import tcp_server
from .conftest import client_socket, next_event_skip
from .test_promises import connect_proxy

pytestmark = pytest.mark.usefixtures("each_transport")

FAST = Backoff(initial=0.05, jitter=0)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_refused_connection_names_the_address_and_the_cause() -> None:
    port = closed_port()
    with trio.fail_after(10):
        async with client_socket(f"ws://127.0.0.1:{port}/", reconnect=FAST, proxy=None) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
    error = failed.error
    assert isinstance(error, ConnectionRefusedError)  # the kind is kept
    assert f"127.0.0.1:{port}" in str(error)
    assert "Connection refused" in str(error)
    assert failed.retry_in is not None  # still retried


async def test_a_proxy_that_is_down_is_named_as_the_proxy() -> None:
    port = closed_port()
    proxy = f"http://127.0.0.1:{port}"
    with trio.fail_after(10):
        async with client_socket("ws://app.test/", reconnect=FAST, proxy=proxy) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error, ConnectionRefusedError)
    assert f"the proxy {proxy}" in str(failed.error)
    assert failed.retry_in is not None


async def test_a_printed_connected_event_shows_no_handshake_headers() -> None:
    with trio.fail_after(10):
        async with open_mock_server() as server:
            server.accept_headers = [("Set-Cookie", "session=abc"), ("X-Server", "kit")]
            async with client_socket(
                "ws://app.test/", open_stream=server.open_stream
            ) as sock:
                connected = await next_event_skip(sock, Connected)
    assert connected.response is not None
    assert connected.response.header("x-server") == "kit"  # still there
    assert "X-Server" not in repr(connected)
    assert "x-server" not in repr(connected)
    assert repr(connected) == "Connected(url='ws://app.test/', subprotocol=None)"


def alpn_contexts(server_picks: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts: the client offers h2 and http/1.1 by
    ALPN, the server picks ``server_picks``."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    server_context.set_alpn_protocols([server_picks])
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client_context.set_alpn_protocols(["h2", "http/1.1"])
    return server_context, client_context


async def test_a_server_that_picks_http2_by_alpn_is_fatal_and_says_so() -> None:
    """Before: "not an HTTP response", retried for ever."""
    server_context, client_context = alpn_contexts("h2")
    with trio.fail_after(10):
        async with open_mock_server() as server:
            port = await server.listen_tcp(ssl_context=server_context)
            async with client_socket(
                f"wss://localhost:{port}/", ssl_context=client_context, reconnect=FAST
            ) as sock:
                failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error, ssl.SSLError)
    assert "ALPN" in str(failed.error)
    assert "'h2'" in str(failed.error)
    assert failed.retry_in is None  # fatal


async def test_a_server_that_picks_http11_by_alpn_is_fine() -> None:
    server_context, client_context = alpn_contexts("http/1.1")
    with trio.fail_after(10):
        async with open_mock_server() as server:
            port = await server.listen_tcp(ssl_context=server_context)
            async with client_socket(
                f"wss://localhost:{port}/", ssl_context=client_context
            ) as sock:
                await sock.wait_connected()


# -- item 9: an https proxy with a private CA ---------------------------------------


async def test_proxy_ssl_trusts_an_https_proxy_with_a_private_ca() -> None:
    """``proxy_ssl=`` is the context for the proxy's TLS (before, only the
    process-wide ``SSL_CERT_FILE`` could make it trusted); without it, the
    proxy's certificate fails verification, fatally."""
    ca = trustme.CA()
    proxy_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(proxy_context)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    requests: list[bytes] = []
    with trio.fail_after(10):
        async with (
            open_mock_server() as server,
            tcp_server(connect_proxy(requests, proxy_context)) as proxy_port,
        ):
            port = await server.listen_tcp()
            proxy = f"https://127.0.0.1:{proxy_port}"
            url = f"ws://127.0.0.1:{port}/x"
            async with client_socket(url, proxy=proxy, proxy_ssl=trusting) as sock:
                await sock.wait_connected()
            assert requests[0].startswith(f"CONNECT 127.0.0.1:{port} ".encode())
            async with client_socket(url, proxy=proxy, reconnect=FAST) as sock:
                failed = await next_event_skip(sock, ConnectionFailed)
            assert isinstance(failed.error, ssl.SSLCertVerificationError)
            assert failed.retry_in is None


def test_proxy_ssl_must_be_an_ssl_context() -> None:
    with pytest.raises(TypeError, match=r"proxy_ssl must be an ssl\.SSLContext"):
        client_socket("ws://h.test/", proxy_ssl="ca.pem")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",  # an IP address: connected to directly
        "localhost",  # a name: trio's happy eyeballs over its addresses
        pytest.param(
            "[::1]",
            marks=pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here"),
        ),
    ],
)
async def test_an_address_or_a_name_connects_and_a_refusal_names_it(host: str) -> None:
    listen = "::1" if host == "[::1]" else "127.0.0.1"
    with trio.fail_after(10):
        async with open_mock_server(echo=True) as mock:
            port = await mock.listen_tcp(listen)
            async with client_socket(f"ws://{host}:{port}/", proxy=None) as sock:
                await sock.send("hello")
                echoed = await next_event_skip(sock, MessageReceived)
                assert echoed.message == "hello"
        # the server is gone: refused, and the error names where it went
        async with client_socket(f"ws://{host}:{port}/", reconnect=FAST, proxy=None) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error, ConnectionRefusedError)
    assert f"cannot connect to {host.strip('[]')}:{port}: Connection refused" in str(failed.error)
