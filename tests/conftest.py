"""Shared fixtures: a mock server wired to ClientSockets in memory."""

from __future__ import annotations

import functools
import inspect
import os
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
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


# -- the quick run: what plain ``pytest`` leaves out ---------------------------------

INTEROP = "tests/test_interop.py"
"""Needs servers nobody here wrote: ``pip install -e '.[interop]'`` and npm for Node's ws."""
SLOW = frozenset(
    {
        "tests/test_review_invariant.py",  # 40 random schedules on every transport
        "tests/test_memory_bound.py",  # RSS of real sockets, measured
        "tests/test_network.py::test_ten_thousand_messages_each_way_in_order",
        "tests/test_compression.py::test_a_deflate_bomb_is_refused_with_1009_before_it_is_inflated",
        "tests/test_hostile_tcp.py::test_long_upload_that_progresses_is_not_a_dead_peer",
        "tests/test_hostile_tcp.py::test_blocked_loop_with_the_pong_in_the_socket_is_not_a_dead_peer",
        "tests/test_review_core.py::test_ping_flood_while_the_uplink_is_blocked_stays_bounded",
        "tests/test_cli_errors.py",  # a process of the command line per test
        "tests/test_cli_signals.py",  # the same, with signals
        "tests/test_first_hour_cli.py",  # the same
        "tests/test_plugin.py",  # a pytest run per test
    }
)
"""Tests of a few seconds each, on the real clock or real sockets, or many of them:
files, or ``file::test`` for every parameter of one test."""
EVERYTHING = "pytest --all"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all",
        action="store_true",
        help="run every test: plain `pytest` leaves out the slow and interop ones",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: left out of plain `pytest` (SLOW in conftest)")
    config.addinivalue_line("markers", "interop: against other servers, left out of plain `pytest`")


def _left_out(item: pytest.Item) -> str | None:
    """``"interop"`` or ``"slow"`` for a test plain ``pytest`` leaves out, else None."""
    path = item.nodeid.partition("::")[0]
    if path == INTEROP:
        return "interop"
    name = getattr(item, "originalname", item.name)
    if path in SLOW or f"{path}::{name}" in SLOW:
        return "slow"
    return None


def _whole_suite(config: pytest.Config) -> bool:
    """No paths, no ``-m``, no ``-k``: plain ``pytest`` or ``pytest --all``. Naming
    what to run (a file, a test, a marker, a keyword) runs it whatever it is."""
    return (
        config.args_source is pytest.Config.ArgsSource.TESTPATHS
        and not config.getoption("markexpr")
        and not config.getoption("keyword")
    )


_LEFT_OUT = pytest.StashKey[list[pytest.Item]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _bounded(item.obj)
    whole = _whole_suite(config)
    if whole:  # every test collected: SLOW must name some
        names = set()
        for item in items:
            path = item.nodeid.partition("::")[0]
            names |= {path, f"{path}::{getattr(item, 'originalname', item.name)}"}
        if stale := SLOW - names:
            raise pytest.UsageError(f"SLOW in tests/conftest.py names no test: {sorted(stale)}")
    kept: list[pytest.Item] = []
    left: list[pytest.Item] = []
    quick = whole and not config.getoption("all")
    for item in items:
        kind = _left_out(item)
        if kind is not None:
            item.add_marker(kind)
        (left if kind is not None and quick else kept).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept
        config.stash[_LEFT_OUT] = left


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    left = config.stash.get(_LEFT_OUT, [])
    if left:
        interop = sum(1 for item in left if _left_out(item) == "interop")
        terminalreporter.write_line(
            f"left out: {len(left) - interop} slow tests and {interop} interop tests "
            f"(servers from the interop extra and npm); `{EVERYTHING}` runs them",
            yellow=True,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A ``pytest.skip(reason)`` inside a trio test keeps its reason and place:
    pytest-trio 0.8 takes it out of the nursery's exception group and skips
    again, with neither."""
    report = yield
    skip = call.excinfo.value if call.excinfo is not None else None
    group = skip.__context__ if isinstance(skip, pytest.skip.Exception) else None
    if report.skipped and isinstance(group, BaseExceptionGroup):
        inner: BaseException | None = group.split(pytest.skip.Exception)[0]
        while isinstance(inner, BaseExceptionGroup):
            inner = inner.exceptions[0]
        if isinstance(inner, pytest.skip.Exception) and inner.msg:
            frames = traceback.extract_tb(inner.__traceback__)
            where = [f for f in frames if f"{os.sep}_pytest{os.sep}" not in f.filename][-1]
            report.longrepr = (where.filename, where.lineno or 0, f"Skipped: {inner.msg}")
    return report


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
