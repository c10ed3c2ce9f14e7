"""Every bound and promise of the docs, attacked (issue 19: "Every bound and
promise in the docs is attacked by a test that tries to break it").

Each test is named after the promise it attacks and quotes it, with its page,
in its docstring. Promises that other test files already attack are listed in
the inventory kept outside the repository; this file holds the ones that no
test tried to break before. Public API only; every transport where the
transport matters; the mock clock where time matters.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trio.testing
import trustme

from trio_clientsocket import (
    AttemptError,
    Backoff,
    ClientSocket,
    Connected,
    ConnectionFailed,
    ConnectionLost,
    ConnectTimeout,
    HandshakeRejected,
    HandshakeResponse,
    KeepaliveTimeout,
    MessageReceived,
    OutboxFullError,
    ProtocolError,
    ProxyRejected,
    Skipped,
    Status,
    Undelivered,
    genexus_endpoint,
)
from trio_clientsocket.testing import MockServer, open_mock_server

from ._hostile_helpers import (
    Respond,
    drain,
    raw_server,
    request_key,
    server_frame,
    switching,
    tcp_server,
)
from .conftest import WrappedStream, client_socket, next_event_skip
from .test_cli import CLI, Lines

URL = "ws://app.test/app/gxwebsocket?client-1"
EACH = pytest.mark.usefixtures("each_transport")
"""Run the test on every transport."""


def to(
    server: MockServer, url: str | Callable[[], str] | None = URL, **options: object
) -> ClientSocket:
    """A socket on the current transport, wired to ``server`` in memory."""
    return client_socket(url, open_stream=server.open_stream, **options)


W = TypeVar("W", bound=trio.abc.Stream)


def wrapped(
    server: MockServer, wrap: Callable[[trio.abc.Stream], W], made: list[W] | None = None
) -> Callable[[str], Awaitable[trio.abc.Stream]]:
    """An ``open_stream`` that wraps each of ``server``'s streams with ``wrap``
    (and keeps them in ``made``)."""

    async def open_stream(url: str) -> trio.abc.Stream:
        stream = wrap(await server.open_stream(url))
        if made is not None:
            made.append(stream)
        return stream

    return open_stream


# -- the defaults, as the options table of index.md gives them --------------------


@EACH
async def test_default_connect_timeout_is_10_s(autojump_clock: object) -> None:
    """index.md, options: "`connect_timeout` | 10 s | one attempt: TCP + TLS +
    handshake"; resilience.md: "attempt slower than `connect_timeout` ...
    `ConnectTimeout` | yes" (retried)."""
    async with open_mock_server() as server:
        server.delay_handshake(1000)
        async with to(server) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
            assert trio.current_time() == 10.0
            assert isinstance(failed.error, ConnectTimeout)
            assert failed.retry_in is not None


@EACH
async def test_default_keepalive_takes_a_frozen_peer_for_dead_at_40_s(
    autojump_clock: object,
) -> None:
    """index.md, options: "`ping_interval`, `ping_timeout` | 20 s, 20 s";
    resilience.md: "A frozen peer is detected within `ping_interval +
    ping_timeout` of its last byte"."""
    async with open_mock_server() as server, to(server) as sock:
        await sock.wait_connected()
        server.stall()
        failed = await next_event_skip(sock, ConnectionFailed)
        assert isinstance(failed.error, KeepaliveTimeout)
        assert trio.current_time() == 40.0
        assert server.connections[0].pings == 0  # stalled: the ping was never read


@EACH
async def test_default_close_timeout_is_3_s(autojump_clock: object) -> None:
    """index.md, options: "`close_timeout` | 3 s | bound on flushing the outbox
    and the closing handshake"."""
    async with open_mock_server() as server:
        async with to(server, ping_interval=None) as sock:
            await sock.wait_connected()
            server.stall()
            await sock.send("never read")
            leaving = trio.current_time()
        assert trio.current_time() - leaving == 3.0
        assert sock.status is Status.DISCONNECTED


async def test_default_outbox_holds_1000_messages(autojump_clock: object) -> None:
    """index.md, options: "`outbox_size`, `overflow` | 1000, `"wait"`";
    resilience.md: "`send_nowait()` raises `OutboxFullError` rather than wait"."""
    async with open_mock_server() as server:
        server.up = False
        async with to(server) as sock:
            for i in range(1000):
                sock.send_nowait(f"m{i}")
            assert sock.statistics().outbox_depth == 1000
            with pytest.raises(OutboxFullError):
                sock.send_nowait("one too many")
            with trio.move_on_after(60) as waited:  # overflow="wait": send() waits
                await sock.send("one too many")
            assert waited.cancelled_caught
            assert await sock.close() == tuple(f"m{i}" for i in range(1000))


async def test_default_backoff_waits_1_2_4_to_30_s_each_shortened_by_at_most_half(
    autojump_clock: object,
) -> None:
    """index.md, options: "`reconnect` | `Backoff()` | reconnect policy: 1 s
    doubling to 30 s, each wait shortened by up to 50 % at random, forever";
    resilience.md: "0.5-1 s, 1-2 s, 2-4 s, ... 15-30 s"."""
    async with open_mock_server() as server:
        server.refuse(12)
        async with to(server) as sock:
            waits: list[float] = []
            for _ in range(12):
                failed = await next_event_skip(sock, ConnectionFailed)
                assert failed.retry_in is not None
                waits.append(failed.retry_in)
            await sock.wait_connected()
    for n, wait in enumerate(waits, start=1):
        base = min(30.0, 2.0 ** (n - 1))
        assert base / 2 <= wait <= base, (n, wait)
    assert server.attempts == 13


@EACH
async def test_default_event_buffer_holds_256_messages(autojump_clock: object) -> None:
    """index.md, options: "`event_buffer` | 256 | events buffered for
    `events()`; when full the socket stops reading (backpressure)"."""
    async with open_mock_server() as server, to(server, ping_interval=None) as sock:
        connection = await server.wait_connections(1)
        for i in range(400):
            await connection.send(f"m{i}")
        await trio.testing.wait_all_tasks_blocked()
        assert sock.statistics().messages_received == 256


@EACH
async def test_default_buffer_bytes_is_8_mib_less_one_message_of_the_limit(
    autojump_clock: object,
) -> None:
    """resilience.md: "Received messages wait in the event buffer, up to
    `event_buffer` (256) events or `buffer_bytes` (8 MiB) of messages ...
    the socket parses the server's bytes only while a message of
    `max_message_size` still fits after what it has parsed"."""
    size = 64 * 1024
    async with open_mock_server() as server, to(server, ping_interval=None) as sock:
        connection = await server.wait_connections(1)
        for _ in range(200):
            await connection.send("x" * size)
        await trio.testing.wait_all_tasks_blocked()
        held = sock.statistics().messages_received * size
        assert 7 * 2**20 - size < held <= 7 * 2**20


# -- keepalive ---------------------------------------------------------------------


@EACH
async def test_a_ping_goes_only_after_ping_interval_without_a_byte_from_the_server(
    autojump_clock: object,
) -> None:
    """resilience.md: "After `ping_interval` (20 s) without a byte from the
    server, the socket sends a ping"; reference, ``ping_interval``: "seconds
    without a byte from the server after which a keepalive ping goes"."""
    async with open_mock_server() as server, to(server) as sock:
        connection = await server.wait_connections(1)
        for _ in range(6):  # a message every 15 s: never 20 s of silence
            await trio.sleep(15)
            await connection.send("still here")
        assert trio.current_time() == 90.0
        await server.wait_for(lambda: connection.pings == 1)
        assert trio.current_time() == 110.0  # 20 s after the last byte
        assert sock.status is Status.CONNECTED


@EACH
async def test_any_byte_within_ping_timeout_is_a_sign_of_life(autojump_clock: object) -> None:
    """resilience.md: "if no byte at all arrives within `ping_timeout` (20 s)
    of the ping going out, the peer is dead"; reference, ``ping_timeout``:
    "within which something must come in". A server that never answers a ping
    but keeps talking is alive."""

    async def talk_but_never_pong(stream: trio.abc.Stream, request: bytes) -> None:
        await stream.send_all(switching(request_key(request)))
        for i in range(20):  # never reads: the pings are never answered
            await trio.sleep(8)
            await stream.send_all(server_frame(0x1, f"m{i}".encode()))
        await trio.sleep_forever()

    async with raw_server(talk_but_never_pong) as server:
        options = {"ping_interval": 5, "ping_timeout": 10, "reconnect": None}
        async with client_socket(URL, open_stream=server.open_stream, **options) as sock:
            await sock.wait_connected()
            got: list[str | bytes] = []
            async for event in sock.events():
                assert not isinstance(event, ConnectionFailed), event
                if isinstance(event, MessageReceived):
                    got.append(event.message)
                    if len(got) == 20:
                        break
            assert trio.current_time() == 160.0
            assert sock.status is Status.CONNECTED
    assert server.attempts == 1


@EACH
async def test_ping_timeout_none_alone_disables_keepalive(autojump_clock: object) -> None:
    """resilience.md: "Set either option to `None` to disable keepalive"
    (``ping_interval=None`` alone is tested in test_keepalive.py)."""
    async with open_mock_server() as server, to(server, ping_timeout=None) as sock:
        await sock.wait_connected()
        server.stall()
        await trio.sleep(1000)
        assert sock.status is Status.CONNECTED
        assert sock.statistics().attempts == 1
        server.resume()
        await trio.testing.wait_all_tasks_blocked()
    assert server.connections[0].pings == 0


# -- hostile frames ------------------------------------------------------------------


def fragmented(count: int) -> bytes:
    """A text message "az" in ``count`` frames: "a", empty continuations, "z"."""
    middle = server_frame(0x0, b"", fin=False) * (count - 2)
    return server_frame(0x1, b"a", fin=False) + middle + server_frame(0x0, b"z")


@EACH
@pytest.mark.parametrize(("max_size", "most"), [(1024, 1024), (128 * 1024, 8192)])
async def test_a_message_of_more_fragments_than_max_size_over_16_closes_1009(
    max_size: int, most: int, autojump_clock: object
) -> None:
    """security.md: "A message of too many fragments (more than
    `max_message_size / 16`, at least 1,024) closes the connection with 1009";
    resilience.md: "message over `max_message_size` bytes, or of too many
    fragments | `ConnectionLost(1009)` | yes". (comparison.md says the
    trio-websocket transport cuts such a message off without a close frame:
    it now closes with 1009 like the others.)"""
    async with open_mock_server() as server:
        async with to(server, max_message_size=max_size, ping_interval=None) as sock:
            connection = await server.wait_connections(1)
            await connection.send_raw(fragmented(most))
            assert (await next_event_skip(sock, MessageReceived)).message == "az"
            await connection.send_raw(fragmented(most + 1))
            failed = await next_event_skip(sock, ConnectionFailed)
            assert isinstance(failed.error, ConnectionLost)
            assert (failed.error.code, failed.error.by_server) == (1009, False)
            assert failed.retry_in is not None
            await sock.wait_connected()
    assert connection.close_code == 1009
    assert len(server.connections) == 2


@EACH
async def test_a_server_close_with_1009_is_reported_with_its_code_by_the_server(
    autojump_clock: object,
) -> None:
    """comparison.md, transports: "a server's close code 1009 | reported with
    its code, by the server"; resilience.md: "A close frame *from the server*
    is a `ConnectionLost(code, by_server=True)` whatever its code". (The same
    table says the trio-websocket transport reports it like a message too
    big: it now says who closed, like the others.)"""
    async with open_mock_server() as server, to(server, ping_interval=None) as sock:
        await sock.wait_connected()
        await server.close_all(1009, "too big for me")
        failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error, ConnectionLost)
    assert (failed.error.code, failed.error.reason, failed.error.by_server) == (
        1009,
        "too big for me",
        True,
    )


# -- the handshake answer ----------------------------------------------------------------


async def early_hints_then_switch(stream: trio.abc.Stream, request: bytes) -> None:
    await stream.send_all(b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n")
    await stream.send_all(switching(request_key(request)))
    await trio.sleep_forever()


@EACH
async def test_103_early_hints_before_the_101_are_skipped(autojump_clock: object) -> None:
    """resilience.md: "Informational answers (`100 Continue`, `103 Early
    Hints`) before the 101 are skipped" (100 is tested in test_hostile.py)."""
    async with raw_server(early_hints_then_switch) as server:
        async with client_socket(URL, open_stream=server.open_stream, reconnect=None) as sock:
            connected = await sock.events().receive()
            assert isinstance(connected, Connected), connected
            assert connected.response is not None
            assert connected.response.status == 101
            assert connected.response.header("link") is None  # the 103's, not the answer's
    assert server.attempts == 1


def answer_with_a_head_of(size: int) -> Respond:
    """A valid 101 answer whose status line and headers take ``size`` bytes."""

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        head = switching(request_key(request))[: -len(b"\r\n\r\n")] + b"\r\nX-Pad: "
        await stream.send_all(head + b"p" * (size - len(head)) + b"\r\n\r\n")
        await trio.sleep_forever()

    return respond


@EACH
@pytest.mark.parametrize(("size", "connects"), [(16 * 1024, True), (16 * 1024 + 1, False)])
async def test_the_answer_headers_may_take_16_kib_and_no_more(
    size: int, connects: bool, autojump_clock: object
) -> None:
    """security.md: "The handshake answer's headers may take 16 KiB; a longer
    head is a `ProtocolError`"; resilience.md: "headers over 16 KiB |
    `ProtocolError` | yes" (retried)."""
    async with raw_server(answer_with_a_head_of(size)) as server:
        async with client_socket(URL, open_stream=server.open_stream) as sock:
            event = await sock.events().receive()
    if connects:
        assert isinstance(event, Connected), event
        return
    assert isinstance(event, ConnectionFailed), event
    assert isinstance(event.error, ProtocolError)
    assert event.error.code is None  # in the handshake: no close frame
    assert "16384" in str(event.error)
    assert event.retry_in is not None
    assert trio.current_time() == 0.0


async def unavailable_with_an_endless_body(stream: trio.abc.Stream, request: bytes) -> None:
    await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(100_000):  # bounded: 1000 s of mock time
        await stream.send_all(b"1000\r\n" + b"x" * 4096 + b"\r\n")
        await trio.sleep(0.01)


@EACH
async def test_a_retried_rejection_is_decided_by_its_status_line_not_its_body(
    autojump_clock: object,
) -> None:
    """resilience.md: "HTTP 5xx, 408, 429 in the handshake (the status line
    decides; the body is not read) | `HandshakeRejected` | yes"; reference,
    HandshakeRejected: "the socket does not wait for the body". (The fatal
    401 case is in test_hostile.py.)"""
    async with raw_server(unavailable_with_an_endless_body) as server:
        async with client_socket(URL, open_stream=server.open_stream) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
            assert trio.current_time() == 0.0  # not connect_timeout, not the body's end
            assert isinstance(failed.error, HandshakeRejected)
            assert failed.error.status_code == 503
            assert failed.retry_in is not None
            await next_event_skip(sock, ConnectionFailed)  # and it tries again
    assert server.attempts >= 2


# -- secrets and logging -------------------------------------------------------------------

SECRETS = ("PW-S3CRET", "TOKEN-S3CRET", "KEY-S3CRET", "BEARER-S3CRET", "BODY-S3CRET")


@EACH
async def test_header_values_and_message_bodies_never_appear_in_any_log_record(
    caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    """security.md: "Header values never appear anywhere ... The websockets
    library's own debug log, which would show the request line, is not used";
    "each failed attempt at WARNING (with the redacted URL); message bodies
    are never logged"; "status changes at INFO". Every logger, at DEBUG, on
    every transport (test_secrets.py scans the default transport)."""
    caplog.set_level(logging.DEBUG)
    url = "ws://alice:PW-S3CRET@app.test/app/gxwebsocket?client-1&token=TOKEN-S3CRET"
    headers = {"X-Api-Key": "KEY-S3CRET", "Authorization": "Bearer BEARER-S3CRET"}
    async with open_mock_server(echo=True) as server:
        server.refuse(1)
        server.reject(503)
        options = {"headers": headers, "ping_interval": 1, "ping_timeout": 1}
        async with to(server, url, **options) as sock:
            await sock.wait_connected()
            await sock.send("BODY-S3CRET out")
            await server.connections[0].send("BODY-S3CRET in")
            while (await next_event_skip(sock, MessageReceived)).message != "BODY-S3CRET in":
                pass
            await trio.sleep(3)  # keepalive pings and pongs
            await server.close_all(1011, "restarting")
            await next_event_skip(sock, Connected)
    assert server.connections[0].headers["x-api-key"] == "KEY-S3CRET"  # they were sent
    for record in caplog.records:
        for secret in SECRETS:
            assert secret not in record.getMessage(), (record.name, record.getMessage())
        assert not record.name.startswith("websockets"), record.getMessage()
    ours = [r for r in caplog.records if r.name == "trio_clientsocket"]
    redacted = "ws://alice:***@app.test/app/gxwebsocket?client-1&token=***"
    warnings = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    assert len(warnings) >= 2  # the refusal and the 503, at least
    assert all(redacted in text for text in warnings[:2]), warnings
    infos = [r.getMessage() for r in ours if r.levelno == logging.INFO]
    assert any("Connected" in text for text in infos), infos
    assert any("Disconnected" in text for text in infos), infos


@EACH
async def test_a_rejection_shows_no_header_value_of_the_server_in_its_text(
    autojump_clock: object,
) -> None:
    """security.md: "Reprs ... event fields ... exception messages ... Header
    values never appear anywhere"; reference, HandshakeResponse: "Its repr
    hides the values of headers that may hold secrets". A 401 that sets a
    cookie: its text and the event's say nothing of it (the values stay
    readable in ``HandshakeRejected.headers``)."""

    async def unauthorized(stream: trio.abc.Stream, request: bytes) -> None:
        await stream.send_all(
            b"HTTP/1.1 401 Unauthorized\r\nSet-Cookie: sid=TOKEN-S3CRET\r\n"
            b"X-Auth-Token: KEY-S3CRET\r\nContent-Length: 0\r\n\r\n"
        )
        await trio.sleep_forever()

    async with raw_server(unauthorized) as server:
        async with client_socket(URL, open_stream=server.open_stream) as sock:
            failed = await next_event_skip(sock, ConnectionFailed)
    assert isinstance(failed.error, HandshakeRejected)
    assert failed.retry_in is None
    assert ("set-cookie", "sid=TOKEN-S3CRET") in failed.error.headers
    for text in (repr(failed), str(failed), repr(failed.error), str(failed.error)):
        for secret in SECRETS:
            assert secret not in text, text


# -- the life of a socket ---------------------------------------------------------------


@EACH
async def test_after_a_redirect_the_next_reconnect_starts_from_the_url_given(
    autojump_clock: object,
) -> None:
    """security.md, redirects: "`Connected.url` shows where the connection
    went; the next reconnect starts from the URL given again"."""
    async with open_mock_server() as server:
        server.redirect("ws://app.test/moved/gxwebsocket?client-1")
        async with to(server, "ws://app.test/start/gxwebsocket?client-1") as sock:
            first = await next_event_skip(sock, Connected)
            assert first.url == "ws://app.test/moved/gxwebsocket?client-1"
            await server.drop_all()
            again = await next_event_skip(sock, Connected)
            assert again.url == "ws://app.test/start/gxwebsocket?client-1"
    assert [c.path for c in server.connections] == [
        "/moved/gxwebsocket?client-1",
        "/start/gxwebsocket?client-1",
    ]
    assert server.rejected == [302]


@EACH
@pytest.mark.parametrize("proxy", [True, "http://127.0.0.1:9", "socks5h://127.0.0.1:9"])
async def test_no_proxy_is_used_with_open_stream(
    proxy: bool | str, monkeypatch: pytest.MonkeyPatch, autojump_clock: object
) -> None:
    """reference, ClientSocket ``proxy``: "Not used with ``open_stream``" (the
    environment names a proxy that does not exist)."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    async with open_mock_server() as server:
        async with to(server, proxy=proxy, reconnect=None) as sock:
            event = await sock.events().receive()
    assert isinstance(event, Connected), event
    assert server.attempts == 1


@EACH
async def test_open_returns_at_once_and_url_shows_each_attempt_redacted(
    autojump_clock: object,
) -> None:
    """reference, ``open()``: "Returns at once; `Connected` or
    `ConnectionFailed` tell how it went"; ``url``: "The URL of the current
    (or last) attempt, for display: a password and query values are shown as
    ``***``. None before any attempt"; ``raw_url``: "as it is, secrets
    included"."""
    async with open_mock_server() as server:
        server.delay_handshake(5)
        async with to(server, None) as sock:
            assert (sock.url, sock.raw_url) == (None, None)
            await sock.open("ws://bob:pw@app.test/a?client-1&token=t0k")
            assert trio.current_time() == 0.0  # not after the 5 s handshake
            assert sock.url == "ws://bob:***@app.test/a?client-1&token=***"
            assert sock.raw_url == "ws://bob:pw@app.test/a?client-1&token=t0k"
            await sock.wait_connected()
            assert trio.current_time() == 5.0
            await sock.open("ws://other.test/b?key=k3y")
            assert sock.url == "ws://other.test/b?key=***"
            assert sock.raw_url == "ws://other.test/b?key=k3y"


@EACH
async def test_open_of_another_url_reports_closed_as_the_last_event_of_the_connection(
    autojump_clock: object,
) -> None:
    """reference, Closed: "The socket was closed by ``close()``, ``open()`` of
    another URL, or leaving the ``async with`` block. It is the last event of
    that connection"; ``open()``: "closing the current connection first,
    cleanly with 1000"."""
    async with open_mock_server(echo=True) as server, to(server, "ws://one.test/a?k=1") as sock:
        await sock.wait_connected()
        await sock.send("to one")
        await server.wait_for(lambda: server.received == ["to one"])
        await sock.open("ws://two.test/b")
        assert server.connections[0].close_code == 1000
        await sock.wait_connected()
        kinds = []
        while True:
            event = await sock.events().receive()
            kinds.append(type(event).__name__)
            if kinds[-2:] == ["Closed", "Connected"]:
                break
        assert isinstance(event, Connected)
        assert event.url == "ws://two.test/b"
    assert kinds == ["Connected", "MessageReceived", "Closed", "Connected"]


@EACH
async def test_wait_sent_waits_only_for_messages_sent_since_the_last_open(
    autojump_clock: object,
) -> None:
    """resilience.md: "`wait_sent()` returns once every message sent before
    the call (since the last `open()`) has been written"."""
    async with open_mock_server() as server:
        server.up = False
        async with to(server) as sock:
            await sock.send("left behind")
            assert await sock.close() == ("left behind",)
            server.up = True
            await sock.open()
            await sock.wait_sent()  # the message of the last session is not awaited
            assert trio.current_time() == 0.0
            await sock.send("new")
            await sock.wait_sent()
    assert server.received == ["new"]


@EACH
async def test_the_socket_never_outlives_its_block(autojump_clock: object) -> None:
    """embedding.md: "its tasks live in a nursery that the `async with` block
    owns, so the socket can never outlive the code that uses it"."""
    calls: list[float] = []

    def url() -> str:
        calls.append(trio.current_time())
        return URL

    async with open_mock_server() as server:
        server.refuse(1000)
        async with to(server, url, reconnect=Backoff(initial=1, jitter=0)) as sock:
            await server.wait_for(lambda: server.attempts == 3)
        attempts, called = server.attempts, len(calls)
        await trio.sleep(1000)
        assert (server.attempts, len(calls)) == (attempts, called) == (3, 3)
        assert not sock.is_open
        drain(sock)  # the buffered events; then the stream has ended
        with pytest.raises(trio.EndOfChannel):
            await sock.events().receive()


# -- statistics and the reserve of reports --------------------------------------------------


class HeldUplink(WrappedStream):
    """A client stream whose writes of 64 KiB or more never complete (a peer
    that stopped reading, its TCP window full); smaller ones go through."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= 64 * 1024:
            await trio.sleep_forever()
        await self.inner.send_all(data)


@EACH
async def test_statistics_count_what_the_reference_says(autojump_clock: object) -> None:
    """reference, SocketStatistics: "attempts: Connection attempts made since
    the socket was entered"; "reconnects: Successful handshakes after the first
    one"; "bytes_sent: Bytes written to the wire (frames and handshakes
    included)"; "outbox_depth: Messages waiting in the outbox (the one being
    written included)"; "last_error: The error of the last
    ``ConnectionFailed``"; resilience.md: "`statistics()` returns a frozen
    snapshot"."""
    async with open_mock_server() as server:
        open_stream = wrapped(server, HeldUplink)
        server.refuse(1)
        options = {"ping_interval": None, "reconnect": Backoff(initial=1, jitter=0)}
        async with client_socket(URL, open_stream=open_stream, **options) as sock:
            await sock.wait_connected()
            stats = sock.statistics()
            assert (stats.attempts, stats.reconnects) == (2, 0)
            assert isinstance(stats.last_error, ConnectionRefusedError)
            assert stats.bytes_sent > 100  # the handshake's request
            assert stats.bytes_received > 100  # and its answer
            assert stats.messages_sent == stats.messages_received == 0
            with pytest.raises(AttributeError):
                stats.attempts = 0  # type: ignore[misc]
            await sock.send(b"\x00" * 100_000)  # the writer takes it; it never completes
            await trio.testing.wait_all_tasks_blocked()
            assert sock.statistics().outbox_depth == 1
            await sock.close()  # reports it, after close_timeout
            await sock.open()
            await sock.wait_connected()
            await server.drop_all()
            await server.wait_connections(3)
            await sock.wait_connected()
            await trio.testing.wait_all_tasks_blocked()
            stats = sock.statistics()
    assert stats.attempts == 4  # across open(): since the socket was entered
    assert stats.reconnects == 1  # counted from the last open(): the drop's
    assert isinstance(stats.last_error, ConnectionLost)
    assert stats.outbox_depth == 0
    assert stats.messages_dropped == 1
    # a snapshot: it kept what it saw while the socket moved on
    assert (stats.status, sock.statistics().status) == (Status.CONNECTED, Status.DISCONNECTED)


@pytest.mark.parametrize(("event_buffer", "kept"), [(1, 1 + 8), (20, 20 + 20), (100, 100 + 64)])
async def test_the_reserve_keeps_as_many_reports_as_event_buffer_between_8_and_64(
    event_buffer: int, kept: int, autojump_clock: object
) -> None:
    """resilience.md: "Connection reports ... never wait: when the buffer is
    full they go into a reserve (as many as `event_buffer`, between 8 and 64).
    Past that, the oldest `Connected` and retried `ConnectionFailed` are
    dropped first; a `Skipped(count)` event in the stream and
    `statistics().events_dropped` count them"; reference, Skipped: "this event
    comes before the reports that were kept"."""
    fast = Backoff(initial=0.01, maximum=0.01, jitter=0)
    async with open_mock_server() as server:
        server.refuse(1000)
        async with to(server, event_buffer=event_buffer, reconnect=fast) as sock:
            await server.wait_for(lambda: server.attempts == 300)
            await trio.testing.wait_all_tasks_blocked()
            dropped = sock.statistics().events_dropped
            events = drain(sock)
    reports = [e for e in events if isinstance(e, ConnectionFailed)]
    skipped = [(i, e) for i, e in enumerate(events) if isinstance(e, Skipped)]
    assert len(reports) == kept
    assert dropped == 300 - kept
    assert [e.count for _, e in skipped] == [dropped]
    # the buffer's reports first, then Skipped, then the reserve's
    assert skipped[0][0] == event_buffer


# -- a peer that stops reading; a send cancelled part-way -------------------------------


@EACH
async def test_a_write_that_makes_no_progress_for_ping_timeout_is_a_dead_peer(
    autojump_clock: object,
) -> None:
    """resilience.md, keepalive: "A write that makes no progress ... for
    `ping_interval + ping_timeout` while the server keeps sending (and so keeps
    the ping away)" is a dead peer too (a half-open peer: its reader is stuck,
    its TCP window full, while its broadcasts still come)."""
    async with open_mock_server() as server:
        open_stream = wrapped(server, HeldUplink)
        options = {"ping_interval": 10, "ping_timeout": 5, "reconnect": None}
        async with client_socket(URL, open_stream=open_stream, **options) as sock:
            connection = await server.wait_connections(1)
            start = trio.current_time()
            await sock.send(b"\x00" * 100_000)  # never makes any progress
            failed: ConnectionFailed | None = None
            with trio.move_on_after(200):
                for i in range(100):  # the server keeps talking, every 3 s
                    await trio.sleep(3)
                    await connection.send(f"broadcast {i}")
                    for event in drain(sock):
                        if isinstance(event, ConnectionFailed):
                            failed = event
                    if failed is not None:
                        break
        assert failed is not None, "still Connected after 200 s of a write going nowhere"
        assert isinstance(failed.error, KeepaliveTimeout)
        # found within interval + patience, plus the 3 s between the looks here
        assert trio.current_time() <= start + 10 + 5 + 3


class SlowUplink(WrappedStream):
    """A client stream that takes 2000 bytes every 0.1 s."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(bytes(data))
        for start in range(0, len(view), 2000):
            await self.inner.send_all(view[start : start + 2000])
            await trio.sleep(0.1)


@EACH
async def test_a_send_cancelled_part_way_ends_the_connection_and_reports_it(
    autojump_clock: object,
) -> None:
    """performance.md, sending: "A `send()` cancelled before its frame is written
    queues nothing; one cancelled part-way through its frame ends the connection
    ... and reports the message `Undelivered` ("in flight")"."""
    async with open_mock_server() as server:
        open_stream = wrapped(server, SlowUplink)
        async with client_socket(URL, open_stream=open_stream, ping_interval=None) as sock:
            await sock.wait_connected()
            with trio.move_on_after(0.25):  # 10 KB: written directly, 2 of 5 pieces out
                await sock.send("A" * 10_000)
            await sock.send("after")
            await server.wait_for(lambda: "after" in server.received)
            events = drain(sock)
    lost = [e for e in events if isinstance(e, Undelivered)]
    assert [(e.messages, e.reason) for e in lost] == [(("A" * 10_000,), "in flight")]
    assert any(isinstance(e, ConnectionFailed) for e in events), events
    assert len(server.connections) == 2
    assert server.connections[1].received == ["after"]
    assert "A" * 10_000 not in server.received


# -- the testing kit (testing.md and the reference of trio_clientsocket.testing) ------------


async def test_the_kit_records_only_the_requests_own_headers(autojump_clock: object) -> None:
    """testing.md: "`connection.headers` | the request's own headers (not
    Upgrade, Sec-WebSocket-Key...), names in lower case"."""
    async with open_mock_server() as server:
        async with server.client(headers={"X-Mine": "1"}) as sock:
            await sock.wait_connected()
    headers = server.connections[0].headers
    assert headers["x-mine"] == "1"
    assert "user-agent" in headers
    protocol = {"upgrade", "connection", "sec-websocket-key", "sec-websocket-version"}
    assert not protocol & set(headers), sorted(headers)


@EACH
async def test_the_kit_records_each_connection_as_documented(autojump_clock: object) -> None:
    """testing.md: "`connection.client_id` | the GeneXus client id: the raw
    query string, or None"; "`connection.close_code` | ... None while open and
    after a drop"; "`connection.opened_at`, `connection.closed_at` |
    `trio.current_time()` of both ends"; reference, MockServer.subprotocols:
    "it picks the first of the client's offer among them"."""
    async with open_mock_server() as server:
        server.subprotocols = ("v2", "v1")
        async with to(server, "ws://h/x", subprotocols=["v1", "v2"]) as sock:
            connected = await next_event_skip(sock, Connected)
            assert connected.subprotocol == "v1"
            first = server.connections[0]
            assert (first.client_id, first.path, first.opened_at) == (None, "/x", 0.0)
            assert (first.close_code, first.closed_at) == (None, None)
            await trio.sleep(2)
            await first.drop()
            await server.wait_connections(2)
            assert (first.close_code, first.closed_at) == (None, 2.0)
            await trio.sleep(3)
        second = server.connections[1]
        assert (second.close_code, second.closed_at) == (1000, second.opened_at + 3)


async def test_the_kit_applies_faults_to_the_next_attempts_in_the_order_given(
    autojump_clock: object,
) -> None:
    """testing.md: "Faults are plain calls that apply to the next attempts, in
    the order given"; "`server.rejected` | HTTP statuses answered to handshakes
    not accepted (rejections, redirects)"; "`server.attempts` | connection
    attempts, refused ones included"."""
    async with open_mock_server() as server:
        server.refuse(1)
        server.reject(503)
        server.accept_then_close(4000)
        server.redirect("ws://h/moved", 1, status=307)
        server.delay_handshake(7)
        async with to(server, "ws://h/x", reconnect=Backoff(initial=1, jitter=0)) as sock:
            seen = []
            async for event in sock.events():
                seen.append((trio.current_time(), type(event).__name__))
                if isinstance(event, Connected) and event.url == "ws://h/moved":
                    break
            assert sock.statistics().attempts == 4  # the redirect is followed in one attempt
    assert seen == [
        (0.0, "ConnectionFailed"),  # refused
        (1.0, "ConnectionFailed"),  # 503
        (3.0, "Connected"),
        (3.0, "ConnectionFailed"),  # closed at once with 4000
        (14.0, "Connected"),  # 4 s of backoff, a 307, a handshake held 7 s
    ]
    assert server.rejected == [503, 307]
    assert server.attempts == 5  # the redirected request came on a connection of its own
    assert [c.path for c in server.connections] == ["/x", "/moved"]


@EACH
async def test_a_stalled_kit_holds_new_handshakes_and_reads_what_waited_in_order(
    autojump_clock: object,
) -> None:
    """testing.md: "`server.stall()` / `server.resume()` | stop reading and
    answering pings (a frozen process); new handshakes wait too"; reference,
    resume: "what waited is read now, in order"."""
    async with open_mock_server() as server, to(server, ping_interval=None) as sock:
        await sock.wait_connected()
        server.stall()
        for i in range(3):
            await sock.send(f"m{i}")
        async with to(server, connect_timeout=5, reconnect=None) as late:
            failed = await next_event_skip(late, ConnectionFailed)
            assert isinstance(failed.error, ConnectTimeout)
        assert server.received == []
        server.resume()
        await server.wait_for(lambda: len(server.received) == 3)
        assert server.received == ["m0", "m1", "m2"]


@EACH
async def test_the_gxwebsocket_endpoint_answers_404_to_other_paths_and_400_without_an_id(
    autojump_clock: object,
) -> None:
    """testing.md: "`open_mock_server(endpoint="gxwebsocket")` makes it behave
    as a GeneXus server does with its endpoint: 404 for another path, 400
    without a client id"; reference, MockServer: "it accepts only
    ``.../gxwebsocket?<id>`` (and ``gxwebsocket.svc``)"."""
    outcomes: list[int | str] = []
    async with open_mock_server(endpoint="gxwebsocket") as server:
        for url in (
            "ws://h/app/other?c1",
            "ws://h/app/gxwebsocket",
            "ws://h/app/gxwebsocket.svc?c2",
            "ws://h/app/gxwebsocket?c3",
        ):
            async with to(server, url, reconnect=None) as sock:
                event = await sock.events().receive()
                if isinstance(event, ConnectionFailed):
                    assert isinstance(event.error, HandshakeRejected)
                    outcomes.append(event.error.status_code)
                else:
                    outcomes.append(type(event).__name__)
    assert outcomes == [404, 400, "Connected", "Connected"]
    assert [c.client_id for c in server.connections] == ["c2", "c3"]


# -- TLS, the offer of compression ----------------------------------------------------------


@EACH
async def test_a_tls_failure_other_than_a_certificate_is_fatal() -> None:
    """reference, Classifier: "TLS certificate or other TLS protocol failure |
    no" (not retried). A server that answers the ClientHello in plain HTTP."""

    async def plain_http(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await trio.sleep(10)

    with trio.fail_after(10):
        async with tcp_server(plain_http) as port:
            async with client_socket(f"wss://127.0.0.1:{port}/x", proxy=None) as sock:
                failed = await next_event_skip(sock, ConnectionFailed)
                assert not sock.is_open
    assert isinstance(failed.error, ssl.SSLError)
    assert not isinstance(failed.error, ssl.SSLCertVerificationError)
    assert failed.retry_in is None


@EACH
async def test_the_deflate_offer_asks_for_a_4_kib_window_and_no_client_context(
    each_transport: str, autojump_clock: object
) -> None:
    """reference, Deflate: "the client compresses each message on its own
    (``client_no_context_takeover``) ... and asks the server for a 4 KiB window
    (``server_max_window_bits=12``)"; comparison.md: "permessage-deflate |
    offered by default | the same | none" (trio-websocket)."""
    requests: list[bytes] = []

    async def record(stream: trio.abc.Stream, request: bytes) -> None:
        requests.append(request)
        await stream.send_all(switching(request_key(request)))
        await trio.sleep_forever()

    async with raw_server(record) as server:
        async with client_socket(URL, open_stream=server.open_stream) as sock:
            await next_event_skip(sock, Connected)
            assert not sock.statistics().compressed  # the server declined it
    offers = [
        line.split(b":", 1)[1].strip()
        for line in requests[0].split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-extensions:")
    ]
    if each_transport == "trio-websocket":
        assert offers == []
        return
    assert len(offers) == 1
    params = {p.strip() for p in offers[0].split(b";")}
    assert b"permessage-deflate" in params
    assert b"client_no_context_takeover" in params
    assert b"server_max_window_bits=12" in params


# -- the command line --------------------------------------------------------------------------


async def test_cli_end_of_input_after_a_line_cut_off_exits_1_cleanly() -> None:
    """index.md, command line: "End of input, Ctrl-C or SIGTERM closes with
    code 1000. Exit codes: 0 done, 1 gave up (fatal failure) or messages left
    unsent". The server takes 1 MB of a 20 MB line, then hangs up."""

    async def take_a_little_then_hang_up(stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive_some()
        await stream.send_all(switching(request_key(request)))
        taken = 0
        while taken < 1_000_000:
            taken += len(await stream.receive_some())

    with trio.fail_after(30):
        async with tcp_server(take_a_little_then_hang_up) as port:
            args = [*CLI, "connect", f"ws://127.0.0.1:{port}/x", "--json", "--linger", "0"]
            args += ["--reconnect-initial", "60", "--reconnect-max", "60"]
            async with trio.open_nursery() as nursery:
                run = functools.partial(
                    trio.run_process,
                    args,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    check=False,
                )
                process: trio.Process = await nursery.start(run)
                assert process.stdin is not None
                assert process.stdout is not None
                assert process.stderr is not None
                out = Lines(process.stdout)
                await out.until(event="connected")
                await process.stdin.send_all(b"x" * 20_000_000 + b"\n")
                await out.until(event="connection_failed")
                await process.stdin.aclose()  # end of input
                printed = []
                with contextlib.suppress(EOFError):
                    for _ in range(100):
                        printed.append(json.loads(await out.next()))
                errors = b""
                while chunk := await process.stderr.receive_some():
                    errors += chunk
                code = await process.wait()
    assert b"Traceback" not in errors, errors.decode()[-2000:]
    assert code == 1
    assert [e["event"] for e in printed][-1:] == ["closed"]


# -- proxies (real TCP on 127.0.0.1: the proxy is dialled by the socket itself) ---------------


async def read_head(stream: trio.abc.Stream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data


async def splice(one: trio.abc.Stream, other: trio.abc.Stream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await one.receive_some():
            await other.send_all(data)
    await trio.aclose_forcefully(other)


async def first_failure_through(
    proxy_server: Callable[[trio.SocketStream], Awaitable[None]],
    scheme: str,
    url: str = "ws://app.test/x",
) -> ConnectionFailed:
    """The first ConnectionFailed of a socket to ``url`` through a proxy on
    127.0.0.1 that runs ``proxy_server``."""
    with trio.fail_after(10):
        async with tcp_server(proxy_server) as port:
            async with client_socket(url, proxy=f"{scheme}://127.0.0.1:{port}") as sock:
                return await next_event_skip(sock, ConnectionFailed)


def connect_proxy(
    requests: list[bytes], context: ssl.SSLContext | None = None
) -> Callable[[trio.SocketStream], Awaitable[None]]:
    """An HTTP CONNECT proxy (TLS to it with ``context``) that records each
    request head and splices the tunnel."""

    async def serve(tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp
        if context is not None:
            stream = trio.SSLStream(tcp, context, server_side=True)
        request = await read_head(stream)
        requests.append(request)
        host, _, port = request.split(b" ")[1].decode().rpartition(":")
        upstream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(splice, stream, upstream)
            nursery.start_soon(splice, upstream, stream)

    return serve


@pytest.mark.parametrize(
    ("status", "retried"), [(502, True), (503, True), (504, True), (403, False)]
)
async def test_a_proxy_that_cannot_reach_the_server_is_retried_and_a_refusal_is_fatal(
    status: int, retried: bool
) -> None:
    """security.md: "A proxy that is down, or cannot reach the server (502, 503,
    504 ...), is retried like a server that is down"; reference, Classifier:
    "proxy: 407 (credentials), other refusals | no"."""

    async def refuse(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(b"HTTP/1.1 %d Nope\r\nContent-Length: 0\r\n\r\n" % status)

    failed = await first_failure_through(refuse, "http")
    assert isinstance(failed.error, ProxyRejected)
    assert failed.error.status_code == status
    assert (failed.retry_in is not None) == retried


@pytest.mark.parametrize(("reply", "retried"), [(4, True), (5, True), (2, False)])
async def test_a_socks5_proxy_that_cannot_reach_the_server_is_retried(
    reply: int, retried: bool
) -> None:
    """security.md: "(502, 503, 504, SOCKS5 "host unreachable" or "connection
    refused"), is retried"; reference, ProxyRejected: "status_code: ... None
    for another SOCKS5 failure. socks_reply: the SOCKS5 reply code"."""

    async def socks(stream: trio.SocketStream) -> None:
        await stream.receive_some()  # greeting: no authentication
        await stream.send_all(b"\x05\x00")
        await stream.receive_some()  # the CONNECT request
        await stream.send_all(bytes([5, reply, 0, 1, 0, 0, 0, 0, 0, 0]))

    failed = await first_failure_through(socks, "socks5h")
    assert isinstance(failed.error, ProxyRejected)
    assert (failed.error.status_code, failed.error.socks_reply) == (None, reply)
    assert (failed.retry_in is not None) == retried


async def test_proxy_credentials_go_to_the_proxy_only() -> None:
    """security.md: "Proxy credentials are sent only to the proxy
    (`Proxy-Authorization` ...) and are redacted like URL credentials wherever
    the proxy's URL is shown"."""
    connects: list[bytes] = []
    with trio.fail_after(10):
        async with (
            open_mock_server() as server,
            tcp_server(connect_proxy(connects)) as proxy_port,
        ):
            port = await server.listen_tcp()
            proxy = f"http://alice:PW-S3CRET@127.0.0.1:{proxy_port}"
            async with client_socket(f"ws://127.0.0.1:{port}/x", proxy=proxy) as sock:
                await sock.wait_connected()
                shown = repr(sock) + repr(sock.statistics())
    assert b"proxy-authorization: basic " in connects[0].lower()
    assert not {"proxy-authorization", "authorization"} & set(server.connections[0].headers)
    assert "PW-S3CRET" not in shown


async def test_an_https_proxy_is_spoken_to_in_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """security.md: "`proxy="http://user:pass@host:3128"` names one (`https://`
    for TLS to the proxy itself ...)". The proxy's certificate is trusted
    through the system trust store (``SSL_CERT_FILE``)."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    requests: list[bytes] = []
    with trio.fail_after(10):
        async with (
            open_mock_server() as server,
            tcp_server(connect_proxy(requests, server_context)) as proxy_port,
        ):
            port = await server.listen_tcp()
            proxy = f"https://127.0.0.1:{proxy_port}"
            async with client_socket(f"ws://127.0.0.1:{port}/x", proxy=proxy) as sock:
                await sock.wait_connected()
    assert requests[0].startswith(f"CONNECT 127.0.0.1:{port} ".encode())


@pytest.mark.parametrize(("scheme", "address_types"), [("socks5", {1, 4}), ("socks5h", {3})])
async def test_socks5_resolves_names_here_and_socks5h_leaves_them_to_the_proxy(
    scheme: str, address_types: set[int]
) -> None:
    """security.md: "`socks5://` with names resolved here, `socks5h://` with
    names resolved by the proxy" (RFC 1928: address types 1 and 4 are
    addresses, 3 a domain name)."""
    requests: list[bytes] = []

    async def socks(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(b"\x05\x00")
        requests.append(bytes(await stream.receive_some()))
        await stream.send_all(bytes([5, 5, 0, 1, 0, 0, 0, 0, 0, 0]))  # refused

    await first_failure_through(socks, scheme, "ws://localhost:8080/x")
    assert requests[0][3] in address_types  # an IPv4 or IPv6 address, or a name
    if scheme == "socks5h":
        assert requests[0][5 : 5 + requests[0][4]] == b"localhost"


# -- sending -----------------------------------------------------------------------------------


class GatedUplink(WrappedStream):
    """A client stream whose writes wait until ``gate`` is set."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        super().__init__(inner)
        self.gate = trio.Event()
        self.gate.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.gate.wait()
        await self.inner.send_all(data)


@EACH
@pytest.mark.parametrize(("size", "direct"), [(64 * 1024, True), (64 * 1024 + 1, False)])
async def test_send_of_up_to_64_kib_on_an_idle_socket_returns_once_written(
    size: int, direct: bool, autojump_clock: object
) -> None:
    """reference, ``send()``: "On a connected, idle socket, a message of up to
    64 KiB is written by the calling task itself (no task switch), and
    ``send()`` returns once it is written"; otherwise "it waits in the outbox
    and is written as soon as a connection is up"."""
    async with open_mock_server() as server:
        uplinks: list[GatedUplink] = []
        open_stream = wrapped(server, GatedUplink, uplinks)
        async with client_socket(URL, open_stream=open_stream, ping_interval=None) as sock:
            await sock.wait_connected()
            uplinks[0].gate = trio.Event()  # the network takes nothing for now
            returned = trio.Event()

            async def send() -> None:
                await sock.send(b"\x01" * size)
                returned.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                await trio.testing.wait_all_tasks_blocked()
                assert returned.is_set() is not direct
                assert sock.statistics().outbox_depth == 1  # in flight or queued
                uplinks[0].gate.set()
            await server.wait_for(lambda: len(server.received) == 1)
    assert server.received == [b"\x01" * size]


def test_a_client_id_with_percent_or_plus_is_refused() -> None:
    """genexus.md: "An id with `=`, `&`, spaces, `#`, `?`, `/`, `%` or `+` is
    refused with a `ValueError`: GeneXus servers would misread it" (the others
    are tested in test_genexus.py)."""
    for client_id in ("50%25", "a+b", "%", "+"):
        with pytest.raises(ValueError, match="bare token"):
            genexus_endpoint("http://h/app/", client_id)


def test_the_handshake_answer_hides_every_header_named_like_a_secret() -> None:
    """reference, HandshakeResponse: "Its repr hides the values of headers that
    may hold secrets (cookies, authorization, anything named like a token, key
    or session)"; ``header()``: "the values of a repeated one joined with
    ``", "``; None when absent"."""
    secret = {
        "set-cookie": "A-S3CRET",
        "cookie": "B-S3CRET",
        "authorization": "C-S3CRET",
        "x-auth-token": "D-S3CRET",
        "x-api-key": "E-S3CRET",
        "x-session-id": "F-S3CRET",
        "www-authenticate": "G-S3CRET",
    }
    headers = (*secret.items(), ("x-server", "mock"), ("x-server", "two"))
    response = HandshakeResponse(101, "Switching Protocols", headers)
    assert "S3CRET" not in repr(response)
    assert "mock" in repr(response)
    assert response.header("X-API-KEY") == "E-S3CRET"
    assert response.header("x-server") == "mock, two"
    assert response.header("x-absent") is None


# -- giving up -----------------------------------------------------------------------------------


@EACH
@pytest.mark.parametrize(("uptime", "gives_up"), [(4.0, True), (5.0, False)])
async def test_a_lost_connection_counts_toward_max_attempts_unless_it_stayed_up_5_s(
    uptime: float, gives_up: bool, autojump_clock: object
) -> None:
    """testing.md, tips: "Every failed attempt counts toward `max_attempts`, and
    so does a lost connection, unless it stayed up `min_uptime` seconds (then
    the count starts again)"; index.md: "reset after 5 s up" (the default)."""
    policy = Backoff(initial=1, jitter=0, max_attempts=2)
    async with open_mock_server() as server:
        async with to(server, reconnect=policy, ping_interval=None) as sock:
            retries: list[float | None] = []
            for _ in range(4):
                connection = await server.wait_connections(len(retries) + 1)
                await trio.sleep(uptime)
                await connection.drop()
                failed = await next_event_skip(sock, ConnectionFailed)
                retries.append(failed.retry_in)
                if failed.retry_in is None:
                    assert not sock.is_open
                    break
    if gives_up:
        assert retries == [1.0, None]
    else:
        assert retries == [1.0, 1.0, 1.0, 1.0]


@EACH
async def test_messages_queued_while_down_go_first_after_the_handshake(
    autojump_clock: object,
) -> None:
    """resilience.md: "`send()` queues messages in a bounded outbox ... while
    the socket is connecting or reconnecting; they are written in order, first
    thing after the next handshake, before anything sent later. No
    duplicates." The application sends again the instant it sees ``Connected``
    (the path of a direct write on an idle socket)."""
    async with open_mock_server() as server:
        server.refuse(2)
        async with to(server, reconnect=Backoff(initial=1, jitter=0)) as sock:
            for i in range(3):
                await sock.send(f"queued {i}")
            await next_event_skip(sock, Connected)
            await sock.send("later")
            sock.send_nowait("later still")
            await sock.wait_sent()
            await server.drop_all()  # nothing written is written again
            await next_event_skip(sock, Connected)
            await sock.send("after the drop")
            await sock.wait_sent()
    assert server.received == [
        "queued 0",
        "queued 1",
        "queued 2",
        "later",
        "later still",
        "after the drop",
    ]


@pytest.mark.parametrize("which", ["url", "headers"])
async def test_an_attempt_error_keeps_the_callables_exception_as_its_cause(
    which: str, autojump_clock: object
) -> None:
    """reference, AttemptError: "A ``url`` or ``headers`` callable raised while
    preparing an attempt; the original exception is the ``__cause__``";
    resilience.md: "a `url` or `headers` callable raised | `AttemptError` |
    yes" (retried)."""
    boom = LookupError("token service down")
    calls: list[float] = []

    def failing_once() -> str:
        calls.append(trio.current_time())
        if len(calls) == 1:
            raise boom
        return URL

    def headers() -> dict[str, str]:
        failing_once()
        return {"X-Token": "t"}

    async with open_mock_server() as server:
        options: dict[str, object] = {"reconnect": Backoff(initial=1, jitter=0)}
        if which == "url":
            sock = to(server, failing_once, **options)
        else:
            sock = to(server, URL, headers=headers, **options)
        async with sock:
            failed = await next_event_skip(sock, ConnectionFailed)
            assert isinstance(failed.error, AttemptError)
            assert failed.error.__cause__ is boom
            assert failed.retry_in == 1.0
            await sock.wait_connected()
    assert calls == [0.0, 1.0]
