"""Shared fixtures: a mock server wired to ClientSockets in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trio_clientsocket import Backoff
from trio_clientsocket.testing import MockServer, open_mock_server

URL = "ws://app.test/app/gxwebsocket?client-1"
EXACT = Backoff(initial=1.0, factor=2.0, maximum=8.0, jitter=0.0)
"""A backoff without jitter, for exact-time assertions."""


@pytest.fixture
async def server() -> AsyncIterator[MockServer]:
    async with open_mock_server(echo=True) as server:
        yield server
