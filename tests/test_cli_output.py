"""What ``connect`` prints, through the real processes on 127.0.0.1: the cause of
a failure, GeneXus notifications in words, ``--json`` structure, ``--timestamps``;
and the formatting functions directly."""

from __future__ import annotations

import datetime
import doctest
import errno
import functools
import json
import re
import socket
import subprocess
from pathlib import Path

import pytest
import trio

import trio_clientsocket._cli as cli
from tests.test_cli import CLI, Lines, start, start_server
from trio_clientsocket import ConnectionFailed, MessageReceived, Skipped
from trio_clientsocket._errors import underlying_causes
from trio_clientsocket.testing import open_mock_server

NOTIFICATION = '{"Id": "x", "Object": "Chat", "Message": "h\\u00e9llo", "GroupName": "g"}'
SENT = ["plain", '{"a": [1, 2]}', "42", NOTIFICATION]


@pytest.mark.parametrize("as_json", [False, True])
async def test_the_failure_names_the_underlying_cause(as_json: bool) -> None:
    with trio.fail_after(30):
        async with open_mock_server() as mock, trio.open_nursery() as nursery:
            port = await mock.listen_tcp()
            await mock.stop()  # nothing listens there now: connection refused
            flags = ["--json"] if as_json else []
            client = await start(
                nursery, "connect", f"ws://127.0.0.1:{port}/x", "--no-reconnect", *flags
            )
            assert client.stdout is not None
            out = Lines(client.stdout)
            if as_json:
                failed = await out.until(event="connection_failed")
                # the error names its cause itself now (and its type says it)
                assert failed["cause"] is None
                assert failed["error_type"] == "ConnectionRefusedError"
                assert failed["error"] == (
                    f"cannot connect to 127.0.0.1:{port}: Connection refused (ECONNREFUSED)"
                )
                assert failed["retry_in"] is None
            else:
                assert await out.next() == (
                    f"! connection failed: cannot connect to 127.0.0.1:{port}: "
                    "Connection refused (ECONNREFUSED) (giving up) [Disconnected]"
                )
            assert await client.wait() == 1


async def test_notifications_are_printed_readably(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server, port = await start_server(nursery, tmp_path / "chat.sqlite3")
            client = await start(
                nursery,
                "connect",
                f"http://127.0.0.1:{port}/app/",
                "--client-id",
                "cli",
                "--linger",
                "0",
            )
            assert client.stdin is not None
            assert client.stdout is not None
            out = Lines(client.stdout)
            assert (await out.next()).startswith("* connected to ")
            await client.stdin.send_all("héllo wörld\n".encode())
            assert await out.next() == "< [Chat] cli: héllo wörld"
            await client.stdin.aclose()
            assert await out.next() == "* closed [Disconnected]"
            assert await client.wait() == 0
            server.terminate()
            assert await server.wait() == 0


async def echo_session(*flags: str) -> list[str]:
    """The lines ``connect`` prints for SENT echoed back, then a binary message."""
    with trio.fail_after(30):
        async with open_mock_server(echo=True) as mock, trio.open_nursery() as nursery:
            port = await mock.listen_tcp()
            client = await start(
                nursery, "connect", f"ws://127.0.0.1:{port}/x", "--linger", "0", *flags
            )
            assert client.stdin is not None
            assert client.stdout is not None
            await client.stdin.send_all("".join(f"{line}\n" for line in SENT).encode())
            await mock.wait_for(lambda: len(mock.received) == len(SENT))
            await mock.connections[0].send(b"\x00\x01")
            await client.stdin.aclose()
            lines = (await client.stdout.receive_some(1 << 20)).decode()
            while chunk := await client.stdout.receive_some(1 << 20):
                lines += chunk.decode()
            assert await client.wait() == 0
    assert "\x1b" not in lines  # output to a pipe: no escape codes, no prompt
    assert "> " not in lines
    return lines.splitlines()


async def test_text_output() -> None:
    lines = await echo_session()
    assert lines[0].startswith("* connected to ws://127.0.0.1:")
    assert lines[1:] == [
        "< plain",
        '< {"a": [1, 2]}',
        "< 42",
        "< [Chat, group g] x: héllo",
        "< [2 bytes] 0001",
        "* closed [Disconnected]",
    ]


async def test_json_output_embeds_messages_as_json() -> None:
    events = [json.loads(line) for line in await echo_session("--json")]
    messages = [event for event in events if event["event"] == "message"]
    assert messages == [
        {"event": "message", "message": "plain"},
        {"event": "message", "json": {"a": [1, 2]}},
        {"event": "message", "message": "42"},  # a JSON scalar stays text
        {
            "event": "message",
            "notification": {"Id": "x", "Object": "Chat", "Message": "héllo", "GroupName": "g"},
        },
        {"event": "message", "binary": "AAE=", "size": 2},
    ]
    assert [event["event"] for event in events] == ["connected", *["message"] * 5, "closed"]


async def test_timestamps() -> None:
    lines = await echo_session("--timestamps")
    assert len(lines) == 7
    for line in lines:
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} [*<] .*", line), line
    events = [json.loads(line) for line in await echo_session("--json", "--timestamps")]
    for event in events:
        assert list(event)[:2] == ["time", "event"]
        when = datetime.datetime.fromisoformat(event["time"])
        assert when.tzinfo is not None
        assert abs(datetime.datetime.now(datetime.UTC) - when) < datetime.timedelta(minutes=5)


async def test_a_closed_output_closes_cleanly_with_one_error_line() -> None:
    """``connect ... | head -1``: once the reader is gone, the session ends as at
    end of input (close 1000), with one error line and exit code 2."""
    with trio.fail_after(30):
        async with open_mock_server(echo=True) as mock, trio.open_nursery() as nursery:
            port = await mock.listen_tcp()
            run = functools.partial(
                trio.run_process,
                [*CLI, "connect", f"ws://127.0.0.1:{port}/x"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
            )
            client: trio.Process = await nursery.start(run)
            assert client.stdin is not None
            assert client.stdout is not None
            assert client.stderr is not None
            assert (await Lines(client.stdout).next()).startswith("* connected to ")
            await client.stdout.aclose()  # as head does after its line
            await client.stdin.send_all(b"echo me\n")
            assert await client.wait() == 2
            errors = b""
            while data := await client.stderr.receive_some():
                errors += data
            assert errors.decode() == "error: standard output was closed: Broken pipe (EPIPE)\n"
            await mock.wait_for(lambda: not mock.open_connections)
            assert mock.connections[0].close_code == 1000


# -- the formatting, directly ---------------------------------------------------------


def refused(*hosts: str) -> OSError:
    error = OSError("all attempts to connect to localhost:1 failed")
    error.__cause__ = ExceptionGroup(
        "all attempts",
        [ConnectionRefusedError(errno.ECONNREFUSED, f"Error connecting to {h}") for h in hosts],
    )
    return error


def test_underlying_causes() -> None:
    assert underlying_causes(refused("::1", "127.0.0.1")) == [
        "Connection refused (ECONNREFUSED)"
    ]
    mixed = refused("::1")
    assert isinstance(mixed.__cause__, ExceptionGroup)
    mixed.__cause__ = ExceptionGroup(
        "all", [*mixed.__cause__.exceptions, OSError(errno.ENETUNREACH, "unreachable")]
    )
    assert underlying_causes(mixed) == [
        "Connection refused (ECONNREFUSED)",
        "Network is unreachable (ENETUNREACH)",
    ]
    dns = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    wrapped = OSError("lookup failed")
    wrapped.__cause__ = dns
    assert underlying_causes(wrapped) == ["Name or service not known"]
    assert underlying_causes(OSError("no cause")) == []
    said = OSError("boom")
    said.__cause__ = ValueError("boom")
    assert underlying_causes(said) == []  # the message already says it


def test_describe_shows_every_event() -> None:
    failed = cli.describe(ConnectionFailed(error=refused("h"), retry_in=1.5), "Disconnected")
    assert failed is not None
    assert failed[1] == (
        "! connection failed: all attempts to connect to localhost:1 failed: "
        "Connection refused (ECONNREFUSED) (retrying in 1.50 s) [Disconnected]"
    )
    skipped = cli.describe(Skipped(count=3, undelivered=1), "Connected")
    assert skipped == (
        {"event": "skipped", "count": 3, "undelivered": 1},
        "! 3 event(s) skipped: printing fell behind",
    )
    bare = cli.describe(MessageReceived('{"Message": "only"}'), "Connected")
    assert bare is not None
    assert bare[1] == "< only"


def test_visible_defuses_terminal_escapes() -> None:
    assert cli.visible("title\x1b]0;pwned\x07 and \x9b2J") == (
        "title\\x1b]0;pwned\\x07 and \\x9b2J"
    )
    assert cli.visible("tab\tand\nnewline, héllo 日本") == "tab\tand\nnewline, héllo 日本"


def test_the_cli_doctests() -> None:
    results = doctest.testmod(cli, report=False)
    assert results.attempted > 0
    assert results.failed == 0
