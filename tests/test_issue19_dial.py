"""Issue 19, items 7-10: what the socket sends where, and when an attempt ends.

7. Credentials go to the same origin only (scheme, host and port).

Through the public API, on every transport.
"""

from __future__ import annotations

import pytest
import trio

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    Connected,
    ConnectionFailed,
)
from trio_clientsocket.testing import MockServer, open_mock_server

from .conftest import client_socket

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
