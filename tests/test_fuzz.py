"""A hostile server, driven by hypothesis: after the handshake it sends random
bytes, random or malformed frames, truncated and oversized frames, invalid UTF-8,
stray continuations, ping floods and bad close codes. Whatever it sends, nothing
escapes into the application's nursery, nothing hangs (the mock clock bounds
every case), the event buffer stays bounded, and the socket ends up working:
a probe message makes the round trip, on the same connection or after a reconnect.
"""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_clientsocket import Backoff, ClientSocket, MessageReceived
from trio_clientsocket.testing import open_mock_server

from .conftest import TRANSPORTS

EVENT_BUFFER = 16


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, declared: int | None = None
) -> bytes:
    """A server (unmasked) frame; ``declared`` overrides the length field."""
    length = len(payload) if declared is None else declared
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    if length < 126:
        header = bytes([first, length])
    elif length < 65536:
        header = bytes([first, 126]) + struct.pack("!H", length)
    else:
        header = bytes([first, 127]) + struct.pack("!Q", length)
    return header + payload


opcodes = st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB])
payloads = st.binary(max_size=300)
items = st.one_of(
    st.binary(min_size=1, max_size=64),  # random bytes
    st.builds(  # a frame with random opcode, flags and payload
        frame, opcodes, payloads, fin=st.booleans(), rsv=st.sampled_from([0, 0, 0, 1, 4, 7])
    ),
    st.builds(lambda p: frame(0x1, p), st.binary(max_size=40)),  # text, maybe bad UTF-8
    st.builds(lambda p: frame(0x1, p, declared=len(p) + 50), st.binary(max_size=20)),  # short
    st.builds(lambda n: frame(0x2, b"", declared=n), st.integers(2**16, 2**63 - 1)),  # huge
    st.builds(lambda p: frame(0x0, p), st.binary(max_size=20)),  # stray continuation
    st.builds(lambda n: frame(0x9, b"p") * n, st.integers(1, 200)),  # ping flood
    st.builds(  # close with any code and reason
        lambda code, reason: frame(0x8, struct.pack("!H", code) + reason),
        st.integers(0, 65535),
        st.binary(max_size=30),
    ),
    st.just(frame(0x1, b"x" * 2000)),  # over max_message_size
)


async def hostile_story(transport: str, attack: list[bytes]) -> None:
    async with open_mock_server(echo=True) as server:
        async with ClientSocket(
            "ws://hostile.test/x",
            open_stream=server.open_stream,
            transport=transport,  # type: ignore[arg-type]
            reconnect=Backoff(initial=1, maximum=4, jitter=0),
            ping_interval=10,
            ping_timeout=5,
            max_message_size=512,
            event_buffer=EVENT_BUFFER,
        ) as sock:
            connection = await server.wait_connections(1)
            for data in attack:
                await connection.send_raw(data)
            # Whatever happened, the socket must come back to working order.
            with trio.fail_after(5000):
                for attempt in range(1000):
                    probe = f"probe-{attempt}"
                    await sock.wait_connected()
                    await sock.send(probe)
                    with trio.move_on_after(30):
                        async for event in sock.events():
                            assert len(sock.events()) <= EVENT_BUFFER + 4
                            if isinstance(event, MessageReceived) and event.message == probe:
                                return
                raise AssertionError("the socket never worked again")


@pytest.mark.parametrize("transport", TRANSPORTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(attack=st.lists(items, min_size=1, max_size=6))
def test_hostile_server(transport: str, attack: list[bytes]) -> None:
    trio.run(hostile_story, transport, attack, clock=trio.testing.MockClock(autojump_threshold=0))
