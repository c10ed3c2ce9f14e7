"""The transport seam: what each transport must do whatever the timing of the bytes."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from trio_clientsocket import Connected, MessageReceived

from .conftest import client_socket

pytestmark = pytest.mark.usefixtures("each_transport")

URL = "ws://app.test/app/gxwebsocket?client-1"


def eager_server(nursery: trio.Nursery, count: int) -> tuple[object, trio.Event]:
    """An ``open_stream`` whose server writes its handshake answer and ``count``
    messages in one write, so that the client reads them in one chunk, before
    the handshake call has returned."""
    done = trio.Event()

    async def open_stream(url: str) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()

        async def serve() -> None:
            ws = WSConnection(ConnectionType.SERVER)
            while True:
                ws.receive_data(bytes(await server.receive_some()))
                if any(isinstance(e, Request) for e in ws.events()):
                    break
            blob = ws.send(AcceptConnection())
            for i in range(count):
                blob += ws.send(TextMessage(data=str(i)))
            await server.send_all(blob)
            await done.wait()

        nursery.start_soon(serve)
        return client

    return open_stream, done


async def test_messages_in_the_handshake_answer_all_arrive_in_order(
    autojump_clock: object,
) -> None:
    count = 53  # more than any queue of a transport holds
    async with trio.open_nursery() as nursery:
        open_stream, done = eager_server(nursery, count)
        got: list[object] = []
        async with client_socket(URL, open_stream=open_stream, ping_interval=None) as sock:
            async for event in sock.events():
                if isinstance(event, MessageReceived):
                    got.append(event.message)
                    if len(got) == count:
                        break
                else:
                    assert isinstance(event, Connected)
            done.set()
    assert got == [str(i) for i in range(count)]
