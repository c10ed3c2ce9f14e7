"""What a user is told when they hold it wrong, and that ``match`` over the
events is exhaustive for a type checker."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

from trio_clientsocket import ClientSocket, SocketClosedError

URL = "ws://app.test/app/gxwebsocket?client-1"


async def test_send_before_entering_says_how_to_enter() -> None:
    sock = ClientSocket(URL)
    with pytest.raises(SocketClosedError, match="enter the socket first: 'async with"):
        await sock.send("early")
    with pytest.raises(RuntimeError, match="enter the socket first: 'async with"):
        await sock.open()


def test_under_asyncio_it_says_it_needs_trio() -> None:
    async def main() -> None:
        async with ClientSocket(URL):
            pass  # pragma: no cover - never entered

    with pytest.raises(RuntimeError, match="ClientSocket needs Trio"):
        asyncio.run(main())


PROGRAM = '''
from typing import assert_never

from trio_clientsocket import (
    ClientSocket, Closed, Connected, ConnectionFailed, MessageReceived, PingReceived,
    PongReceived, Skipped, Undelivered,
)


async def handle(sock: ClientSocket) -> None:
    async for event in sock.events():
        match event:
            case Connected(url=url):
                print("connected", url)
            case MessageReceived(message=message):
                print(message)
            case ConnectionFailed(error=error, retry_in=delay):
                print(error, delay)
            case Undelivered(messages=messages, reason=reason):
                print(len(messages), reason)
            case Closed():
                print("closed")
            case Skipped(count=count):
                print(count)
            case PingReceived() | PongReceived():
                pass
            case _:
                assert_never(event)


def reason_is_literal(event: Undelivered) -> None:
    if event.reason == "no such reason":
        pass
'''


def test_an_exhaustive_match_type_checks_under_mypy_strict(tmp_path: Path) -> None:
    program = tmp_path / "user_program.py"
    program.write_text(textwrap.dedent(PROGRAM))
    out, err, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(program)]
    )
    # the match is exhaustive (assert_never type-checks); comparing the reason
    # with a string that is none of the documented ones is an error
    assert "assert_never" not in out, out
    assert 'Non-overlapping equality check (left operand type: "Literal' in out, out
    assert status == 1, out + err
    assert out.count("error:") == 1, out
