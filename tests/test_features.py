"""What every peer has: User-Agent, redirects, the handshake answer on Connected,
subprotocols, close codes; through the public API, on every transport."""

from __future__ import annotations

import functools
import gc
import sys
import weakref

import pytest
import trio

from trio_clientsocket import (
    Backoff,
    ClientSocket,
    Closed,
    Connected,
    ConnectionFailed,
    HandshakeRejected,
    InvalidURLError,
    ProtocolError,
    __version__,
)
from trio_clientsocket.testing import MockServer, open_mock_server

from .conftest import client_socket

pytestmark = pytest.mark.usefixtures("each_transport")

URL = "ws://app.test/app/gxwebsocket?client-1"
EXACT = Backoff(initial=1, factor=1, jitter=0)


def socket_to(server: MockServer, url: str = URL, **options: object) -> ClientSocket:
    options.setdefault("reconnect", EXACT)
    return client_socket(url, open_stream=server.open_stream, **options)


async def first(sock: ClientSocket, kind: type) -> object:
    with trio.fail_after(60):
        async for event in sock.events():
            if isinstance(event, kind):
                return event
    raise AssertionError(f"no {kind.__name__}")


# -- User-Agent -----------------------------------------------------------------------


async def test_user_agent_names_the_library_and_python(autojump_clock: object) -> None:
    async with open_mock_server() as server, socket_to(server) as sock:
        await sock.wait_connected()
    python = f"Python/{sys.version_info[0]}.{sys.version_info[1]}"
    expected = f"trio-clientsocket/{__version__} {python}"
    assert server.connections[0].headers["user-agent"] == expected


async def test_user_agent_can_be_replaced(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        async with socket_to(server, headers={"user-agent": "my-app/2"}) as sock:
            await sock.wait_connected()
    assert server.connections[0].headers["user-agent"] == "my-app/2"


async def test_user_agent_can_be_removed(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        async with socket_to(server, headers=[("User-Agent", None), ("X-A", "1")]) as sock:
            await sock.wait_connected()
    headers = server.connections[0].headers
    assert "user-agent" not in headers
    assert headers["x-a"] == "1"


def test_only_a_default_header_can_be_removed() -> None:
    with pytest.raises(TypeError, match="must be str"):
        ClientSocket(URL, headers={"X-A": None})


# -- redirects ------------------------------------------------------------------------


async def test_a_redirect_is_followed_and_connected_shows_where(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        server.redirect("/elsewhere/gxwebsocket?client-1", status=301)
        server.redirect("http://app.test/final/gxwebsocket?client-1", status=308)
        async with socket_to(server) as sock:
            connected = await first(sock, Connected)
            assert isinstance(connected, Connected)
            assert connected.url == "ws://app.test/final/gxwebsocket?client-1"
            assert sock.url == connected.url
            assert sock.statistics().attempts == 1
    assert server.rejected == [301, 308]
    assert server.connections[0].path == "/final/gxwebsocket?client-1"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_every_redirect_status_is_followed(status: int, autojump_clock: object) -> None:
    async with open_mock_server() as server:
        server.redirect("/moved", status=status)
        async with socket_to(server) as sock:
            await sock.wait_connected()
    assert server.connections[0].path == "/moved"


async def test_a_password_goes_to_the_same_host_only(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        url = "ws://alice:s3cret@app.test/a"
        server.redirect("/b")  # same host: the credentials go along
        server.redirect("ws://other.test/c")  # another host: they do not
        async with socket_to(
            server, url, headers={"Cookie": "sid=1", "X-Keep": "yes"}, ping_interval=None
        ) as sock:
            await sock.wait_connected()
            await sock.close()
            seen_after_first = len(server.connections)
    assert seen_after_first == 1
    headers = server.connections[0].headers
    assert server.connections[0].path == "/c"
    assert "authorization" not in headers
    assert "cookie" not in headers
    assert headers["x-keep"] == "yes"


async def test_the_same_host_keeps_the_credentials(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        server.redirect("/b")
        async with socket_to(server, "ws://alice:s3cret@app.test/a", headers={"Cookie": "x"}) as s:
            await s.wait_connected()
    headers = server.connections[0].headers
    assert headers["authorization"].startswith("Basic ")
    assert headers["cookie"] == "x"


async def test_a_redirect_from_wss_to_ws_is_refused_and_fatal(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        server.redirect("ws://app.test/plain")
        async with socket_to(server, "wss://app.test/secure") as sock:
            failed = await first(sock, ConnectionFailed)
    assert isinstance(failed, ConnectionFailed)
    assert isinstance(failed.error, InvalidURLError)
    assert "wss://" in str(failed.error)
    assert "refused" in str(failed.error)
    assert failed.retry_in is None
    assert server.connections == []


async def test_too_many_redirects_are_a_fatal_rejection(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        server.redirect("/loop", count=11)
        async with socket_to(server) as sock:
            failed = await first(sock, ConnectionFailed)
    assert isinstance(failed, ConnectionFailed)
    assert isinstance(failed.error, HandshakeRejected)
    assert "more than 10 redirects" in str(failed.error)
    assert failed.retry_in is None
    assert len(server.rejected) == 11


async def test_a_redirect_without_location_is_a_fatal_rejection(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        server.reject(302)
        async with socket_to(server) as sock:
            failed = await first(sock, ConnectionFailed)
    assert isinstance(failed, ConnectionFailed)
    assert isinstance(failed.error, HandshakeRejected)
    assert failed.error.status_code == 302
    assert failed.retry_in is None


# -- the handshake answer ----------------------------------------------------------------


async def test_the_handshake_answer_is_on_connected_with_secrets_hidden(
    autojump_clock: object,
) -> None:
    async with open_mock_server() as server:
        server.accept_headers = [("Set-Cookie", "sid=S3CRET"), ("X-Server", "mock")]
        async with socket_to(server) as sock:
            connected = await first(sock, Connected)
    assert isinstance(connected, Connected)
    response = connected.response
    assert response is not None
    assert response.status == 101
    assert response.header("set-cookie") == "sid=S3CRET"
    assert response.header("X-Server") == "mock"
    assert response.header("upgrade") is not None
    assert "S3CRET" not in repr(connected)
    assert "mock" not in repr(connected)  # the event's repr leaves the answer out
    assert "S3CRET" not in repr(response)
    assert "mock" in repr(response)


async def test_the_handshake_answer_is_held_by_the_connected_event_only(
    autojump_clock: object,
) -> None:
    """Once the application lets go of Connected, the connection keeps no copy
    of the answer (its headers would cost every idle socket about 1 KiB)."""
    async with open_mock_server() as server:
        server.accept_headers = [("X-Server", "mock")]
        async with socket_to(server) as sock:
            connected = await first(sock, Connected)
            assert isinstance(connected, Connected)
            assert connected.response is not None
            answer = weakref.ref(connected.response)
            del connected
            gc.collect()
            assert answer() is None
            await sock.send("still connected")
            await server.wait_for(lambda: server.received == ["still connected"])


# -- subprotocols ----------------------------------------------------------------------


async def test_the_chosen_subprotocol_is_on_connected_and_in_statistics(
    autojump_clock: object,
) -> None:
    async with open_mock_server() as server:
        server.subprotocols = ("v2.chat", "v1.chat")
        async with socket_to(server, subprotocols=["v1.chat", "v2.chat"]) as sock:
            connected = await first(sock, Connected)
            assert isinstance(connected, Connected)
            assert connected.subprotocol == "v1.chat"
            assert sock.statistics().subprotocol == "v1.chat"


async def test_no_subprotocol_when_the_server_speaks_none_offered(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        server.subprotocols = ("other",)
        async with socket_to(server, subprotocols=["v1.chat"]) as sock:
            connected = await first(sock, Connected)
    assert isinstance(connected, Connected)
    assert connected.subprotocol is None


async def test_a_subprotocol_not_offered_is_a_clear_protocol_error() -> None:
    """A hand-written server answers with a subprotocol the client did not offer."""
    from trio_clientsocket._handshake import accept_token

    async def handler(stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive_some(65536)
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_token(key).encode() + b"\r\n"
            b"Sec-WebSocket-Protocol: evil\r\n\r\n"
        )
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            async with client_socket(
                f"ws://127.0.0.1:{port}/", subprotocols=["v1.chat"], reconnect=None
            ) as sock:
                failed = await first(sock, ConnectionFailed)
            nursery.cancel_scope.cancel()
    assert isinstance(failed, ConnectionFailed)
    assert isinstance(failed.error, ProtocolError)
    assert "'evil'" in str(failed.error)
    assert "v1.chat" in str(failed.error)


# -- close codes ----------------------------------------------------------------------


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4001, "bye now"), (1001, "é" * 61)])
async def test_close_sends_the_code_and_reason_given(
    code: int, reason: str, autojump_clock: object
) -> None:
    async with open_mock_server() as server, socket_to(server) as sock:
        await sock.wait_connected()
        assert await sock.close(code, reason) == ()
        closed = await first(sock, Closed)
    assert isinstance(closed, Closed)
    assert server.connections[0].close_code == code
