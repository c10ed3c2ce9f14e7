"""pytest fixtures for applications that use ClientSocket (loaded automatically
when trio-clientsocket is installed; they need pytest-trio).

- ``mock_server``: a ``trio_clientsocket.testing.MockServer`` running in memory
  for the test; wire a socket to it with ``mock_server.client()``.

Examples:
    >>> async def test_echo(mock_server, autojump_clock):  # doctest: +SKIP
    ...     mock_server.echo = True
    ...     async with mock_server.client() as sock:
    ...         await sock.send("hi")
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .testing import MockServer, open_mock_server

__all__ = ["mock_server"]


@pytest.fixture
async def mock_server() -> AsyncIterator[MockServer]:
    """An in-memory MockServer (no echo, no handlers) for the duration of a test."""
    async with open_mock_server() as server:
        yield server
