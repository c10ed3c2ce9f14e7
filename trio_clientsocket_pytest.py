"""pytest fixtures for applications that use ClientSocket (loaded automatically
when trio-clientsocket is installed; they need pytest-trio).

- ``clientsocket_mock_server``: a ``trio_clientsocket.testing.MockServer``
  running in memory for the test; wire a socket to it with
  ``clientsocket_mock_server.client()``. ``mock_server`` is the same fixture
  under its former name (a fixture of that name in your own conftest, or in
  another plugin, may take its place: the prefixed name cannot collide).
- A test that uses it fails after ``3600`` seconds of trio time (virtual
  seconds on the ``autojump_clock``) instead of spinning for ever, with a
  message naming what it was waiting for. Change the limit for one test with
  ``@pytest.mark.clientsocket_time_limit(seconds)`` (``None``: no limit), for
  the project with the ``clientsocket_time_limit`` ini option.

pytest imports this module at the start of every run of every project that
has trio-clientsocket installed. It is a module of its own, beside the
``trio_clientsocket`` package, so that importing it does not import the
library: it imports nothing but pytest and the standard library, and the mock
server (``trio_clientsocket.testing``) only when a test asks for the fixture.
Disable the plugin with ``-p no:trio_clientsocket``.

Examples:
    >>> async def test_echo(clientsocket_mock_server, autojump_clock):  # doctest: +SKIP
    ...     server = clientsocket_mock_server
    ...     server.echo = True
    ...     async with server.client() as sock:
    ...         await sock.send("hi")
"""

from __future__ import annotations

import functools
import inspect
import linecache
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import trio

    from trio_clientsocket.testing import MockServer

__all__ = ["TIME_LIMIT", "clientsocket_mock_server", "mock_server"]

FIXTURE = "clientsocket_mock_server"
MARKER = "clientsocket_time_limit"
TIME_LIMIT = 3600.0
"""Seconds of trio time a test that uses the fixture may take, by default."""

TestFunction = Callable[..., Coroutine[Any, Any, None]]


@pytest.fixture
async def clientsocket_mock_server() -> AsyncIterator[MockServer]:
    """An in-memory MockServer (no echo, no handlers) for the duration of a test,
    which fails after ``clientsocket_time_limit`` seconds of trio time."""
    from trio_clientsocket.testing import open_mock_server

    async with open_mock_server() as server:
        yield server


@pytest.fixture
async def mock_server(clientsocket_mock_server: MockServer) -> MockServer:
    """``clientsocket_mock_server`` under its former name."""
    return clientsocket_mock_server


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        MARKER,
        f"seconds of trio time a test using {FIXTURE} may take (default {TIME_LIMIT:g}; "
        "'none': no limit)",
        default=f"{TIME_LIMIT:g}",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(seconds): seconds of trio time this test may take when it uses "
        f"{FIXTURE} (None: no limit)",
    )


def _limit(value: object, where: str) -> float | None:
    """A time limit as given (a number of seconds > 0, or None), checked."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = 0.0
    if isinstance(value, bool) or not (seconds > 0 and math.isfinite(seconds)):
        raise pytest.UsageError(f"{where} must be a number of seconds > 0 or None, not {value!r}")
    return seconds


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    default = _limit(config.getini(MARKER), f"the {MARKER} ini option")
    for item in items:
        if not isinstance(item, pytest.Function) or FIXTURE not in item.fixturenames:
            continue
        if not inspect.iscoroutinefunction(item.obj) or hasattr(item.obj, "hypothesis"):
            continue  # not a trio test (pytest-trio reports it), or Hypothesis runs it
        marker = item.get_closest_marker(MARKER)
        limit = default
        if marker is not None:
            limit = _limit(marker.args[0] if marker.args else None, f"{item.nodeid}: {MARKER}")
        if limit is not None:
            item.obj = _time_limited(item.obj, limit)


def _time_limited(test: TestFunction, seconds: float) -> TestFunction:
    """``test``, failed with a message naming what it waits for when it is
    still running after ``seconds`` of trio time."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        __tracebackhide__ = True
        import trio

        task = trio.lowlevel.current_task()
        deadline = trio.current_time() + seconds
        expired: list[str] = []
        watch_scope = trio.CancelScope()
        try:
            with trio.CancelScope() as test_scope:

                async def watch() -> None:
                    with watch_scope:
                        await trio.sleep_until(deadline)
                        expired.append(_waits(task))
                        test_scope.cancel()

                trio.lowlevel.spawn_system_task(watch, name=f"{FIXTURE} time limit")
                await test(*args, **kwargs)
        finally:
            watch_scope.cancel()
            if expired:
                pytest.fail(
                    f"still waiting after {seconds:g} s of trio time, the time limit of "
                    f"tests that use {FIXTURE}:\n{expired[0]}\n"
                    f"More time for this test: @pytest.mark.{MARKER}(seconds) (None: no "
                    f"limit); for every test: the {MARKER} ini option.",
                    pytrace=False,
                )

    return run


_LIBRARIES = frozenset({"trio", "trio_clientsocket", "contextlib", "outcome", "pytest_trio"})


def _library(frame: FrameType) -> str | None:
    """The library ``frame`` runs in (trio, trio_clientsocket...), None for the test's own code."""
    package = str(frame.f_globals.get("__name__", "")).partition(".")[0]
    return package if package in _LIBRARIES else None


def _waits(test_task: trio.lowlevel.Task) -> str:
    """What the test's task, and every task it started, waits in: for each
    one, the frames of its own code (not trio's, pytest-trio's or this library's), then
    the library function it waits in.

    Examples:
        test_app.py:12 `await sock.wait_connected()` -> ClientSocket.wait_connected
    """
    lines = []
    tasks = [test_task]
    while tasks:
        task = tasks.pop(0)
        steps = []
        waits_in: list[FrameType] = []  # library frames below the task's own code
        for frame, line in task.iter_await_frames():
            if _library(frame) is None:
                source = linecache.getline(frame.f_code.co_filename, line).strip()
                steps.append(f"{Path(frame.f_code.co_filename).name}:{line} `{source}`")
                waits_in = []
            elif steps:
                waits_in.append(frame)
        if steps:
            # the library function it waits in: ours if there is one, by its
            # name rather than a protocol method (EventStream.receive rather than
            # the __anext__ above it), else trio's
            ours = [frame for frame in waits_in if _library(frame) == "trio_clientsocket"]
            named = [f for f in ours if not f.f_code.co_name.startswith("__")][:1]
            named = named or (ours or waits_in)[:1]
            lines.append("  " + " -> ".join(steps + [f.f_code.co_qualname for f in named]))
        tasks += [child for nursery in task.child_nurseries for child in nursery.child_tasks]
    return "\n".join(lines) or "  (no task of the test is waiting)"
