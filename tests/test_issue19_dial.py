"""Issue 19, items 7-10: what the socket sends where, and when an attempt ends.

7. Credentials go to the same origin only (scheme, host and port).
8. A header or subprotocol the HTTP layer would refuse is refused up front,
   naming the header, never its value.
9. A non-ASCII URL is sent as RFC 3986 wants it (path and query
   percent-encoded as UTF-8, the host as its IDNA name), or refused up front.
10. The ``url`` and ``headers`` callables run inside ``connect_timeout``.

Through the public API, on every transport.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
import trio

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    Connected,
    ConnectionFailed,
    ConnectTimeout,
    InvalidURLError,
)
from trio_clientsocket.testing import MockServer, open_mock_server

from .conftest import WrappedStream, client_socket

pytestmark = pytest.mark.usefixtures("each_transport")

SECRET = "S3CRET-value"
URL = "ws://app.test/a"
EVERY_SECOND = Backoff(initial=1, factor=1, jitter=0)


def socket_to(server: MockServer, url: object = URL, **options: object) -> ClientSocket:
    options.setdefault("reconnect", EVERY_SECOND)
    options.setdefault("ping_interval", None)
    return client_socket(url, open_stream=server.open_stream, **options)


async def first(sock: ClientSocket, kind: type[Connected] | type[ConnectionFailed]) -> object:
    with trio.fail_after(600):  # virtual time: bounds a test that would hang
        async for event in sock.events():
            if isinstance(event, kind):
                return event
    raise AssertionError(f"no {kind.__name__}")


async def failure(sock: ClientSocket) -> ConnectionFailed:
    event = await first(sock, ConnectionFailed)
    assert isinstance(event, ConnectionFailed)
    return event


def assert_clean(caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    for text in (*texts, *(record.getMessage() for record in caplog.records)):
        assert SECRET not in text, text


# -- 7: credentials go to the same origin only -----------------------------------------

CREDENTIALS = {"Cookie": f"sid={SECRET}", "X-Api-Key": SECRET, "X-Keep": "yes"}
SECRET_HEADERS = ("authorization", "cookie", "x-api-key")


@pytest.mark.parametrize(
    ("userinfo", "extra"),
    [("alice:pw@", {}), ("", {"Authorization": f"Bearer {SECRET}"})],
    ids=["url-password", "authorization-header"],
)
async def test_credentials_do_not_follow_a_redirect_to_another_port(
    userinfo: str, extra: dict[str, str]
) -> None:
    """Two real servers on 127.0.0.1: the same host name, two origins."""
    with trio.fail_after(20):
        async with open_mock_server() as first_server, open_mock_server() as second:
            port = await first_server.listen_tcp()
            other = await second.listen_tcp()
            first_server.redirect(f"ws://127.0.0.1:{other}/b")
            url = f"ws://{userinfo}127.0.0.1:{port}/a"
            headers = CREDENTIALS | extra
            async with client_socket(url, headers=headers, proxy=None) as sock:
                await sock.wait_connected()
    assert first_server.rejected == [302]
    sent = second.connections[0].headers
    assert second.connections[0].path == "/b"
    assert not set(SECRET_HEADERS) & set(sent)
    assert sent["x-keep"] == "yes"


@pytest.mark.parametrize(
    "location",
    ["ws://other.test/b", "wss://app.test/b", "wss://app.test:80/b", "ws://app.test:8080/b"],
    ids=["another-host", "ws-to-wss", "ws-to-wss-same-port", "another-port"],
)
async def test_every_header_the_redaction_treats_as_secret_stays_behind(
    location: str, autojump_clock: object
) -> None:
    headers = {
        "Authorization": f"Bearer {SECRET}",
        "Cookie": f"sid={SECRET}",
        "Proxy-Authorization": f"Basic {SECRET}",
        "X-Api-Key": SECRET,
        "X-Auth-Token": SECRET,
        "X-Session-Id": SECRET,
        "X-Client-Secret": SECRET,
        "X-Password": SECRET,
        "X-Keep": "yes",
    }
    async with open_mock_server() as server:
        server.redirect(location)
        async with socket_to(server, "ws://alice:pw@app.test/a", headers=headers) as sock:
            await sock.wait_connected()
    sent = server.connections[0].headers
    assert not ({name.lower() for name in headers} - {"x-keep"}) & set(sent)
    assert sent["x-keep"] == "yes"


async def test_credentials_left_behind_stay_behind_on_the_way_back(
    autojump_clock: object,
) -> None:
    async with open_mock_server() as server:
        server.redirect("ws://other.test/b")
        server.redirect("ws://app.test/c")  # back to the origin first asked
        async with socket_to(server, "ws://alice:pw@app.test/a", headers=CREDENTIALS) as sock:
            await sock.wait_connected()
    sent = server.connections[0].headers
    assert server.connections[0].path == "/c"
    assert not set(SECRET_HEADERS) & set(sent)
    assert sent["x-keep"] == "yes"


@pytest.mark.parametrize(
    "location", ["/b", "ws://APP.test:80/b", "http://app.test/b"], ids=["path", "port", "http"]
)
async def test_credentials_follow_a_redirect_within_the_same_origin(
    location: str, autojump_clock: object
) -> None:
    async with open_mock_server() as server:
        server.redirect(location)
        async with socket_to(server, "ws://alice:pw@app.test/a", headers=CREDENTIALS) as sock:
            await sock.wait_connected()
    sent = server.connections[0].headers
    assert sent["authorization"].startswith("Basic ")
    assert sent["cookie"] == f"sid={SECRET}"
    assert sent["x-api-key"] == SECRET


# -- 8: headers and subprotocols the HTTP layer would refuse ---------------------------

BAD_VALUES = {
    "trailing-space": f"{SECRET} ",
    "trailing-tab": f"{SECRET}\t",
    "leading-space": f" {SECRET}",
    "del": f"{SECRET}\x7f",
    "control": f"{SECRET}\x01",
    "unit-separator": f"{SECRET}\x1f",
    "vertical-tab": f"{SECRET}\x0bx",
}


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_header_value_the_http_layer_refuses_is_refused_by_the_constructor(value: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid header 'X-Api-Key'$") as info:
        client_socket(URL, headers={"X-Api-Key": value})
    assert SECRET not in repr(info.value)


@pytest.mark.parametrize("name", ["X(A)", "X/A", 'X"A', "X@A", "X\x7fA", "X[A]", "X;A"])
def test_a_header_name_that_is_not_a_token_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid header ") as info:
        client_socket(URL, headers={name: SECRET})
    assert SECRET not in repr(info.value)


@pytest.mark.parametrize("subprotocol", ["a\r\nb", "chat\x00", "a\tb", "a/b", "chat\x7f", "a;b"])
def test_a_subprotocol_that_is_not_a_token_is_refused(subprotocol: str) -> None:
    with pytest.raises(ValueError, match=r"^subprotocols must be a sequence of tokens"):
        client_socket(URL, subprotocols=[subprotocol])


async def test_valid_edge_values_are_sent_as_given(autojump_clock: object) -> None:
    headers = {"X-Inner": "a \t b", "X-Empty": "", "X-Tokenish": "!#$%&'*+-.^_`|~"}
    async with open_mock_server() as server:
        async with socket_to(server, headers=headers, subprotocols=["v2.chat"]) as sock:
            await sock.wait_connected()
    sent = server.connections[0].headers
    assert {name: sent[name.lower()] for name in headers} == headers


@pytest.mark.parametrize(
    "value", [BAD_VALUES["trailing-space"], BAD_VALUES["del"], BAD_VALUES["control"]]
)
async def test_a_bad_header_from_a_callable_is_a_fatal_failure_naming_it(
    value: str, caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    caplog.set_level(logging.DEBUG)
    async with open_mock_server() as server:
        async with socket_to(server, headers=lambda: {"X-Api-Key": value}) as sock:
            failed = await failure(sock)
    assert failed.retry_in is None
    assert isinstance(failed.error, ValueError)
    assert str(failed.error) == "invalid header 'X-Api-Key'"
    assert server.attempts == 0  # refused before any byte went out
    assert_clean(caplog, repr(failed), str(failed.error))


async def test_headers_of_the_wrong_type_from_a_callable_are_a_fatal_failure(
    autojump_clock: object,
) -> None:
    async with open_mock_server() as server:
        async with socket_to(server, headers=lambda: {"X-Api-Key": 42}) as sock:
            failed = await failure(sock)
    assert failed.retry_in is None
    assert isinstance(failed.error, TypeError)
    assert str(failed.error) == "header names and values must be str (header 'X-Api-Key')"
    assert server.attempts == 0


# -- 9: non-ASCII URLs -------------------------------------------------------------------


@pytest.mark.parametrize("from_callable", [False, True], ids=["str", "callable"])
async def test_a_non_ascii_path_and_query_are_sent_percent_encoded(
    from_callable: bool, autojump_clock: object
) -> None:
    url = f"ws://app.test/a%20b/café/ü?token={SECRET}&name=zoë"
    async with open_mock_server() as server:
        async with socket_to(server, (lambda: url) if from_callable else url) as sock:
            connected = await first(sock, Connected)
            assert sock.url == "ws://app.test/a%20b/café/ü?token=***&name=***"
    assert server.connections[0].path == f"/a%20b/caf%C3%A9/%C3%BC?token={SECRET}&name=zo%C3%AB"
    assert isinstance(connected, Connected)
    assert connected.url == "ws://app.test/a%20b/café/ü?token=***&name=***"


class Recording(WrappedStream):
    """Keeps what the client wrote."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        super().__init__(inner)
        self.sent = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += bytes(data)
        await super().send_all(data)


def recording(server: MockServer) -> tuple[list[Recording], Callable[[str], Awaitable[Recording]]]:
    streams: list[Recording] = []

    async def open_stream(url: str) -> Recording:
        streams.append(Recording(await server.open_stream(url)))
        return streams[-1]

    return streams, open_stream


async def test_a_non_ascii_host_is_sent_as_its_idna_name(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        streams, open_stream = recording(server)
        url = "ws://café.test:8080/ü"
        async with client_socket(url, open_stream=open_stream, ping_interval=None) as sock:
            await sock.wait_connected()
    head = streams[0].sent.partition(b"\r\n\r\n")[0]
    assert head.isascii()
    lines = head.lower().split(b"\r\n")
    assert lines[0] == b"get /%c3%bc http/1.1"
    assert b"host: xn--caf-dma.test:8080" in lines


@pytest.mark.parametrize(
    "url",
    ["ws://" + "é" * 64 + ".test/", "ws://café..test/"],
    ids=["label-too-long", "empty-label"],
)
def test_a_host_idna_cannot_encode_is_refused_up_front(url: str) -> None:
    with pytest.raises(InvalidURLError, match=r"IDNA"):
        client_socket(url)


async def test_a_url_that_is_not_valid_text_is_refused_without_its_secrets(
    caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    url = f"ws://app.test/\ud800?token={SECRET}"
    with pytest.raises(InvalidURLError, match="not valid text") as info:
        client_socket(url)
    assert (
        str(info.value)
        == "URL 'ws://app.test/\\ud800?token=***' is not valid text (a lone surrogate)"
    )
    async with open_mock_server() as server:  # the same URL from a callable: fatal
        async with socket_to(server, lambda: url) as sock:
            failed = await failure(sock)
    assert isinstance(failed.error, InvalidURLError)
    assert failed.retry_in is None
    assert server.attempts == 0
    assert_clean(caplog, str(failed.error), repr(failed))


# -- 10: the callables run inside connect_timeout ----------------------------------------


def hanging_once(value: object) -> Callable[[], Awaitable[object]]:
    """An async callable that hangs on its first call and returns ``value`` after."""
    calls = 0

    async def call() -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            await trio.sleep_forever()
        return value

    return call


@pytest.mark.parametrize("which", ["url", "headers"])
async def test_a_callable_that_hangs_times_out_and_is_retried(
    which: str, autojump_clock: object
) -> None:
    async with open_mock_server() as server:
        start = trio.current_time()
        if which == "url":
            sock = socket_to(server, hanging_once(URL), connect_timeout=5)
        else:
            sock = socket_to(server, headers=hanging_once({"X-A": "1"}), connect_timeout=5)
        async with sock:
            failed = await failure(sock)
            assert trio.current_time() - start == 5
            assert isinstance(failed.error, ConnectTimeout)
            assert failed.retry_in == 1
            await first(sock, Connected)
            assert trio.current_time() - start == 6
    assert server.attempts == 1  # the hanging attempt never reached the server


async def test_the_callables_time_counts_against_connect_timeout(autojump_clock: object) -> None:
    """A URL callable that takes 3 s and a handshake that takes 3 s: together
    they exceed a 5 s connect_timeout."""

    async def slow_url() -> str:
        await trio.sleep(3)
        return URL

    async with open_mock_server() as server:
        server.delay_handshake(3)
        start = trio.current_time()
        async with socket_to(server, slow_url, connect_timeout=5) as sock:
            failed = await failure(sock)
            assert trio.current_time() - start == 5
            assert isinstance(failed.error, ConnectTimeout)
            await first(sock, Connected)
            assert trio.current_time() - start == 5 + 1 + 3
