"""wss:// against a real TLS server on 127.0.0.1, certificates made by trustme."""

from __future__ import annotations

import ssl
import sys

import pytest
import trio
import trustme

from trio_clientsocket import Backoff, ConnectionFailed, MessageReceived
from trio_clientsocket.testing import open_mock_server

from .conftest import client_socket, next_event_skip
from .test_lifecycle import next_event

pytestmark = pytest.mark.usefixtures("each_transport")

FAST = Backoff(initial=0.05, jitter=0)


def contexts(server_name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with a cert for ``server_name``, client context trusting its CA)."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(server_name).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def test_wss_with_trusted_certificate() -> None:
    server_ctx, client_ctx = contexts("localhost")
    with trio.fail_after(10):
        async with open_mock_server(echo=True) as server:
            port = await server.listen_tcp(ssl_context=server_ctx)
            url = f"wss://localhost:{port}/app/gxwebsocket?tls"
            async with client_socket(url, ssl_context=client_ctx) as sock:
                await sock.send("secret")
                assert (await next_event_skip(sock, MessageReceived)).message == "secret"
            assert server.connections[0].client_id == "tls"


async def test_wrong_host_is_fatal_at_once() -> None:
    server_ctx, client_ctx = contexts("example.org")
    with trio.fail_after(10):
        async with open_mock_server() as server:
            port = await server.listen_tcp(ssl_context=server_ctx)
            start = trio.current_time()
            async with client_socket(
                f"wss://localhost:{port}/", ssl_context=client_ctx, reconnect=FAST
            ) as sock:
                failed = await next_event(sock, ConnectionFailed)
                assert isinstance(failed.error, ssl.SSLCertVerificationError)
                assert "localhost" in str(failed.error)
                assert failed.retry_in is None
            assert trio.current_time() - start < 5  # not the connect timeout
            assert server.attempts == 1


async def test_untrusted_self_signed_is_fatal() -> None:
    server_ctx, _ = contexts("localhost")
    with trio.fail_after(10):
        async with open_mock_server() as server:
            port = await server.listen_tcp(ssl_context=server_ctx)
            async with client_socket(f"wss://localhost:{port}/", reconnect=FAST) as sock:
                failed = await next_event(sock, ConnectionFailed)
                assert isinstance(failed.error, ssl.SSLCertVerificationError)
                assert failed.retry_in is None


async def test_cli_insecure_flag_warns_and_connects() -> None:
    server_ctx, _ = contexts("localhost")
    with trio.fail_after(30):
        async with open_mock_server(echo=True) as server:
            port = await server.listen_tcp(ssl_context=server_ctx)
            done = await trio.run_process(
                [
                    sys.executable,
                    "-m",
                    "trio_clientsocket",
                    "connect",
                    f"wss://localhost:{port}/x",
                    "--json",
                    "--insecure",
                    "--linger",
                    "0.5",
                ],
                stdin=b"over tls\n",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert done.returncode == 0, done.stderr
    assert b"WARNING: --insecure" in done.stderr
    assert b'"message": "over tls"' in done.stdout
