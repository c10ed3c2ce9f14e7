"""Proxies, against a real proxy process on 127.0.0.1 (tests/proxy_server.py):
HTTP CONNECT and SOCKS5, from the option and from the environment, 407 fatal
and clearly worded, a proxy that is down retried, credentials never shown."""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio
import trustme

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    Connected,
    ConnectionFailed,
    InvalidURLError,
    ProxyRejected,
)
from trio_clientsocket._proxy import bypassed, choose_proxy, connect_request, parse_proxy
from trio_clientsocket._url import parse_url
from trio_clientsocket.testing import open_mock_server

from .conftest import client_socket

SERVER = Path(__file__).resolve().parent / "proxy_server.py"
FAST = Backoff(initial=0.05, factor=1, jitter=0)


@attrs.define
class ProxyProcess:
    process: subprocess.Popen[str]
    port: int
    output: list[str] | None = None

    def log(self) -> list[str]:
        """Stop the proxy (once) and return what it printed."""
        if self.output is None:
            self.process.terminate()
            out, _ = self.process.communicate(timeout=10)
            self.output = out.splitlines()
        return self.output


def start_proxy(auth: str | None = None) -> ProxyProcess:
    args = [sys.executable, str(SERVER)] + (["--auth", auth] if auth else [])
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("ready "), line
    return ProxyProcess(process, int(line.split()[1]))


@pytest.fixture
def proxy() -> Iterator[ProxyProcess]:
    started = start_proxy()
    yield started
    started.log()


@pytest.fixture
def guarded_proxy() -> Iterator[ProxyProcess]:
    started = start_proxy(auth="alice:s3cret")
    yield started
    started.log()


async def first(sock: ClientSocket, kind: type) -> object:
    with trio.fail_after(10):
        async for event in sock.events():
            if isinstance(event, kind):
                return event
    raise AssertionError(f"no {kind.__name__}")


# -- pure parts --------------------------------------------------------------------------


def test_the_environment_chooses_by_scheme_and_no_proxy_exempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("http_proxy", "http://plain:1")
    monkeypatch.setenv("https_proxy", "socks5h://secure:2")
    monkeypatch.setenv("no_proxy", "localhost,.internal")
    assert choose_proxy(parse_url("ws://h/"), True) == parse_proxy("http://plain:1")
    assert choose_proxy(parse_url("wss://h/"), True) == parse_proxy("socks5h://secure:2")
    assert choose_proxy(parse_url("ws://a.internal/"), True) is None
    assert choose_proxy(parse_url("ws://localhost:9/"), True) is None
    assert choose_proxy(parse_url("ws://h/"), None) is None
    monkeypatch.delenv("http_proxy")
    monkeypatch.setenv("all_proxy", "socks5://any:3")
    assert choose_proxy(parse_url("ws://h/"), True) == parse_proxy("socks5://any:3")


def test_no_proxy_forms() -> None:
    assert bypassed("h", 80, "*")
    assert bypassed("a.b.example", 80, "example")
    assert not bypassed("notexample", 80, "example")
    assert bypassed("h", 8080, "h:8080")
    assert not bypassed("h", 80, "h:8080")
    assert bypassed("192.168.1.5", 80, "192.168.0.0/16")
    assert not bypassed("192.169.1.5", 80, "192.168.0.0/16")
    assert bypassed("::1", 80, "[::1]")


def test_a_bad_proxy_url_is_refused_at_once_without_its_password() -> None:
    with pytest.raises(InvalidURLError, match="must start with") as info:
        ClientSocket("ws://h/", proxy="ftp://bob:hunter2@p/")
    assert "hunter2" not in str(info.value)
    with pytest.raises(TypeError):
        ClientSocket("ws://h/", proxy=3)  # type: ignore[arg-type]


def test_connect_request_carries_the_credentials_and_user_agent() -> None:
    request = connect_request(
        parse_url("ws://[::1]:8080/x"), parse_proxy("http://u:p@proxy"), "ua/1"
    )
    assert request == (
        b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n"
        b"Proxy-Authorization: Basic dTpw\r\nUser-Agent: ua/1\r\n\r\n"
    )


# -- through a real proxy ----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks5h"])
async def test_a_socket_goes_through_the_proxy(scheme: str, proxy: ProxyProcess) -> None:
    with trio.fail_after(20):
        async with open_mock_server(echo=True) as server:
            port = await server.listen_tcp()
            async with client_socket(
                f"ws://127.0.0.1:{port}/app/gxwebsocket?me",
                proxy=f"{scheme}://127.0.0.1:{proxy.port}",
                ping_interval=None,
            ) as sock:
                await sock.send("through")
                await sock.wait_sent()
                await server.wait_for(lambda: server.received == ["through"])
    kind = "http" if scheme == "http" else "socks5"
    assert f"tunnel {kind} 127.0.0.1:{port}" in proxy.log()


async def test_socks5h_leaves_the_name_to_the_proxy(proxy: ProxyProcess) -> None:
    with trio.fail_after(20):
        async with open_mock_server() as server:
            port = await server.listen_tcp()
            async with client_socket(
                f"ws://localhost:{port}/", proxy=f"socks5h://127.0.0.1:{proxy.port}"
            ) as sock:
                await sock.wait_connected()
    assert f"tunnel socks5 localhost:{port}" in proxy.log()


async def test_wss_goes_through_the_tunnel_with_tls_to_the_server(proxy: ProxyProcess) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_context = trio_ssl_server(cert)
    client_context = ca_context(ca)
    with trio.fail_after(20):
        async with open_mock_server(echo=True) as server:
            port = await server.listen_tcp(ssl_context=server_context)
            async with client_socket(
                f"wss://127.0.0.1:{port}/x",
                proxy=f"http://127.0.0.1:{proxy.port}",
                ssl_context=client_context,
            ) as sock:
                connected = await first(sock, Connected)
    assert isinstance(connected, Connected)
    assert f"tunnel http 127.0.0.1:{port}" in proxy.log()


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_credentials_are_sent_and_never_shown(
    scheme: str, guarded_proxy: ProxyProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{scheme}://alice:s3cret@127.0.0.1:{guarded_proxy.port}"
    with trio.fail_after(20):
        async with open_mock_server() as server:
            port = await server.listen_tcp()
            async with client_socket(f"ws://127.0.0.1:{port}/", proxy=url) as sock:
                await sock.wait_connected()
                shown = repr(sock) + repr(sock.statistics())
    assert any(line.startswith(f"tunnel {scheme}") for line in guarded_proxy.log())
    assert "s3cret" not in shown + caplog.text


@pytest.mark.parametrize("scheme", ["http", "socks5"])
@pytest.mark.parametrize("credentials", ["", "alice:wrong@"])
async def test_a_proxy_that_wants_credentials_is_a_fatal_clear_failure(
    scheme: str, credentials: str, guarded_proxy: ProxyProcess, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{scheme}://{credentials}127.0.0.1:{guarded_proxy.port}"
    with trio.fail_after(20):
        async with open_mock_server() as server:
            port = await server.listen_tcp()
            async with client_socket(f"ws://127.0.0.1:{port}/", proxy=url, reconnect=FAST) as s:
                failed = await first(s, ConnectionFailed)
    assert isinstance(failed, ConnectionFailed)
    assert isinstance(failed.error, ProxyRejected)
    assert failed.error.status_code == 407
    assert "refused the tunnel" in str(failed.error)
    assert failed.retry_in is None
    assert server.attempts == 0
    assert "wrong" not in str(failed.error) + caplog.text


async def test_a_proxy_that_is_down_is_retried(proxy: ProxyProcess) -> None:
    proxy.log()  # stopped: its port refuses
    with trio.fail_after(20):
        async with open_mock_server() as server:
            port = await server.listen_tcp()
            async with client_socket(
                f"ws://127.0.0.1:{port}/", proxy=f"http://127.0.0.1:{proxy.port}", reconnect=FAST
            ) as sock:
                failed = await first(sock, ConnectionFailed)
                assert isinstance(failed, ConnectionFailed)
                assert isinstance(failed.error, OSError)
                assert failed.retry_in is not None


async def test_the_environment_proxy_is_used_unless_no_proxy_says_otherwise(
    proxy: ProxyProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    with trio.fail_after(20):
        async with open_mock_server() as server:
            port = await server.listen_tcp()
            async with client_socket(f"ws://127.0.0.1:{port}/a") as sock:
                await sock.wait_connected()
            monkeypatch.setenv("no_proxy", "127.0.0.1")
            async with client_socket(f"ws://127.0.0.1:{port}/b") as sock:
                await sock.wait_connected()
    tunnels = [line for line in proxy.log() if line.startswith("tunnel")]
    assert tunnels == [f"tunnel http 127.0.0.1:{port}"]  # the second went direct
    assert [c.path for c in server.connections] == ["/a", "/b"]


def trio_ssl_server(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def ca_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
