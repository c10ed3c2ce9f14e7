"""Signals on the real command-line processes, on 127.0.0.1: ``connect`` closes
cleanly on SIGTERM as on Ctrl-C, and ``serve`` closes its clients with 1001."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
import trio

from tests.test_cli import CLI, Lines, start, start_server
from trio_clientsocket import Backoff, ClientSocket, ConnectionFailed, ConnectionLost
from trio_clientsocket._chat import ChatRow, ChatStore, serve_chat
from trio_clientsocket.testing import MockServer, open_mock_server

from .conftest import next_event_skip


async def test_sigterm_closes_with_1000_and_exits_143() -> None:
    with trio.fail_after(30):
        async with open_mock_server() as mock, trio.open_nursery() as nursery:
            port = await mock.listen_tcp()
            client = await start(
                nursery, "connect", f"ws://127.0.0.1:{port}/gxwebsocket?c", "--json"
            )
            assert client.stdin is not None
            assert client.stdout is not None
            out = Lines(client.stdout)
            await out.until(event="connected")
            await client.stdin.send_all(b"before the signal\n")
            await mock.wait_for(lambda: mock.received == ["before the signal"])
            client.send_signal(signal.SIGTERM)
            await out.until(event="closed")
            assert await client.wait() == 143
            await mock.wait_for(lambda: not mock.open_connections)
            assert mock.connections[0].close_code == 1000


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_a_signal_reports_the_messages_left_unsent(signum: int, code: int) -> None:
    """The server never answers the handshake: what was typed waits in the
    outbox when the signal comes, and is reported. The lines are in the pipe
    before the process starts; the first attempt times out a second later,
    long after they were read (the terminal test checks it exactly: there
    the prompt comes back only once a line is queued)."""
    with trio.fail_after(30):
        async with open_mock_server() as mock:
            port = await mock.listen_tcp()
            mock.stall()  # TCP connects, the handshake is never answered
            read_end, write_end = os.pipe()
            os.write(write_end, b"one\ntwo\n")  # and it stays open: no end of input
            try:
                process = await trio.lowlevel.open_process(
                    [
                        *CLI,
                        "connect",
                        f"ws://127.0.0.1:{port}/x",
                        "--json",
                        "--connect-timeout",
                        "1",
                        "--reconnect-initial",
                        "30",
                        "--reconnect-max",
                        "30",
                    ],
                    stdin=read_end,
                    stdout=subprocess.PIPE,
                )
            finally:
                os.close(read_end)
            try:
                assert process.stdout is not None
                out = Lines(process.stdout)
                failed = await out.until(event="connection_failed")
                assert failed["error_type"] == "ConnectTimeout"
                process.send_signal(signum)
                unsent = await out.until(event="undelivered")
                assert unsent["messages"] == ["one", "two"]
                assert unsent["reason"] == "closed"
                await out.until(event="closed")
                assert await process.wait() == code
            finally:
                os.close(write_end)
                if process.returncode is None:
                    process.kill()
                await process.wait()
            mock.resume()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_serve_closes_its_clients_with_1001(signum: int, tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server, port = await start_server(nursery, tmp_path / "chat.sqlite3")
            assert server.stdout is not None
            url = f"ws://127.0.0.1:{port}/app/gxwebsocket?watcher"
            async with ClientSocket(url, reconnect=Backoff(initial=30, maximum=30)) as sock:
                await sock.wait_connected()
                server.send_signal(signum)
                failed = await next_event_skip(sock, ConnectionFailed)
                error = failed.error
                assert isinstance(error, ConnectionLost), repr(error)
                assert (error.code, error.by_server) == (1001, True)
                assert error.reason == "server shutting down"
                assert await server.wait() == 0
                assert await Lines(server.stdout).next() == "stopped"
                await sock.close()


async def test_serve_closes_a_connect_process_with_1001(tmp_path: Path) -> None:
    """What a user of both commands sees when the server is stopped."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server, port = await start_server(nursery, tmp_path / "chat.sqlite3")
            client = await start(
                nursery,
                "connect",
                f"http://127.0.0.1:{port}/app/",
                "--client-id",
                "me",
                "--reconnect-initial",
                "30",
                "--reconnect-max",
                "30",
            )
            assert client.stdout is not None
            out = Lines(client.stdout)
            assert (await out.next()).startswith("* connected to ")
            server.send_signal(signal.SIGTERM)
            line = await out.next()
            assert line.startswith(
                "! connection failed: server closed the connection "
                "(code 1001, reason 'server shutting down') (retrying in"
            ), line
            assert await server.wait() == 0
            client.send_signal(signal.SIGINT)
            assert await client.wait() == 130


class BrokenStore(ChatStore):
    """A chat store whose disk fails on the first write."""

    async def save(self, client_id: str, message: str) -> ChatRow:
        await trio.lowlevel.checkpoint()
        raise sqlite3.OperationalError("disk I/O error")


async def test_a_failing_database_stops_serve_chat_with_1011() -> None:
    """serve_chat (what ``serve`` runs): a database error closes every client
    with 1011, and is raised from serve_chat itself (``serve`` turns it into
    an error line)."""
    store = BrokenStore(":memory:")
    failures: list[sqlite3.Error] = []

    async def run(*, task_status: trio.TaskStatus[tuple[MockServer, int]]) -> None:
        try:
            await serve_chat(store, "127.0.0.1", 0, task_status=task_status)
        except sqlite3.Error as exc:
            failures.append(exc)

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                _, port = await nursery.start(run)
                url = f"ws://127.0.0.1:{port}/app/gxwebsocket?c"
                async with ClientSocket(url, reconnect=None) as sock:
                    await sock.wait_connected()
                    await sock.send("hello")
                    failed = await next_event_skip(sock, ConnectionFailed)
                assert isinstance(failed.error, ConnectionLost), repr(failed.error)
                assert failed.error.code == 1011
    finally:
        store.close()
    assert [str(failure) for failure in failures] == ["disk I/O error"]
