"""End to end through the real command-line processes, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from trio_clientsocket.testing import open_mock_server

CLI = [sys.executable, "-m", "trio_clientsocket"]
NOW = ["--linger", "0"]
"""``connect`` exits at end of input (a test that does not wait for replies)."""


class Lines:
    """Read a process's output a line at a time, with a deadline on each line."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> str:
        with trio.fail_after(15):
            while b"\n" not in self.buffer:
                data = await self.stream.receive_some()
                if not data:
                    raise EOFError(self.buffer.decode())
                self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    async def until(self, **match: Any) -> dict[str, Any]:
        """The next JSON line whose fields include ``match``."""
        for _ in range(1000):
            event: dict[str, Any] = json.loads(await self.next())
            if all(event.get(k) == v for k, v in match.items()):
                return event
        raise AssertionError(f"no line matching {match}")


async def start(nursery: trio.Nursery, *args: str) -> trio.Process:
    run = functools.partial(
        trio.run_process,
        [*CLI, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        check=False,
    )
    process: trio.Process = await nursery.start(run)
    return process


async def start_server(nursery: trio.Nursery, db: Path, port: int = 0) -> tuple[trio.Process, int]:
    server = await start(nursery, "serve", "--port", str(port), "--db", str(db))
    assert server.stdout is not None
    banner = await Lines(server.stdout).next()
    found = re.search(r"ws://127\.0\.0\.1:(\d+)/", banner)
    assert found, banner
    return server, int(found.group(1))


def chat_rows(db: Path) -> list[tuple[str, str]]:
    # closing(): a connection's own "with" only commits, and an unclosed one warns
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute("SELECT ClientId, ChatMessage FROM Chat ORDER BY ChatId")
        return [(client, message) for client, message in rows]


async def test_serve_and_connect_survive_a_server_kill(tmp_path: Path) -> None:
    db = tmp_path / "chat.sqlite3"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server, port = await start_server(nursery, db)
            client = await start(
                nursery,
                "connect",
                f"http://127.0.0.1:{port}/app/",
                "--client-id",
                "cli",
                "--json",
                "--reconnect-initial",
                "0.05",
                "--reconnect-max",
                "0.2",
                "--linger",
                "0",
            )
            assert client.stdin is not None
            assert client.stdout is not None
            out = Lines(client.stdout)
            connected = await out.until(event="connected")
            assert connected["url"] == f"ws://127.0.0.1:{port}/app/gxwebsocket?cli"
            await client.stdin.send_all(b"first\n")
            reply = await out.until(event="message")
            assert reply["notification"] == {"Id": "cli", "Object": "Chat", "Message": "first"}

            server.kill()  # SIGKILL: no close frame, nothing
            await server.wait()
            failed = await out.until(event="connection_failed")
            assert failed["status"] == "Disconnected"
            await client.stdin.send_all("typed while down\nand this ünïcode\n".encode())
            server, _ = await start_server(nursery, db, port)
            await out.until(event="connected")
            seen = [(await out.until(event="message"))["notification"]["Message"] for _ in range(2)]
            assert seen == ["typed while down", "and this ünïcode"]

            await client.stdin.aclose()  # end of input: close with 1000, exit 0
            assert await client.wait() == 0
            server.send_signal(signal.SIGINT)
            assert await server.wait() == 0
    assert chat_rows(db) == [
        ("cli", "first"),
        ("cli", "typed while down"),
        ("cli", "and this ünïcode"),
    ]


async def test_history_survives_restart(tmp_path: Path) -> None:
    db = tmp_path / "chat.sqlite3"
    with trio.fail_after(30):
        for run in range(2):
            async with trio.open_nursery() as nursery:
                server, port = await start_server(nursery, db)
                url = f"ws://127.0.0.1:{port}/x/gxwebsocket?r{run}"
                done = await trio.run_process(
                    [*CLI, "connect", url, "--json", *NOW],
                    stdin=f"message {run}\n".encode(),
                    capture_stdout=True,
                    check=False,
                )
                assert done.returncode == 0, done.stdout
                server.send_signal(signal.SIGINT)
                await server.wait()
    assert chat_rows(db) == [("r0", "message 0"), ("r1", "message 1")]


async def test_ctrl_c_closes_with_1000_and_exits_130() -> None:
    with trio.fail_after(30):
        async with open_mock_server() as mock, trio.open_nursery() as nursery:
            port = await mock.listen_tcp()
            client = await start(
                nursery, "connect", f"ws://127.0.0.1:{port}/gxwebsocket?c", "--json"
            )
            assert client.stdout is not None
            await Lines(client.stdout).until(event="connected")
            client.send_signal(signal.SIGINT)
            assert await client.wait() == 130
            await mock.wait_for(lambda: not mock.open_connections)
            assert mock.connections[0].close_code == 1000


async def test_fatal_failure_exits_1_with_a_clear_message() -> None:
    with trio.fail_after(30):
        async with open_mock_server(endpoint="gxwebsocket") as mock, trio.open_nursery() as nursery:
            port = await mock.listen_tcp()
            client = await start(
                nursery, "connect", f"ws://127.0.0.1:{port}/not-genexus?c", "--json"
            )
            assert client.stdout is not None
            failed = await Lines(client.stdout).until(event="connection_failed")
            assert failed["retry_in"] is None
            assert failed["error_type"] == "HandshakeRejected"
            assert "404" in failed["error"]
            assert await client.wait() == 1


def test_bad_url_exits_2() -> None:
    for bad in ("ftp://example.com/", "ws://", "ws://host/#fragment"):
        done = subprocess.run(
            [*CLI, "connect", bad],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 2, (bad, done.stderr)
        assert done.stderr.startswith("error: ")
        assert "Traceback" not in done.stderr


def test_bad_client_id_and_header_exit_2() -> None:
    for args in (["--client-id", "a=b"], ["--header", "no colon"]):
        done = subprocess.run(
            [*CLI, "connect", "http://localhost/app/", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ")
