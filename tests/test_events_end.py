"""When iterating ``events()`` ends: once the socket is closed (close(), giving
up, leaving the block) and its last events were read; after open() it can be
iterated again. A program that sends its lines, closes and reads its events in
another task ends on its own."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_clientsocket import (
    ClientSocket,
    Closed,
    Connected,
    ConnectionFailed,
    MessageReceived,
    SocketEvent,
)
from trio_clientsocket.testing import MockServer, open_mock_server

from .conftest import client_socket

pytestmark = pytest.mark.usefixtures("each_transport")

URL = "ws://app.test/app/gxwebsocket?client-1"


def socket_to(server: MockServer, **options: object) -> ClientSocket:
    return client_socket(URL, open_stream=server.open_stream, **options)


async def test_a_program_that_sends_its_lines_and_closes_ends(autojump_clock: object) -> None:
    """The shape of a stdin chat client: one task prints events, the other
    sends lines and closes at end of input. It used to hang after 'closed'."""
    lines = ["first", "second", "third"]
    printed: list[str] = []
    with trio.fail_after(60):
        async with open_mock_server(echo=True) as server, socket_to(server) as sock:

            async def show_events() -> None:
                async for event in sock.events():
                    match event:
                        case MessageReceived(message=text):
                            printed.append(f"< {text!s}")
                        case Closed():
                            printed.append("closed")

            async def send_lines() -> None:
                await sock.wait_connected()
                for line in lines:
                    await sock.send(line)
                await server.wait_for(lambda: len(server.received) == len(lines))
                await sock.close()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(show_events)
                nursery.start_soon(send_lines)
    assert printed[-1] == "closed"
    assert server.received == lines


async def test_iteration_ends_after_the_final_connection_failed(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        server.reject(403)
        async with socket_to(server) as sock:
            seen: list[SocketEvent] = []
            with trio.fail_after(60):
                async for event in sock.events():
                    seen.append(event)
            assert isinstance(seen[-1], ConnectionFailed)
            assert seen[-1].retry_in is None
            assert not sock.is_open


async def test_after_open_the_stream_is_iterated_again(autojump_clock: object) -> None:
    async with open_mock_server() as server, socket_to(server) as sock:
        await sock.wait_connected()
        await sock.close()
        first = [type(e) async for e in sock.events()]
        assert first == [Connected, Closed]
        await sock.open()
        await sock.wait_connected()
        await sock.close()
        second = [type(e) async for e in sock.events()]
        assert second == [Connected, Closed]


async def test_before_the_first_open_iteration_waits(autojump_clock: object) -> None:
    async with open_mock_server() as server:
        async with client_socket(None, open_stream=server.open_stream) as sock:
            got: list[SocketEvent] = []

            async def read_one() -> None:
                async for event in sock.events():
                    got.append(event)
                    return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_one)
                await trio.testing.wait_all_tasks_blocked()
                assert got == []  # waiting, not ended
                await sock.open(URL)
            assert isinstance(got[0], Connected)
