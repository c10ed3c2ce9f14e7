"""Issue 19, items 13-15: the GeneXus helper and the command line never show a
secret; every change the testing kit records wakes ``wait_for``; ``connect``
runs with standard output closed, and reads a long line whole."""

from __future__ import annotations

import functools
import logging
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest
import trio

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    InvalidURLError,
    MessageReceived,
    NotificationInfo,
    genexus_endpoint,
)
from trio_clientsocket.testing import DEFAULT_URL, MockServer, ServerConnection, open_mock_server

from .conftest import client_socket, next_event_skip

SECRETS = ("pw-S3CRET", "tok-S3CRET", "frag-S3CRET")
CLI = [sys.executable, "-m", "trio_clientsocket"]
EXACT = Backoff(initial=1, factor=2, maximum=8, jitter=0)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked in: {text[:300]}"


# -- 13: the GeneXus helper --------------------------------------------------------

BAD_BASE_URLS = [
    # (base URL, what the error must say)
    ("http://alice:pw-S3CRET@h/app/?token=tok-S3CRET", "must not have a query"),
    ("https://tok-S3CRET@h/app/?token=tok-S3CRET", "must not have a query"),
    ("http://alice:pw-S3CRET@[::1]:8080/app/?token=tok-S3CRET", "must not have a query"),
    ("http://alice:pw-S3CRET@h/app/#frag-S3CRET", "or a fragment"),
    ("ftp://alice:pw-S3CRET@h/app/", "must be http://, https://"),
    ("ftp://tok-S3CRET@[::1]/app/?token=tok-S3CRET", "must be http://, https://"),
    ("http://alice:pw-S3CRET@[::1/app/", "malformed"),
    ("http://alice:pw-S3CRET\uff03@h/app/", "malformed"),  # urllib's error quotes the netloc
]


@pytest.mark.parametrize(("base", "says"), BAD_BASE_URLS)
def test_genexus_endpoint_errors_hide_secrets(base: str, says: str) -> None:
    with pytest.raises(ValueError, match="base URL") as caught:
        genexus_endpoint(base, "c1")
    assert says in str(caught.value)
    assert_clean(str(caught.value))
    assert_clean(repr(caught.value))


GOOD_BASE_URLS = [
    "http://alice:pw-S3CRET@h/app/",
    "https://tok-S3CRET@h:8443/app",
    "http://alice:pw-S3CRET@[::1]:8080/app/",
    "ws://tok-S3CRET@[fe80::1]/",
]


@pytest.mark.parametrize("base", GOOD_BASE_URLS)
def test_genexus_endpoint_repr_hides_secrets(base: str) -> None:
    endpoint = genexus_endpoint(base, "client-7")
    assert "pw-S3CRET" in endpoint.url or "tok-S3CRET" in endpoint.url  # the real one
    for text in (repr(endpoint), str(endpoint)):
        assert_clean(text)
        assert "gxwebsocket?client-7" in text  # the GeneXus id stays readable
        assert "***@" in text


async def test_a_socket_built_from_an_endpoint_logs_nothing_secret(
    caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint = genexus_endpoint("http://alice:pw-S3CRET@[::1]:8080/app/", "client-7")
    seen = [repr(endpoint)]
    async with open_mock_server(echo=True) as server:
        server.refuse(1)
        async with server.client(endpoint.url, headers=endpoint.headers, reconnect=EXACT) as sock:
            await sock.wait_connected()
            seen.append(repr(sock))
    assert server.connections[0].headers["authorization"].startswith("Basic ")
    for text in seen + [record.getMessage() for record in caplog.records]:
        assert_clean(text)
    assert "connected to ws://alice:***@[::1]:8080/app/gxwebsocket?client-7" in caplog.text


# -- 13: the command line ------------------------------------------------------------


async def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(
            [*CLI, *args], stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
        )


@pytest.mark.parametrize("flags", [[], ["--json"]])
async def test_cli_connect_shows_no_secret_of_any_url_shape(flags: list[str]) -> None:
    async with open_mock_server() as server:
        v4 = await server.listen_tcp()
        v6 = await server.listen_tcp("::1")
        urls = [
            f"http://alice:pw-S3CRET@127.0.0.1:{v4}/app/",
            f"http://tok-S3CRET@127.0.0.1:{v4}/app/",
            f"ws://127.0.0.1:{v4}/app/gxwebsocket?c1&token=tok-S3CRET",
            f"http://alice:pw-S3CRET@[::1]:{v6}/app/",
            f"ws://tok-S3CRET@[::1]:{v6}/app/gxwebsocket?c1&token=tok-S3CRET",
        ]
        for url in urls:
            client_id = ["--client-id", "c1"] if url.startswith("http") else []
            args = [url, *client_id, "--linger", "0", *flags]
            done = await run_cli("connect", *args, stdin=b"hi\n")
            output = done.stdout.decode() + done.stderr.decode()
            assert done.returncode == 0, output
            assert "connected" in output
            assert_clean(output)
    assert len(server.connections) == len(urls)


@pytest.mark.parametrize(
    ("args", "says"),
    [([base], says) for base, says in BAD_BASE_URLS if base.startswith("http")]
    + [
        (["ftp://alice:pw-S3CRET@h/app/"], "must start with ws:// or wss://"),
        (["ftp://tok-S3CRET@[::1]/app/?token=tok-S3CRET"], "must start with ws:// or wss://"),
        (["http://tok-S3CRET@[::1]:99999/app/"], "Port out of range"),
        (["ws://h/x", "--header", "Bearer tok-S3CRET"], "must look like 'Name: value'"),
        (["ws://h/x", "--header", ": tok-S3CRET"], "must look like 'Name: value'"),
    ],
)
async def test_cli_connect_errors_show_no_secret(args: list[str], says: str) -> None:
    done = await run_cli("connect", *args)
    errors = done.stderr.decode()
    assert done.returncode == 2, errors
    assert errors.startswith("error: "), errors
    assert errors.count("\n") == 1, errors
    assert says in errors
    assert_clean(errors + done.stdout.decode())


# -- 14: every change the testing kit records wakes wait_for ---------------------------


@pytest.mark.usefixtures("each_transport")
async def test_refused_attempts_wake_wait_for(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        server.refuse(10)
        async with client_socket(DEFAULT_URL, open_stream=server.open_stream, reconnect=EXACT):
            with trio.fail_after(3600):
                await server.wait_for(lambda: server.attempts >= 3)
            assert trio.current_time() == 1 + 2  # woken by the third attempt itself
            assert server.connections == []


async def test_refused_tcp_attempts_wake_wait_for() -> None:
    async with open_mock_server() as server:
        port = await server.listen_tcp()
        server.refuse(1000)
        fast = Backoff(initial=0.01, maximum=0.01, jitter=0)
        url = f"ws://127.0.0.1:{port}/gxwebsocket?tcp"
        async with client_socket(url, reconnect=fast):
            with trio.fail_after(10):
                await server.wait_for(lambda: server.attempts >= 3)
        assert server.connections == []


async def test_up_and_down_wake_wait_for(autojump_clock: object) -> None:
    """No connection at all: stop() and start() change nothing but ``up``."""
    woke: list[tuple[str, float]] = []
    async with open_mock_server() as server:

        async def wait(name: str, predicate: Callable[[], bool]) -> None:
            await server.wait_for(predicate)
            woke.append((name, trio.current_time()))

        with trio.fail_after(3600):
            async with trio.open_nursery() as nursery:  # ends when both waiters have woken
                nursery.start_soon(wait, "down", lambda: not server.up)
                await trio.sleep(5)
                await server.stop()
                await trio.sleep(5)
                nursery.start_soon(wait, "up", lambda: server.up)
                await trio.sleep(5)
                await server.start()
    assert woke == [("down", 5.0), ("up", 15.0)]


@pytest.mark.usefixtures("each_transport")
async def test_every_recorded_change_wakes_wait_for_at_once(autojump_clock: object) -> None:
    """Each waiter wakes at the mock instant its change is recorded, not at the
    next unrelated one."""
    handled: list[str] = []

    async def received(server: MockServer, connection: ServerConnection, info: object) -> None:
        await trio.sleep(7)  # the handler's own effect comes 7 s after the message
        handled.append("done")

    async with open_mock_server(received=received) as server:
        server.refuse(1)
        server.reject(503)
        woke: dict[str, float] = {}

        def first() -> ServerConnection:
            return server.connections[0]

        watched = {
            "attempt 1": lambda: server.attempts >= 1,
            "rejected": lambda: server.rejected == [503],
            "connection": lambda: len(server.connections) == 1,
            "received": lambda: server.received == ["m"],
            "handler": lambda: handled == ["done"],
            "ping": lambda: bool(server.connections) and first().pings == 1,
            "close code": lambda: bool(server.connections) and first().close_code == 1000,
            "closed": lambda: bool(server.connections) and not first().is_open,
        }
        async with trio.open_nursery() as nursery:
            for name, predicate in watched.items():

                async def wait(name: str = name, predicate: Callable[[], bool] = predicate) -> None:
                    await server.wait_for(predicate)
                    woke[name] = trio.current_time()

                nursery.start_soon(wait)
            async with client_socket(
                DEFAULT_URL,
                open_stream=server.open_stream,
                reconnect=EXACT,
                ping_interval=20,
                ping_timeout=20,
            ) as sock:
                await sock.wait_connected()  # refused at 0, rejected at 1, up at 3
                await sock.send("m")
                await trio.sleep(30)  # silence: a ping at 3 + 20
            # left at 3 + 30: the close handshake takes no mock time
        assert woke == {
            "attempt 1": 0.0,
            "rejected": 1.0,
            "connection": 3.0,
            "received": 3.0,
            "handler": 10.0,
            "ping": 23.0,
            "close code": 33.0,
            "closed": 33.0,
        }


# -- 15: connect with standard output closed; a long line ----------------------------


@pytest.mark.parametrize("flags", [[], ["--json"]])
async def test_connect_runs_with_standard_output_closed(flags: list[str]) -> None:
    """``connect URL >&-``: the lines are sent, the events (echoes) are
    discarded, exit 0, nothing on standard error."""
    async with open_mock_server(echo=True) as server:
        port = await server.listen_tcp()
        closed_stdout = ["sh", "-c", 'exec "$@" >&-', "sh", *CLI]
        with trio.fail_after(30):
            done = await trio.run_process(
                [*closed_stdout, "connect", f"ws://127.0.0.1:{port}/x", "--linger", "0", *flags],
                stdin=b"one\ntwo\n",
                capture_stderr=True,
                check=False,
            )
        assert (done.returncode, done.stderr) == (0, b"")
        assert server.received == ["one", "two"]
        assert server.connections[0].close_code == 1000


async def test_serve_runs_with_standard_output_closed() -> None:
    """``serve >&-``: it serves (a message is broadcast back), and SIGINT stops
    it with exit 0, nothing on standard error."""
    with socket.socket() as probe:  # a free port: serve cannot tell it with no output
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed_stdout = ["sh", "-c", 'exec "$@" >&-', "sh", *CLI]
    command = [*closed_stdout, "serve", "--port", str(port), "--db", ":memory:"]
    fast = Backoff(initial=0.05, maximum=0.05, jitter=0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            run = functools.partial(trio.run_process, command, stderr=subprocess.PIPE, check=False)
            server: trio.Process = await nursery.start(run)
            url = f"ws://127.0.0.1:{port}/app/gxwebsocket?c1"
            async with client_socket(url, reconnect=fast) as sock:
                await sock.send("hello")
                event = await next_event_skip(sock, MessageReceived)
            assert event.notification == NotificationInfo(id="c1", object="Chat", message="hello")
            server.send_signal(signal.SIGINT)
            assert await server.wait() == 0
            assert server.stderr is not None
            assert await server.stderr.receive_some() == b""


async def test_a_long_line_arrives_whole() -> None:
    """A 5 MB line of two-byte characters (cut across every read) with a CRLF
    end, then a short line, then a last line without a newline: each is one
    message, intact."""
    long_line = "x" + "é" * 2_500_000 + "!"  # odd offsets: 64 KiB reads cut characters
    data = (long_line + "\r\n" + "short\n" + "last").encode()
    async with open_mock_server() as server:
        port = await server.listen_tcp()
        done = await run_cli("connect", f"ws://127.0.0.1:{port}/x", "--linger", "0", stdin=data)
        assert done.returncode == 0, done.stderr
        with trio.fail_after(30):
            await server.wait_for(lambda: len(server.received) == 3)
    assert server.received[0] == long_line
    assert server.received[1:] == ["short", "last"]


# -- 13, found on the way: URLs that are not well formed --------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http:/alice:pw-S3CRET@h/app/?token=T0KEN-S3CRET",
        "//alice:pw-S3CRET@h/",
        "ws:alice:pw-S3CRET@h/",
        "ws://alice:pw-S3CRET\uff03x@h/",  # urllib's NFKC check quotes the host part
    ],
)
def test_a_malformed_url_shows_no_secret(url: str) -> None:
    """redact_url() returned a URL without "://" as it was, and parse_url()
    added urllib's reason, which may quote the host part, password and all."""
    with pytest.raises(InvalidURLError) as raised:
        ClientSocket(url)
    assert "S3CRET" not in str(raised.value)
    assert "S3CRET" not in repr(raised.value)
