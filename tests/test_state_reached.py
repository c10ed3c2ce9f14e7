"""Every transition of the state table is one the socket really makes: each is
reached by a story told through the public API (the table holds no dead rows)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_clientsocket import Backoff, ClientSocket, ConnectionFailed, State
from trio_clientsocket._state import TRANSITIONS, ConnectionState, Trigger
from trio_clientsocket.testing import open_mock_server

FAST = Backoff(initial=1, factor=1, jitter=0)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> set[tuple[State, Trigger]]:
    record: set[tuple[State, Trigger]] = set()
    fire = ConnectionState.fire

    def recording(self: ConnectionState, trigger: Trigger) -> State:
        record.add((self.state, trigger))
        return fire(self, trigger)

    monkeypatch.setattr(ConnectionState, "fire", recording)
    return record


async def test_every_transition_is_reached(
    seen: set[tuple[State, Trigger]], autojump_clock: object
) -> None:
    async with open_mock_server(echo=True) as server:
        url = "ws://app.test/gxwebsocket?id"
        # open, connect, lose, wait, retry, connect, close (closing, closed)
        async with ClientSocket(url, open_stream=server.open_stream, reconnect=FAST) as sock:
            await sock.wait_connected()
            await server.close_all(1001)
            await server.wait_connections(2)
            await sock.wait_connected()
            await sock.close()
            # connecting, then closed
            server.delay_handshake(5)
            await sock.open()
            await trio.testing.wait_all_tasks_blocked()  # the server is delaying
            assert sock.statistics().state is State.CONNECTING
            await sock.close()
            # connecting, failed (waiting), closed while waiting
            server.refuse(1)
            await sock.open()
            async for event in sock.events():
                if isinstance(event, ConnectionFailed) and isinstance(event.error, OSError):
                    break
            assert sock.statistics().state is State.WAITING
            await sock.close()
        # connecting, gave up (refused, no retry)
        async with ClientSocket(url, open_stream=server.open_stream, reconnect=None) as sock:
            server.refuse(1)
            await sock.open()
            async for event in sock.events():
                if isinstance(event, ConnectionFailed):
                    break
        # connected, gave up (lost, no retry)
        async with ClientSocket(url, open_stream=server.open_stream, reconnect=None) as sock:
            await sock.wait_connected()
            await server.close_all(1001)
            async for event in sock.events():
                if isinstance(event, ConnectionFailed):
                    break
            await trio.lowlevel.checkpoint()
    assert seen == set(TRANSITIONS)
