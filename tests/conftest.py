"""Shared fixtures: a mock server wired to ClientSockets in memory."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import trio

from trio_clientsocket import Backoff, ClientSocket, Event
from trio_clientsocket.testing import MockServer, open_mock_server

URL = "ws://app.test/app/gxwebsocket?client-1"
EXACT = Backoff(initial=1.0, factor=2.0, maximum=8.0, jitter=0.0)
"""A backoff without jitter, for exact-time assertions."""

E = TypeVar("E", bound=Event)


async def next_event_skip(sock: ClientSocket, kind: type[E]) -> E:
    """The next event of ``kind``, skipping others."""
    async for event in sock.events():
        if isinstance(event, kind):
            return event
    raise AssertionError(f"event stream ended before a {kind.__name__}")


@pytest.fixture
async def server() -> AsyncIterator[MockServer]:
    async with open_mock_server(echo=True) as server:
        yield server


RUNAWAY = 100_000
"""Seconds of trio time after which a test fails. Tests on the mock clock never come
near it; a test that waits for something that never happens would otherwise let
the autojump clock run forever (keepalive timers keep firing)."""


def _bounded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(RUNAWAY):
            await test(*args, **kwargs)

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _bounded(item.obj)


# -- running socket tests over both transports -----------------------------------

TRANSPORTS = ("websockets", "wsproto", "trio-websocket")
_current = {"transport": "websockets"}


@pytest.fixture(params=TRANSPORTS)
def each_transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per transport (modules opt in with ``usefixtures``)."""
    _current["transport"] = request.param
    yield request.param
    _current["transport"] = "websockets"


def client_socket(*args: Any, **options: Any) -> ClientSocket:
    """``ClientSocket`` on the transport of the current test run."""
    options.setdefault("transport", _current["transport"])
    return ClientSocket(*args, **options)


class WrappedStream(trio.abc.Stream):
    """A client stream passed through to ``inner``: subclasses change what they
    need (a slow, held or cut uplink)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()
